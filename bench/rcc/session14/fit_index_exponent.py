"""Fits the PFR index model's Zipf exponent s(kl_bucket) = a + b/(kl_bucket/4 + c) (format 9,
SPEC § 8) by maximum likelihood to the indices an encoder chose, and compares it with the
format 4-8 formula. Input: lines "IDX log2_n kl_bucket j" (gzip or plain), written by the
encoder with dump_indices.patch applied and DUMP_IDX=1 set (stderr). Usage:

  python3 fit_index_exponent.py indices_train60_k50.txt.gz [held_out.txt.gz ...]

prints the mean code length (bits per chunk) under the old formula and the fitted one (and
the rounded constants the format uses: a = 0.42, b = 3, c = 2.7) on the fitting set, then
the same for every held-out set. Needs numpy and scipy."""
import gzip, sys
import numpy as np
from scipy.optimize import minimize


def load(path):
    op = gzip.open if path.endswith(".gz") else open
    with op(path, "rt") as f:
        rows = [l.split() for l in f if l.startswith("IDX")]
    keys = {}
    for _, l, kb, j in rows:
        keys.setdefault((int(l), int(kb)), []).append(int(j))
    return {k: np.array(v) for k, v in keys.items()}, len(rows)


def ln_norm(s, n):
    k = np.arange(1, n + 1, dtype=np.float64)
    return np.log(np.sum(k ** -s))


def mean_bits(form, keys, count):
    t = 0.0
    for (l, kb), jj in keys.items():
        s = form(l, kb)
        t += (s * np.log(jj + 1).sum() + len(jj) * ln_norm(s, 2 ** l)) / np.log(2)
    return t / count


old = lambda l, kb: 0.65 + 1.3 / (kb * 0.25 + 0.48)
new = lambda p: (lambda l, kb: p[0] + p[1] / (kb * 0.25 + abs(p[2])))
keys, n = load(sys.argv[1])
r = minimize(lambda p: mean_bits(new(p), keys, n), [0.6, 1.3, 0.48], method="Nelder-Mead", options={"maxiter": 300})
print(f"{sys.argv[1]}: {n} chunks; format 4-8 {mean_bits(old, keys, n):.4f} bits/chunk, fitted {r.fun:.4f} (a, b, c = {r.x[0]:.4f}, {r.x[1]:.4f}, {abs(r.x[2]):.4f}), format 9 {mean_bits(new([0.42, 3.0, 2.7]), keys, n):.4f}")
for path in sys.argv[2:]:
    k2, n2 = load(path)
    print(f"{path}: {n2} chunks; format 4-8 {mean_bits(old, k2, n2):.4f}, format 9 {mean_bits(new([0.42, 3.0, 2.7]), k2, n2):.4f}")
