#!/usr/bin/env python3
"""The softmax-regression epoch of softmax-wgpu in PyTorch: nn.Linear + CrossEntropyLoss + SGD, the peer
`softmax-wgpu bench --peers torch` times beside us.

Usage: torch_step.py X.npy Y.npy BATCH EPOCHS
Reads X (float32, [N, D]) and y (integer, [N]) as written by `bench`, trains from zero weights with lr 0.01 in the
data's order on the CPU (or on CUDA when SOFTMAX_WGPU_PEER_DEVICE=cuda), and prints one JSON line:
{"peer": "torch", "epoch_seconds": [...], "threads": ..., "version": ..., "device": ...}.
"""
import json
import os
import sys
import time

import numpy as np
import torch


def main():
    x_path, y_path, batch, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    device = torch.device(os.environ.get("SOFTMAX_WGPU_PEER_DEVICE", "cpu"))
    x = torch.from_numpy(np.load(x_path).astype(np.float32, copy=False)).to(device)
    y = torch.from_numpy(np.load(y_path).astype(np.int64, copy=False)).to(device)
    n, d = x.shape
    k = int(y.max().item()) + 1
    model = torch.nn.Linear(d, k).to(device)
    torch.nn.init.zeros_(model.weight)
    torch.nn.init.zeros_(model.bias)
    loss_fn = torch.nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    times = []
    for _ in range(epochs):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for start in range(0, n, batch):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[start:start + batch]), y[start:start + batch])
            loss.backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    print(json.dumps({
        "peer": "torch",
        "version": torch.__version__,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "epoch_seconds": times,
        "checksum": float(model.weight.abs().sum().item()),
    }))


if __name__ == "__main__":
    main()
