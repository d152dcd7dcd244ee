#!/usr/bin/env python3
"""The sparse softmax-regression epoch of softmax-wgpu, written with SciPy's CSR matrices: the peer `softmax-wgpu
bench --sparse NNZ` times beside us.

Usage: scipy_step.py X.npy Y.npy BATCH EPOCHS
X.npy names the directory's CSR arrays as `bench` writes them: xp.npy (row offsets), xi.npy (column indices) and
xv.npy (values), beside X.npy's place; y (int, [N]). Trains from zero weights with lr 0.01, in the data's order, and
prints one JSON line: {"peer": "scipy", "epoch_seconds": [...], "threads": ..., "version": ...}. Each step is the one
softmax-wgpu takes: Z = XW + b, max-subtracted softmax, R = S − onehot(y), W ← W − lr·(XᵀR/B), b ← b − lr·colsum(R)/B,
in float32.
"""
import json
import os
import sys
import time

import numpy as np
import scipy
import scipy.sparse as sp

# NumPy's peer's step, unchanged: its products (xb @ w, xb.T @ z) are SciPy's sparse ones on a CSR batch. `bench`
# writes every peer script into one directory, which Python puts first on the import path.
from numpy_step import epoch


def main():
    x_path, y_path, batch, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    here = os.path.dirname(x_path)
    load = lambda name: np.load(os.path.join(here, name))
    indptr, indices, values = load("xp.npy"), load("xi.npy"), load("xv.npy").ravel().astype(np.float32)
    y = np.load(y_path).astype(np.int64, copy=False)
    d = int(load("xd.npy")[0])
    x = sp.csr_matrix((values, indices, indptr), shape=(len(y), d))
    k = int(y.max()) + 1
    w = np.zeros((d, k), dtype=np.float32)
    b = np.zeros(k, dtype=np.float32)
    times = []
    for _ in range(epochs):
        t = time.perf_counter()
        epoch(x, y, w, b, batch, np.float32(0.01))
        times.append(time.perf_counter() - t)
    print(json.dumps({
        "peer": "scipy",
        "version": scipy.__version__,
        "threads": os.cpu_count(),
        "epoch_seconds": times,
        "checksum": float(np.abs(w).sum()),
    }))


if __name__ == "__main__":
    main()
