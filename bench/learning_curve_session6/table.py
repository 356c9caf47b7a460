"""Markdown table of curve_k50_first100.csv (one row per snapshot; the three variances)."""
import csv
import collections
import os

here = os.path.dirname(os.path.abspath(__file__))
rows = list(csv.DictReader(open(os.path.join(here, "curve_k50_first100.csv"))))
by = collections.OrderedDict()
for r in rows:
    key = (r["snapshot"], r["weights"])
    by.setdefault(key, {"step": int(r["step"]), "imgs": int(r["imgs_seen"]), "h": float(r["train_h"])})[r["variance"]] = (
        float(r["bits_per_dim"]), float(r["ci95"]))
print("| step | images seen | training hours (process) | σ² = β | σ² optimal (calibrated per snapshot) | σ² learned (EMA v head) |")
print("|---|---|---|---|---|---|")
for (snap, w), d in sorted(by.items(), key=lambda kv: kv[1]["step"]):
    cell = lambda v: f"{d[v][0]:.4f}" if v in d else "–"
    print(f"| {d['step']:,} | {d['imgs']:,} | {d['h']:.2f} | {cell('large')} | {cell('optimal')} | {cell('learned')} |")
