"""PyTorch fp32 inference benchmark of the U-Net (train/model.py), interleaved with the Rust one.

  # PyTorch only: ms/img at each batch size and thread count
  python3 train/bench_infer.py --model DIR [--batches 1,16,64] [--threads 1,2]
  # write random-init weights of a config (when no trained export exists)
  python3 train/bench_infer.py --make-random train/configs/small.json --out DIR
  # interleaved with the Rust benchmark binary (examples/bench_infer.rs), markdown table
  python3 train/bench_infer.py --model DIR --rust-bin target/release/examples/bench_infer --md bench/infer.md

DIR holds model.safetensors + config.json (train/export.py writes them). Timing: eval mode,
torch.no_grad, warm-up, then repeated forwards for about --secs seconds; the median of
--rounds rounds is reported. Rust and PyTorch run alternately in each round, so a background
load hits both alike; the ratio column is PyTorch ms / Rust ms (> 1: Rust is faster).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import Config, UNet  # noqa: E402


def load_model(d):
    cfg = Config.from_dict(json.load(open(os.path.join(d, "config.json"))))
    m = UNet(cfg)
    sd = {k: v.float() for k, v in load_file(os.path.join(d, "model.safetensors")).items()}
    m.load_state_dict(sd)
    return m.eval(), cfg


def make_random(cfg_path, out):
    torch.manual_seed(0)
    cfg = Config.from_dict(json.load(open(cfg_path)))
    m = UNet(cfg).eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    os.makedirs(out, exist_ok=True)
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, os.path.join(out, "model.safetensors"))
    with open(os.path.join(out, "config.json"), "w") as f:
        f.write(cfg.to_json())
    print("wrote random-init", cfg_path, "->", out)


def torch_ms_per_img(m, cfg, batch, threads, secs):
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, cfg.in_channels, cfg.resolution, cfg.resolution, generator=g)
    t = torch.full((batch,), 500, dtype=torch.long)
    with torch.no_grad():
        for _ in range(2):
            m(x, t)
        n = 0
        t0, c0 = time.perf_counter(), time.process_time()
        while True:
            m(x, t)
            n += 1
            el = time.perf_counter() - t0
            if el >= secs and n >= 2:
                break
    return 1e3 * el / (n * batch), 1e3 * (time.process_time() - c0) / (n * batch)


def rust_ms_per_img(rust_bin, model_dir, batch, threads, secs, backends):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run([rust_bin, "--model", model_dir, "--batch", str(batch), "--secs", str(secs),
                          "--backends", backends], env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="dir with model.safetensors + config.json")
    ap.add_argument("--make-random", metavar="CONFIG_JSON")
    ap.add_argument("--out")
    ap.add_argument("--batches", default="1,16,64")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--secs", type=float, default=1.5, help="seconds per measurement")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rust-bin")
    ap.add_argument("--candle-secs", type=float, default=None, help="seconds per candle measurement")
    ap.add_argument("--md", help="write a markdown table here")
    ap.add_argument("--desc", default="", help="where the weights come from (for the table)")
    a = ap.parse_args()
    if a.make_random:
        make_random(a.make_random, a.out)
        return
    m, cfg = load_model(a.model)
    batches = [int(b) for b in a.batches.split(",")]
    threads = [int(t) for t in a.threads.split(",")]
    rows = {}
    for r in range(a.rounds):
        for b in batches:
            for th in threads:
                key = (b, th)
                rec = rows.setdefault(key, {"torch": [], "fast": [], "candle": [], "ratio": [],
                                            "torch_cpu": [], "fast_cpu": [], "cpu_ratio": []})
                if a.rust_bin:
                    # candle is slow and its number is only the "before": measure it in round 0 only
                    be = "fast,candle" if r == 0 else "fast"
                    rs = rust_ms_per_img(a.rust_bin, a.model, b, th, a.secs, be)
                pt, pc = torch_ms_per_img(m, cfg, b, th, a.secs)
                rec["torch"].append(pt)
                rec["torch_cpu"].append(pc)
                if a.rust_bin:
                    rec["fast"].append(rs["fast"])
                    rec["ratio"].append(pt / rs["fast"])
                    rec["fast_cpu"].append(rs["fast_cpu"])
                    rec["cpu_ratio"].append(pc / rs["fast_cpu"])
                    if "candle" in rs:
                        rec["candle"].append(rs["candle"])
                line = {"round": r, "batch": b, "threads": th, "torch_ms": round(pt, 3), "torch_cpu": round(pc, 3)}
                if a.rust_bin:
                    line.update({k: round(v, 3) for k, v in rs.items()})
                print(json.dumps(line), flush=True)
    med = lambda v: statistics.median(v) if v else float("nan")  # noqa: E731
    lines = [
        f"Model: {a.desc or a.model} ({sum(p.numel() for p in m.parameters()) / 1e6:.2f}M params, config "
        f"`{json.dumps(cfg.__dict__)}`), fp32, {a.rounds} rounds of ~{a.secs}s per cell, "
        f"Rust and PyTorch {torch.__version__} interleaved; median ms per 32x32 image.",
        "ratio = PyTorch ms / Rust fast ms (median of per-round ratios; > 1 means Rust is faster).",
        "CPU columns: CPU time (all threads) per image, less sensitive to other load on the machine.",
        "",
        "| batch | threads | Rust candle (before) ms/img | Rust fast ms/img | PyTorch fp32 ms/img | ratio |"
        " fast CPU ms/img | PyTorch CPU ms/img | CPU ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (b, th), rec in rows.items():
        lines.append(f"| {b} | {th} | {med(rec['candle']):.2f} | {med(rec['fast']):.3f} | "
                     f"{med(rec['torch']):.3f} | {med(rec['ratio']):.2f} | {med(rec['fast_cpu']):.2f} | "
                     f"{med(rec['torch_cpu']):.2f} | {med(rec['cpu_ratio']):.2f} |")
    print("\n".join(lines))
    if a.md:
        os.makedirs(os.path.dirname(a.md) or ".", exist_ok=True)
        with open(a.md, "w") as f:
            f.write("# U-Net inference speed (written by bench/run_infer_bench.sh)\n\n")
            f.write(f"Machine: {os.cpu_count()} CPUs, `{cpu_name()}`; load: {os.getloadavg()[0]:.2f} "
                    f"(1-min load average at the end).\n\n")
            f.write("\n".join(lines) + "\n")


def cpu_name():
    try:
        for ln in open("/proc/cpuinfo"):
            if ln.startswith("model name"):
                return ln.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


if __name__ == "__main__":
    main()
