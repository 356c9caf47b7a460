"""Bits/dim of CIFAR-10 images under an exported model, in PyTorch (cross-check of `ddpm-codec nll`).

  python train/nll.py --model models/default --data ../shared/data/cifar10 --limit 100 --steps 1000
  python train/nll.py --model models/default --limit 100 --steps 50 --spacing dense --variance optimal

Same bound, same conventions (clipped x0 prediction, discretized-Gaussian L_0 with the clipped
beta-tilde at the first step) as src/diffusion.rs; the x_t noise differs, so compare means
within their confidence intervals.
"""
import argparse
import json
import math
import os
import time

import numpy as np
import torch
from safetensors.torch import load_file

from data import load_cifar10
from diffusion import Schedule, bits_per_dim
from model import Config, UNet


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/default")
    ap.add_argument("--data", default="../shared/data/cifar10")
    ap.add_argument("--split", default="test")
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--variance", default="small", help="small, large or optimal (the model's tables)")
    ap.add_argument("--spacing", default="even", help="even or dense (the codec's default chain)")
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = Config.from_dict(json.load(open(os.path.join(a.model, "config.json"))))
    m = UNet(cfg).eval()
    raw = load_file(os.path.join(a.model, "model.safetensors"))
    tables = {k.split(".", 1)[1]: raw[k].double().numpy() for k in raw if k.startswith("variance_tables.")}
    sd = {k: v.float() for k, v in raw.items() if not k.startswith("variance_tables.")}
    m.load_state_dict(sd)
    imgs = load_cifar10(a.data, a.split)[: a.limit]
    x = torch.from_numpy(imgs).double() / 127.5 - 1.0
    sched = Schedule.dense(a.steps) if a.spacing == "dense" else Schedule.even(a.steps)
    gen = torch.Generator().manual_seed(0)
    tot, parts = [], {"prior": [], "terms": [], "l0": []}
    t0 = time.time()
    for s in range(0, len(x), a.batch):
        r = bits_per_dim(m, x[s:s + a.batch].float(), sched, a.variance, gen, tables or None)
        for k in parts:
            parts[k] += r[k].tolist()
        tot += r["total"].tolist()
        print(f"{s + len(r['total'])}/{len(x)} images, running total {np.mean(tot):.4f} bits/dim", flush=True)
    n = len(tot)
    out = {"images": n, "steps": a.steps, "spacing": a.spacing, "variance": a.variance,
           "prior_bpd": float(np.mean(parts["prior"])), "terms_bpd": float(np.mean(parts["terms"])),
           "l0_bpd": float(np.mean(parts["l0"])), "total_bits_per_dim": float(np.mean(tot)),
           "total_ci95": float(1.96 * np.std(tot, ddof=1) / math.sqrt(n)) if n > 1 else None,
           "seconds": time.time() - t0}
    print(json.dumps(out, indent=2))
    if a.json:
        json.dump(out, open(a.json, "w"), indent=2)


if __name__ == "__main__":
    main()
