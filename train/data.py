"""CIFAR-10 binary batches (3073-byte records: label, 1024 R, 1024 G, 1024 B)."""
import os

import numpy as np


def load_cifar10(root, split):
    files = ["test_batch.bin"] if split == "test" else [f"data_batch_{i}.bin" for i in range(1, 6)]
    arrs = []
    for f in files:
        p = os.path.join(root, f)
        if not os.path.exists(p):
            continue
        raw = np.fromfile(p, dtype=np.uint8)
        assert raw.size % 3073 == 0, f"{p}: not CIFAR-10 binary"
        arrs.append(raw.reshape(-1, 3073)[:, 1:].reshape(-1, 3, 32, 32))
    if not arrs:
        raise FileNotFoundError(f"no CIFAR-10 {split} batches in {root}")
    return np.concatenate(arrs)
