"""Write the parity fixture: a tiny random U-Net and its outputs on fixed inputs.

  python train/golden.py --out tests/fixtures/tiny
  python train/golden.py --out tests/fixtures/tiny_sigma --learn-sigma 1

The Rust test tests/parity.rs loads the same weights and must match eps to 1e-4 (with
--learn-sigma 1: the network's whole output, eps and v, stored as "eps" with 6 channels).
"""
import argparse
import json
import os

import torch
from safetensors.torch import save_file

from model import Config, UNet


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/tiny")
    ap.add_argument("--learn-sigma", type=int, default=0)
    a = ap.parse_args()
    torch.manual_seed(1234)
    cfg = Config(ch=8, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[16], dropout=0.0, num_groups=4,
                 learn_sigma=bool(a.learn_sigma))
    m = UNet(cfg).eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            # move norms and biases away from their trivial init so the test sees them
            if "norm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(3, 3, 32, 32)
    t = torch.tensor([1, 500, 1000])
    with torch.no_grad():
        eps = m(x, t)
    os.makedirs(a.out, exist_ok=True)
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, os.path.join(a.out, "model.safetensors"))
    with open(os.path.join(a.out, "config.json"), "w") as f:
        f.write(cfg.to_json())
    save_file({"x": x.contiguous(), "t": t.float().contiguous(), "eps": eps.contiguous()},
              os.path.join(a.out, "golden.safetensors"))
    print("wrote", a.out, "eps[0,0,0,:4] =", eps[0, 0, 0, :4].tolist())


if __name__ == "__main__":
    main()
