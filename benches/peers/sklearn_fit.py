#!/usr/bin/env python3
"""scikit-learn's answer to softmax-wgpu's default job: the peer `softmax-wgpu bench --peers sklearn` times beside
our `train` with its defaults, on the same training and held-out files.

Usage: sklearn_fit.py dense XTR.npy YTR.npy XTE.npy YTE.npy
       sklearn_fit.py sparse TRAIN.svm TEST.svm D
Dense data: StandardScaler + LogisticRegression() (our default standardises dense features); sparse data (LIBSVM):
load_svmlight_file + LogisticRegression() on the CSR matrix (our default leaves sparse features as they are).
Times load, fit and the held-out accuracy together (the interpreter's start and imports excluded), and prints one JSON
line: {"peer": "sklearn", "seconds", "iterations", "objective", "held_out_accuracy", "threads", "version"}.
"objective" is J = mean cross-entropy + ‖coef‖²/(2N) on the training rows: scikit-learn's objective
C·Σ CE + ½‖coef‖² divided by C·N with C = 1, which is ours with λ = 1/N (for two classes scikit-learn's one vector v
is our w₁ = −w₂ = v/2 with λ = 2/N: the same J).
"""
import json
import os
import sys
import time

import numpy as np


def main():
    import sklearn
    from sklearn.linear_model import LogisticRegression

    kind = sys.argv[1]
    t0 = time.perf_counter()
    if kind == "dense":
        from sklearn.preprocessing import StandardScaler

        x = np.load(sys.argv[2])
        y = np.load(sys.argv[3]).astype(np.int64, copy=False)
        scaler = StandardScaler()
        x = scaler.fit_transform(x)
        model = LogisticRegression().fit(x, y)
        xt = scaler.transform(np.load(sys.argv[4]))
        yt = np.load(sys.argv[5]).astype(np.int64, copy=False)
    elif kind == "sparse":
        from sklearn.datasets import load_svmlight_file

        d = int(sys.argv[4])
        x, y = load_svmlight_file(sys.argv[2], n_features=d, dtype=np.float32)
        model = LogisticRegression().fit(x, y)
        xt, yt = load_svmlight_file(sys.argv[3], n_features=d, dtype=np.float32)
    else:
        raise SystemExit(f"unknown kind {kind!r}")
    accuracy = float(model.score(xt, yt))
    seconds = time.perf_counter() - t0

    # The objective at scikit-learn's answer, outside the timing.
    p = model.predict_proba(x)
    index = np.searchsorted(model.classes_, y)
    ce = -np.log(np.clip(p[np.arange(len(index)), index], 1e-300, None)).mean()
    objective = float(ce + (model.coef_.astype(np.float64) ** 2).sum() / (2.0 * x.shape[0]))
    print(
        json.dumps(
            {
                "peer": "sklearn",
                "seconds": seconds,
                "iterations": int(np.max(model.n_iter_)),
                "objective": objective,
                "held_out_accuracy": accuracy,
                "threads": os.cpu_count(),
                "version": sklearn.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
