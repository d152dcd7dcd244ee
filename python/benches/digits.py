#!/usr/bin/env python3
"""softmax_wgpu.SoftmaxRegression side by side with scikit-learn's LogisticRegression on the digits.

The digits (1,797 × 64, 10 classes) standardised, split 75/25 with a fixed seed; each model fitted `--repeat` times
(default 5) in this process, alternating, and the median wall time of `fit` reported with the iterations, the
objective J = mean CE + penalty/(C·N) on the training rows (scikit-learn's objective divided by C·N) and the held-out
accuracy. Rows: the default L2 fit (LogisticRegression() against SoftmaxRegression() on the CPU path and on each
adapter wgpu finds), and L1 (SAGA against OWL-QN) at C = 0.1.

    python python/benches/digits.py [--repeat 5] [--json]

Times are this machine's, in one run: compare the rows, not the figures with another machine's.
"""

import argparse
import json
import statistics
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import softmax_wgpu
from softmax_wgpu import SoftmaxRegression


def objective(model, X, y, C, l1_ratio):
    p = model.predict_proba(X)
    ce = -np.log(p[np.arange(len(y)), np.searchsorted(model.classes_, y)])
    coef = model.coef_
    penalty = (1 - l1_ratio) / 2 * (coef**2).sum() + l1_ratio * np.abs(coef).sum()
    return ce.mean() + penalty / (C * len(y))


def l1_logistic_regression(C):
    """scikit-learn's L1 logistic regression in the interface of the installed version."""
    import sklearn

    if tuple(int(v) for v in sklearn.__version__.split(".")[:2]) >= (1, 8):
        return LogisticRegression(l1_ratio=1.0, C=C, solver="saga", max_iter=10_000)
    return LogisticRegression(penalty="l1", C=C, solver="saga", max_iter=10_000)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    scaler = StandardScaler().fit(X_train)
    X_train = scaler.transform(X_train).astype(np.float32)
    X_test = scaler.transform(X_test).astype(np.float32)
    # The CPU path, then every adapter by its index, named with its backend.
    devices = [("cpu", "cpu")] + [(str(d["index"]), f"{d['name']} ({d['backend']})") for d in softmax_wgpu.devices()]
    saga = "LogisticRegression(l1_ratio=1, solver='saga')"
    cases = [("L2, C = 1", 1.0, 0.0, "LogisticRegression()", LogisticRegression)]
    cases += [("L2, C = 1", 1.0, 0.0, f"SoftmaxRegression(), {n}", _ours(device=d)) for d, n in devices]
    cases += [("L1, C = 0.1", 0.1, 1.0, saga, lambda: l1_logistic_regression(0.1))]
    cases += [
        ("L1, C = 0.1", 0.1, 1.0, f"SoftmaxRegression(penalty='l1'), {n}", _ours(penalty="l1", C=0.1, device=d))
        for d, n in devices
    ]
    times = {i: [] for i in range(len(cases))}
    fitted = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(args.repeat):
            for i, (_, _, _, _, make) in enumerate(cases):
                model = make()
                start = time.perf_counter()
                model.fit(X_train, y_train)
                times[i].append(time.perf_counter() - start)
                fitted[i] = model
    rows = []
    for i, (penalty, C, l1_ratio, name, _) in enumerate(cases):
        m = fitted[i]
        rows.append(
            {
                "penalty": penalty,
                "model": name,
                "fit_seconds": statistics.median(times[i]),
                "iterations": int(np.max(m.n_iter_)),
                "objective": objective(m, X_train, y_train, C, l1_ratio),
                "zero_weights": int((m.coef_ == 0).sum()),
                "test_accuracy": float(m.score(X_test, y_test)),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"digits 1,347 train / 450 test × 64 × 10, standardised; median of {args.repeat} fits")
    print(f"{'penalty':<12} {'model':<66} {'fit s':>7} {'iter':>5} {'J (train)':>10} {'zeros':>6} {'test acc':>8}")
    for r in rows:
        print(
            f"{r['penalty']:<12} {r['model']:<66} {r['fit_seconds']:>7.3f} {r['iterations']:>5} "
            f"{r['objective']:>10.6f} {r['zero_weights']:>6} {r['test_accuracy']:>8.4f}"
        )


def _ours(**params):
    return lambda: SoftmaxRegression(**params)


if __name__ == "__main__":
    main()
