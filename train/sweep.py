"""Equal-budget architecture/objective sweep for the shipped prior (issue #3).

Every candidate trains from scratch for the same number of optimizer steps (same batch, same
images) with train.py, then is scored on the same fixed subset of the CIFAR-10 test set
(the first --eval-images images) by an unbiased importance-sampled estimate of the K = 1000
bound:

  bpd(x) = L_T + L_0 + L_{t-1}(x) / q(t),  t ~ q(t) ∝ t^-1.5 on 2..T   (averaged over --eval-t draws)

(the terms fall off roughly as t^-1.5, so uniform t would put most of the bound in a few rare
draws at t < 10: unbiased, but so skewed that a sample mean usually lands well below it).

with the same t draws and the same noise for every candidate (common random numbers, so the
differences between candidates are measured more precisely than the levels). Both weight sets
(raw and EMA) and both reverse variances (small = beta-tilde, large = beta) are scored.

  python sweep.py --data ../../shared/data/cifar10 --out /work/runs/sweep --steps 200

Writes OUT/results.json and OUT/table.md; OUT/<name>/ holds each run (ckpt, log) and an
f16 export for the Rust forward-pass timing (examples/bench_infer.rs --model OUT/<name>/export).
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import torch

from data import load_cifar10
from diffusion import Schedule, discretized_gaussian_log_likelihood, normal_kl
from model import Config, UNet

BASE = {"in_channels": 3, "ch": 32, "ch_mult": [1, 2, 2, 2], "num_res_blocks": 1,
        "attn_resolutions": [16], "dropout": 0.1, "resolution": 32, "num_groups": 8}

CANDIDATES = [
    # name, config overrides, train.py extra args, description
    ("base", {}, [], "ch32, mult 1,2,2,2, 1 res block, attn 16 (shipped), L_simple, lr 5e-4"),
    ("wide48", {"ch": 48}, [], "ch48 (1.5x width)"),
    ("deep2", {"num_res_blocks": 2}, [], "2 res blocks per level"),
    ("noattn", {"attn_resolutions": []}, [], "no attention"),
    ("hybrid", {}, ["--loss", "hybrid"], "L_simple + 0.001 L_vlb"),
    ("lr1e-3", {}, ["--lr", "1e-3"], "learning rate 1e-3"),
]


def proposal(T=1000, power=1.5):
    """q(t) for t = 0..T (zero below 2)."""
    q = np.zeros(T + 1)
    t = np.arange(2, T + 1)
    q[2:] = t ** -power
    return q / q.sum()


@torch.no_grad()
def score(model, x0, ts, sched, gen_seed, batch=50):
    """Per-image importance-sampled bpd (both variances). ts: (N, J) model times in 2..T
    drawn from `proposal()`."""
    model.eval()
    N, J = ts.shape
    D = x0[0].numel()
    C = x0.shape[1]  # eps is the first C output channels (a learn_sigma network has 2C)
    ln2 = math.log(2)
    q = torch.from_numpy(proposal(len(sched.taus)))
    x0d = x0.double()
    abarT = sched.abar[-1]
    prior = normal_kl(math.sqrt(abarT) * x0d, torch.full_like(x0d, 1 - abarT),
                      torch.zeros_like(x0d), torch.ones_like(x0d)).flatten(1).sum(1) / (D * ln2)
    out = {v: torch.zeros(N, dtype=torch.float64) for v in ("small", "large")}
    gen = torch.Generator().manual_seed(gen_seed)
    for s in range(0, N, batch):
        xb = x0d[s:s + batch]
        B = xb.shape[0]
        # L_0 at t = 1
        noise = torch.randn(xb.shape, generator=gen, dtype=torch.float64)
        a = sched.abar[0]
        xt = math.sqrt(a) * xb + math.sqrt(1 - a) * noise
        eps = model(xt.float(), torch.full((B,), 1, dtype=torch.long)).double()[:, :C]
        x0p = ((xt - math.sqrt(1 - a) * eps) / math.sqrt(a)).clamp(-1, 1)
        for v in out:
            s2 = sched.sigma2(v)[0]
            ll = discretized_gaussian_log_likelihood(xb, x0p, torch.full_like(x0p, math.sqrt(s2)))
            out[v][s:s + B] += -ll.flatten(1).sum(1) / (D * ln2) + prior[s:s + B]
        for j in range(J):
            t = ts[s:s + B, j]  # model times 2..T; chain index i = t - 1
            i = (t - 1).numpy()
            noise = torch.randn(xb.shape, generator=gen, dtype=torch.float64)
            ab = torch.from_numpy(sched.abar[i])[:, None, None, None]
            abp = torch.from_numpy(sched.abar_prev[i])[:, None, None, None]
            be = torch.from_numpy(sched.beta[i])[:, None, None, None]
            al = torch.from_numpy(sched.alpha[i])[:, None, None, None]
            bt = torch.from_numpy(sched.beta_tilde[i])[:, None, None, None]
            xt = ab.sqrt() * xb + (1 - ab).sqrt() * noise
            eps = model(xt.float(), t).double()[:, :C]
            x0p = ((xt - (1 - ab).sqrt() * eps) / ab.sqrt()).clamp(-1, 1)
            c0 = abp.sqrt() * be / (1 - ab)
            ct = al.sqrt() * (1 - abp) / (1 - ab)
            mq = c0 * xb + ct * xt
            mp = c0 * x0p + ct * xt
            for v in out:
                s2 = torch.from_numpy(sched.sigma2(v)[i])[:, None, None, None]
                kl = normal_kl(mq, bt.expand_as(mq), mp, s2.expand_as(mp)).flatten(1).sum(1)
                out[v][s:s + B] += kl / q[t] / (D * ln2) / J
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../../shared/data/cifar10")
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--ema", type=float, default=0.995)
    ap.add_argument("--eval-images", type=int, default=1000)
    ap.add_argument("--eval-t", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", default="", help="comma-separated candidate names")
    ap.add_argument("--score", nargs="*", default=[], metavar="NAME=RUN",
                    help="instead of the sweep: score the raw and EMA weights of existing runs "
                         "(RUN/ckpt.pt) on the same images, t and noise; writes OUT/scores.json "
                         "and prints paired differences against the first")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)
    here = os.path.dirname(os.path.abspath(__file__))
    x0 = torch.from_numpy(load_cifar10(a.data, "test")[: a.eval_images]).float() / 127.5 - 1.0
    rng = np.random.default_rng(1234)
    ts = torch.from_numpy(rng.choice(1001, size=(len(x0), a.eval_t), p=proposal()))
    sched = Schedule()
    if a.score:
        score_runs(a, x0, ts, sched)
        return
    res_path = os.path.join(a.out, "results.json")
    results = json.load(open(res_path)) if os.path.exists(res_path) else {}
    only = set(filter(None, a.only.split(",")))
    for name, over, extra, desc in CANDIDATES:
        if only and name not in only:
            continue
        if name in results:
            print(f"{name}: already scored", flush=True)
            continue
        run = os.path.join(a.out, name)
        os.makedirs(run, exist_ok=True)
        cfg = dict(BASE, **over)
        cfg_path = os.path.join(run, "model_config.json")
        json.dump(cfg, open(cfg_path, "w"))
        cmd = [sys.executable, os.path.join(here, "train.py"), "--data", a.data, "--out", run,
               "--config", cfg_path, "--batch", str(a.batch), "--lr", "5e-4", "--warmup", "100",
               "--ema", str(a.ema), "--steps", str(a.steps), "--threads", str(a.threads),
               "--save-every", "100000"] + extra
        t0 = time.time()
        subprocess.run(cmd, check=True, cwd=here, stdout=open(os.path.join(run, "stdout.txt"), "w"),
                       stderr=subprocess.STDOUT)
        ck = torch.load(os.path.join(run, "ckpt.pt"), map_location="cpu")
        img_s = ck["imgs_seen"] / max(ck["train_secs"], 1e-9)
        r = {"description": desc, "config": cfg, "train_args": extra, "steps": ck["step"],
             "images": ck["imgs_seen"], "train_img_per_s": img_s, "wall_s": time.time() - t0}
        m = UNet(Config.from_dict(cfg))
        r["params"] = sum(p.numel() for p in m.parameters())
        for w in (("model", "ema") if name == "base" else ("ema",)):
            m.load_state_dict(ck[w])
            sc = score(m, x0, ts, sched, gen_seed=99)
            for v, vals in sc.items():
                r[f"bpd_{w}_{v}"] = float(vals.mean())
                r[f"ci95_{w}_{v}"] = float(1.96 * vals.std() / math.sqrt(len(vals)))
                if name != "base" and "base" in results:
                    pass
            r[f"per_image_{w}_small"] = sc["small"].tolist()
        subprocess.run([sys.executable, os.path.join(here, "export.py"), "--run", run, "--out",
                        os.path.join(run, "export"), "--dtype", "f16"], check=True, cwd=here,
                       stdout=subprocess.DEVNULL)
        results[name] = r
        json.dump(results, open(res_path, "w"), indent=1)
        print(f"{name}: params {r['params']} img/s {img_s:.1f} bpd ema/small {r['bpd_ema_small']:.3f} "
              f"raw/small {r.get('bpd_model_small', float('nan')):.3f} ema/large {r['bpd_ema_large']:.3f}", flush=True)
    write_table(results, os.path.join(a.out, "table.md"), a)


def score_runs(a, x0, ts, sched):
    """Scores existing checkpoints (raw and EMA weights, both variances), paired."""
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, "scores.json")
    scores = json.load(open(path)) if os.path.exists(path) else {}
    first = None
    for spec in a.score:
        name, run = spec.split("=", 1)
        ck = torch.load(os.path.join(run, "ckpt.pt"), map_location="cpu")
        cfg = json.load(open(os.path.join(run, "config.json")))
        m = UNet(Config.from_dict(cfg))
        for w in ("model", "ema"):
            key = f"{name}/{w}"
            if key not in scores:
                m.load_state_dict(ck[w])
                sc = score(m, x0, ts, sched, gen_seed=99)
                scores[key] = {"step": ck["step"], "train_h": ck.get("train_secs", 0) / 3600,
                               **{f"per_image_{v}": sc[v].tolist() for v in sc}}
                json.dump(scores, open(path, "w"))
            first = first or key
    print(f"{'run/weights':<28} {'step':>6} {'bpd β̃':>8} {'bpd β':>8}   Δβ vs {first} (paired, 95%)")
    base = np.array(scores[first]["per_image_large"])
    for key, r in scores.items():
        s_, l_ = np.array(r["per_image_small"]), np.array(r["per_image_large"])
        d = l_ - base
        print(f"{key:<28} {r['step']:>6} {s_.mean():8.3f} {l_.mean():8.3f}   "
              f"{d.mean():+.3f} ± {1.96 * d.std() / math.sqrt(len(d)):.3f}")


def write_table(results, path, a):
    base = results.get("base")
    lines = [f"Equal budget: {a.steps} steps x batch {a.batch} from scratch; scored on the first "
             f"{a.eval_images} CIFAR-10 test images, importance-sampled estimate of the K=1000 bound "
             f"({a.eval_t} t per image, q(t) ∝ t^-1.5, same t and noise for every candidate). Differences vs base "
             f"are paired (same images), with a 95% interval.", "",
             "| candidate | params | train img/s | bpd EMA σ²=β̃ | bpd raw σ²=β̃ | bpd EMA σ²=β | Δ vs base (EMA β̃) |",
             "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        d = ""
        if base is not None and name != "base":
            diff = np.array(r["per_image_ema_small"]) - np.array(base["per_image_ema_small"])
            d = f"{diff.mean():+.3f} ± {1.96 * diff.std() / math.sqrt(len(diff)):.3f}"
        lines.append(f"| {name}: {r['description']} | {r['params']:,} | {r['train_img_per_s']:.1f} | "
                     f"{r['bpd_ema_small']:.3f} ± {r['ci95_ema_small']:.3f} | {r.get('bpd_model_small', float('nan')):.3f} | "
                     f"{r['bpd_ema_large']:.3f} | {d} |")
    open(path, "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
