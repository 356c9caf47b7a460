"""Learning curve: the codec's chain bound (dense K, first N test images) of training snapshots
with fixed, optimal and learned reverse variances, paired (the same x_t noise for every
snapshot and variance).

  python train/curve.py --data ../shared/data/cifar10 --out curve.csv \
      SNAPSHOT.pt [SNAPSHOT.pt ...]

A snapshot is a trainer checkpoint (`ckpt.pt`: its EMA weights) or a `snap_STEP.pt` written
with `train.py --snapshot-every`; the run's config.json must sit beside it. "optimal" is
calibrated here for this chain and these weights (the codec's `optimal` kind, src/schedule.rs):
x0 MSE at each chain step on the first --calib training images, and the final step's std by a
grid search of the discretized-Gaussian code length on the same images; "learned" needs a
learn_sigma network (Improved DDPM's interpolation between the chain's beta and beta_tilde).
Writes a plain CSV, header first: step, imgs_seen, train_h, variance, bits/dim and 95% CI,
the KL terms and L_0.
"""
import argparse
import csv
import json
import math
import os
import time

import numpy as np
import torch

from data import load_cifar10
from diffusion import Schedule, bits_per_dim, discretized_gaussian_log_likelihood
from model import Config, UNet


def load(path, weights="ema"):
    ck = torch.load(path, map_location="cpu")
    cfg = Config.from_dict(json.load(open(os.path.join(os.path.dirname(path), "config.json"))))
    sd = ck[weights]
    if sd["conv_out.weight"].shape[0] == 2 * cfg.in_channels:
        cfg.learn_sigma = True
    m = UNet(cfg).eval()
    m.load_state_dict(sd)
    return m, cfg, ck


@torch.no_grad()
def calibrate(model, x0, sched, seed=1):
    """Tables in the layout of the model file's (per model time t = 1..T, filled at the chain's
    times): x0 MSE, and the final step's std at tau_1."""
    T = 1000
    gen = torch.Generator().manual_seed(seed)
    mse = np.zeros(T)
    C = x0.shape[1]
    x0d = x0.double()
    final_std = None
    for i, t in enumerate(sched.taus):
        a = sched.abar[i]
        noise = torch.randn(x0.shape, generator=gen, dtype=torch.float64)
        xt = math.sqrt(a) * x0d + math.sqrt(1 - a) * noise
        eps = model(xt.float(), torch.full((len(x0),), int(t), dtype=torch.long)).double()[:, :C]
        x0p = ((xt - math.sqrt(1 - a) * eps) / math.sqrt(a)).clamp(-1, 1)
        mse[t - 1] = float(((x0d - x0p) ** 2).mean())
        if i == 0:
            best = None
            base = math.sqrt(max(mse[t - 1], 1e-8))
            for s in np.exp(np.linspace(math.log(base / 4), math.log(base * 2), 61)):
                nll = -float(discretized_gaussian_log_likelihood(x0d, x0p, torch.full_like(x0p, s)).mean())
                if best is None or nll < best[0]:
                    best = (nll, s)
            final_std = np.zeros(int(t))
            final_std[int(t) - 1] = best[1]
    return {"x0_mse": mse, "final_std": final_std}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("snapshots", nargs="+")
    ap.add_argument("--data", default="../shared/data/cifar10")
    ap.add_argument("--limit", type=int, default=100, help="first N test images")
    ap.add_argument("--calib", type=int, default=128, help="first N training images for optimal")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--variances", default="large,optimal,learned")
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--weights", default="ema", help="ema, or model (a ckpt.pt's raw weights: the "
                    "EMA of a freshly added v head lags the trained one by thousands of steps)")
    ap.add_argument("--out", required=True, help="CSV (appended; header written when new)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    sched = Schedule.dense(a.steps)
    x = torch.from_numpy(load_cifar10(a.data, "test")[: a.limit]).float() / 127.5 - 1.0
    xc = torch.from_numpy(load_cifar10(a.data, "train")[: a.calib]).float() / 127.5 - 1.0
    new = not os.path.exists(a.out)
    f = open(a.out, "a", newline="")
    w = csv.writer(f)
    if new:
        w.writerow(["snapshot", "weights", "step", "imgs_seen", "train_h", "steps", "images", "variance",
                    "bits_per_dim", "ci95", "terms_bpd", "l0_bpd", "seconds"])
    for path in a.snapshots:
        model, cfg, ck = load(path, a.weights)
        tables = None
        for var in a.variances.split(","):
            if var == "learned" and not cfg.learn_sigma:
                continue
            if var == "optimal" and tables is None:
                tables = calibrate(model, xc, sched)
            t0 = time.time()
            gen = torch.Generator().manual_seed(0)
            tot, terms, l0 = [], [], []
            for s in range(0, len(x), a.batch):
                r = bits_per_dim(model, x[s:s + a.batch], sched, var, gen, tables)
                tot += r["total"].tolist()
                terms += r["terms"].tolist()
                l0 += r["l0"].tolist()
            n = len(tot)
            row = [os.path.basename(path), a.weights, ck["step"], ck["imgs_seen"], round(ck.get("train_secs", 0) / 3600, 4),
                   a.steps, n, var, round(float(np.mean(tot)), 5),
                   round(float(1.96 * np.std(tot, ddof=1) / math.sqrt(n)), 5),
                   round(float(np.mean(terms)), 5), round(float(np.mean(l0)), 5), round(time.time() - t0, 1)]
            w.writerow(row)
            f.flush()
            print(row, flush=True)


if __name__ == "__main__":
    main()
