#!/usr/bin/env python3
"""The softmax-regression epoch of softmax-wgpu in JAX: a jitted step (log-softmax cross-entropy, its gradient,
W ← W − lr·∇), the peer `softmax-wgpu bench --peers jax` times beside us.

Usage: jax_step.py X.npy Y.npy BATCH EPOCHS
Reads X (float32, [N, D]) and y (integer, [N]) as written by `bench`, trains from zero weights with lr 0.01 in the
data's order on JAX's default device, and prints one JSON line:
{"peer": "jax", "epoch_seconds": [...], "version": ..., "device": ...}. The first epoch compiles the step (and the
last, shorter batch); `bench` counts it as the warm-up.
"""
import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np


def loss(params, xb, yb):
    w, b = params
    logp = jax.nn.log_softmax(xb @ w + b)
    return -jnp.mean(jnp.take_along_axis(logp, yb[:, None], axis=1))


@jax.jit
def step(params, xb, yb):
    grads = jax.grad(loss)(params, xb, yb)
    return tuple(p - 0.01 * g for p, g in zip(params, grads))


def main():
    x_path, y_path, batch, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    x = jnp.asarray(np.load(x_path).astype(np.float32, copy=False))
    y_np = np.load(y_path).astype(np.int32, copy=False)
    y = jnp.asarray(y_np)
    n, d = x.shape
    k = int(y_np.max()) + 1
    params = (jnp.zeros((d, k), jnp.float32), jnp.zeros((k,), jnp.float32))
    times = []
    for _ in range(epochs):
        t = time.perf_counter()
        for start in range(0, n, batch):
            params = step(params, x[start:start + batch], y[start:start + batch])
        jax.block_until_ready(params)
        times.append(time.perf_counter() - t)
    print(json.dumps({
        "peer": "jax",
        "version": jax.__version__,
        "device": str(jax.devices()[0]),
        "epoch_seconds": times,
        "checksum": float(jnp.abs(params[0]).sum()),
    }))


if __name__ == "__main__":
    main()
