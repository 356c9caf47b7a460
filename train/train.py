"""Train the DDPM prior on CIFAR-10 (binary batches) with PyTorch on CPU.

  python train/train.py --data ../shared/data/cifar10 --out runs/small --config train/configs/small.json

Resumable: re-running the same command continues from runs/<name>/ckpt.pt.
Exports EMA weights with train/export.py (safetensors + config.json, what the Rust side loads).
"""
import argparse
import json
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from model import Config, UNet, num_params, widen_to_learned_sigma
from data import load_cifar10


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/cifar10")
    ap.add_argument("--out", required=True)
    ap.add_argument("--config", required=True, help="model config JSON")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--steps", type=int, default=10**9, help="stop after this many optimizer steps")
    ap.add_argument("--hours", type=float, default=1e9, help="stop after this much wall time (this run)")
    ap.add_argument("--loss", choices=["simple", "vlb", "hybrid"], default="simple")
    ap.add_argument("--bf16", type=int, default=-1,
                    help="bf16 autocast: 1 on, 0 off, -1 (default) on only where the CPU has native "
                         "bf16 (avx512_bf16 / amx_bf16): emulated bf16 made a step 15x slower on an "
                         "AVX2-only AMD EPYC (session 6)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="use only the first N training images")
    ap.add_argument("--save-every", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--init", help="warm start from this checkpoint (a new run: weights, EMA, Adam "
                    "moments and counters; an eps-only checkpoint is widened for --learn-sigma)")
    ap.add_argument("--learn-sigma", type=int, default=0,
                    help="1: the network also outputs v (Improved DDPM); needs --loss hybrid or vlb")
    ap.add_argument("--snapshot-every", type=int, default=0,
                    help="also keep the EMA weights every N steps as snap_STEP.pt (learning curves)")
    args = ap.parse_args()

    if args.bf16 < 0:
        args.bf16 = int(native_bf16()) if args.device == "cpu" else 1
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    cfg = Config.from_dict(json.load(open(args.config)))
    if args.learn_sigma:
        cfg.learn_sigma = True
        if args.loss == "simple":
            raise SystemExit("--learn-sigma needs --loss hybrid or vlb (L_simple does not train v)")
    dev = torch.device(args.device)
    model = UNet(cfg).to(dev)
    ema = UNet(cfg).to(dev)
    ema.load_state_dict(model.state_dict())
    ema.eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    step, imgs_seen, train_secs = 0, 0, 0.0
    ckpt_path = os.path.join(args.out, "ckpt.pt")
    if args.init and not os.path.exists(ckpt_path):
        ck = torch.load(args.init, map_location=dev)
        widen = widen_to_learned_sigma if cfg.learn_sigma else (lambda sd: sd)
        model.load_state_dict(widen(ck["model"]))
        ema.load_state_dict(widen(ck["ema"]))
        opt.load_state_dict(ck["opt"])
        # Adam's moments of the widened conv_out: the old channels' moments, zeros for v's
        for p in model.parameters():
            st = opt.state.get(p, {})
            for k in ("exp_avg", "exp_avg_sq"):
                if k in st and st[k].shape != p.shape:
                    st[k] = torch.cat([st[k], torch.zeros_like(st[k])], dim=0)
        step, imgs_seen, train_secs = ck["step"], ck["imgs_seen"], ck.get("train_secs", 0.0)
        print(f"warm start from {args.init} at step {step}", flush=True)
    elif os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path, map_location=dev)
        model.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["opt"])
        step, imgs_seen, train_secs = ck["step"], ck["imgs_seen"], ck.get("train_secs", 0.0)
        torch.set_rng_state(ck["rng"])
        print(f"resumed at step {step}", flush=True)
    json.dump(vars(args), open(os.path.join(args.out, "args.json"), "w"), indent=2)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        f.write(cfg.to_json())

    data = load_cifar10(args.data, "train")  # uint8 N,3,32,32
    if args.limit:
        data = data[: args.limit]
    data = torch.from_numpy(data)
    N = data.shape[0]
    print(f"model params {num_params(model)/1e6:.3f}M, {N} training images", flush=True)

    T = 1000
    betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0)
    sqrt_abar = abar.sqrt().float().to(dev)
    sqrt_1m = (1 - abar).sqrt().float().to(dev)
    # vlb weight for eps-MSE at step t (sigma^2 = beta_tilde): beta^2 / (2 sigma^2 alpha (1-abar))
    abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
    bt = betas * (1 - abar_prev) / (1 - abar)
    bt[0] = bt[1]
    w_vlb = (betas**2 / (2 * bt * (1 - betas) * (1 - abar))).float().to(dev)
    # learned variance: log beta and log beta_tilde (clipped at t = 1), posterior coefficients
    log_beta = betas.log().float().to(dev)
    log_bt = bt.log().float().to(dev)
    post_c0 = (abar_prev.sqrt() * betas / (1 - abar)).float().to(dev)
    post_ct = ((1 - betas).sqrt() * (1 - abar_prev) / (1 - abar)).float().to(dev)
    post_var = (betas * (1 - abar_prev) / (1 - abar)).float().to(dev)

    log = open(os.path.join(args.out, "log.txt"), "a")
    t_start = time.time()
    last_print = time.time()
    loss_acc, n_acc = 0.0, 0
    model.train()
    while step < args.steps and (time.time() - t_start) < args.hours * 3600:
        t0 = time.time()
        idx = torch.randint(0, N, (args.batch,))
        x = data[idx].float().to(dev) / 127.5 - 1.0
        flip = torch.rand(args.batch, device=dev) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
        t = torch.randint(0, T, (args.batch,), device=dev)  # index 0..T-1 = time 1..T
        eps = torch.randn_like(x)
        xt = sqrt_abar[t][:, None, None, None] * x + sqrt_1m[t][:, None, None, None] * eps
        lr = args.lr * min(1.0, (step + 1) / args.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=bool(args.bf16)):
            pred = model(xt, t + 1)
        pred = pred.float()
        C = x.shape[1]
        mse = ((pred[:, :C] - eps) ** 2).mean(dim=(1, 2, 3))
        if cfg.learn_sigma:
            # Improved DDPM's L_hybrid = L_simple + lambda L_vlb with lambda = 0.001 and T = 1000:
            # mse + the step's vlb term in bits/dim, with the mean's gradient stopped (v learns
            # the variance only). t = 1: the discretized Gaussian decoder's NLL, mean x0_hat.
            e = pred[:, :C].detach()
            s1 = sqrt_abar[t][:, None, None, None]
            s2_ = sqrt_1m[t][:, None, None, None]
            x0_hat = ((xt - s2_ * e) / s1).clamp(-1, 1)
            f = (pred[:, C:] + 1) / 2
            logv = f * log_beta[t][:, None, None, None] + (1 - f) * log_bt[t][:, None, None, None]
            c0 = post_c0[t][:, None, None, None]
            ct = post_ct[t][:, None, None, None]
            mu_q = c0 * x + ct * xt
            mu_p = c0 * x0_hat + ct * xt
            kl = 0.5 * (logv - post_var[t].clamp(min=1e-20).log()[:, None, None, None]
                        + (post_var[t][:, None, None, None] + (mu_q - mu_p) ** 2) / logv.exp() - 1.0)
            kl = kl.mean(dim=(1, 2, 3)) / math.log(2.0)
            nll0 = -discretized_gaussian_log_likelihood_train(x, x0_hat, 0.5 * logv)
            nll0 = nll0.mean(dim=(1, 2, 3)) / math.log(2.0)
            vb = torch.where(t == 0, nll0, kl)
            loss = (mse.mean() + vb.mean()) if args.loss == "hybrid" else vb.mean()
        elif args.loss == "simple":
            loss = mse.mean()
        elif args.loss == "vlb":
            loss = (w_vlb[t] * mse * 3072).mean() / 3072 * 1000
        else:
            loss = mse.mean() + 0.001 * (w_vlb[t] * mse).mean() * 1000
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            d = min(args.ema, (1 + step) / (10 + step))
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.mul_(d).add_(pm.detach(), alpha=1 - d)
        step += 1
        imgs_seen += args.batch
        train_secs += time.time() - t0
        loss_acc += loss.item()
        n_acc += 1
        if time.time() - last_print > 60 or step % args.save_every == 0:
            msg = (f"step {step} imgs {imgs_seen} loss {loss_acc/n_acc:.5f} lr {lr:.2e} "
                   f"img/s {imgs_seen/max(train_secs,1e-9):.1f} train_h {train_secs/3600:.3f}")
            print(msg, flush=True)
            log.write(msg + "\n")
            log.flush()
            loss_acc, n_acc = 0.0, 0
            last_print = time.time()
        if args.snapshot_every and step % args.snapshot_every == 0:
            torch.save({"ema": ema.state_dict(), "step": step, "imgs_seen": imgs_seen,
                        "train_secs": train_secs}, os.path.join(args.out, f"snap_{step}.pt"))
        if step % args.save_every == 0:
            save(ckpt_path, model, ema, opt, step, imgs_seen, train_secs)
    save(ckpt_path, model, ema, opt, step, imgs_seen, train_secs)
    print(f"done at step {step}", flush=True)


def native_bf16():
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def discretized_gaussian_log_likelihood_train(x, mean, log_std):
    """log p(x) of the 256-level discretized Gaussian, as improved-diffusion trains it: every
    branch finite (the eval version's infinite edges give NaN gradients through torch.where)."""
    centered = x - mean
    inv = torch.exp(-log_std)
    cdf_plus = 0.5 * (1.0 + torch.erf(inv * (centered + 1.0 / 255.0) / math.sqrt(2.0)))
    cdf_min = 0.5 * (1.0 + torch.erf(inv * (centered - 1.0 / 255.0) / math.sqrt(2.0)))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_sf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_sf_min, log_delta))


def save(path, model, ema, opt, step, imgs_seen, train_secs):
    tmp = path + ".tmp"
    torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                "step": step, "imgs_seen": imgs_seen, "train_secs": train_secs,
                "rng": torch.get_rng_state()}, tmp)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
