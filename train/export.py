"""Export EMA weights of a training run as safetensors + config.json (what the Rust side loads).

  python train/export.py --run runs/small --out models/default [--dtype f16]
"""
import argparse
import json
import os

import torch
from safetensors.torch import save_file


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--dtype", choices=["f32", "f16"], default="f16")
    ap.add_argument("--weights", choices=["ema", "model"], default="ema")
    a = ap.parse_args()
    ck = torch.load(os.path.join(a.run, "ckpt.pt"), map_location="cpu")
    sd = ck[a.weights]
    dt = torch.float16 if a.dtype == "f16" else torch.float32
    sd = {k: v.detach().to(dt).contiguous() for k, v in sd.items()}
    os.makedirs(a.out, exist_ok=True)
    save_file(sd, os.path.join(a.out, "model.safetensors"))
    cfg = json.load(open(os.path.join(a.run, "config.json")))
    json.dump(cfg, open(os.path.join(a.out, "config.json"), "w"), indent=2)
    info = {"step": ck["step"], "imgs_seen": ck["imgs_seen"], "train_hours": ck.get("train_secs", 0) / 3600,
            "weights": a.weights, "dtype": a.dtype}
    json.dump(info, open(os.path.join(a.out, "train_info.json"), "w"), indent=2)
    print(info)


if __name__ == "__main__":
    main()
