#!/usr/bin/env python3
"""The scikit-learn optima that tests/lbfgs.rs compares L-BFGS with.

For each problem, scikit-learn's LogisticRegression(solver="lbfgs", C=1) is run to a tight tolerance
(tol=1e-10, max_iter=100000), so that the figures are the optimum itself rather than where a looser stopping
rule left it. With N rows, C = 1 / (lambda * N) is the same objective as softmax-wgpu's
    J = mean cross-entropy + lambda/2 * ||W||^2   (bias not penalised),
so lambda = 1 / N here. J is recomputed in float64 from the coefficients.

Problems:
- digits: the embedded data/digits.csv.gz (1,797 x 64, 10 classes), features divided by 16 (exact in float32);
- synthetic: 800 x 12, 4 Gaussian classes drawn here with a fixed seed and written to
  tests/data/lbfgs_synth_x.npy (float32) and lbfgs_synth_y.npy (int64), so both sides read the same numbers;
- imbalanced: 900 x 10, 3 classes in proportions 60/30/10 % (lbfgs_imbalanced_*.npy), fitted with
  class_weight="balanced" (w_c = N / (K n_c)); J is then mean(w_y * loss) + lambda/2 ||W||^2;
- weighted: 700 x 8, 3 classes, fitted with sample_weight (lbfgs_weighted_w.npy, float32, a tenth of them 0);
  J = mean(w_i * loss_i) + lambda/2 ||W||^2, the minimiser of scikit-learn's C * sum(w_i * loss_i) + ||W||^2 / 2.

Writes tests/data/lbfgs_reference.json. Run from the repository root:
    python3 tests/data/sklearn_lbfgs.py
(numpy, scipy and scikit-learn; the versions used are recorded in the output.)
"""
import gzip
import json
import os

import numpy as np
import scipy
import sklearn
from scipy.special import logsumexp
from sklearn.linear_model import LogisticRegression

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def objective(x, y, coef, intercept, lam, cw=None, sw=None):
    z = x @ coef.T + intercept
    ce = logsumexp(z, axis=1) - z[np.arange(len(y)), y]
    w = np.ones(len(y)) if cw is None else cw[y]
    if sw is not None:
        w = w * sw
    return float(np.mean(w * ce) + 0.5 * lam * np.sum(coef * coef))


def solve(name, x, y, balanced=False, sw=None):
    n = len(y)
    lam = 1.0 / n
    # With class weights w, scikit-learn minimises C * sum(w_i * loss_i) + ||W||^2 / 2, which has the minimiser of
    # softmax-wgpu's mean(w_i * loss_i) + lambda/2 ||W||^2 when C = 1/(lambda N), as without weights.
    cw = len(y) / (len(np.unique(y)) * np.bincount(y)) if balanced else None
    model = LogisticRegression(
        C=1.0 / (lam * n), tol=1e-10, max_iter=100000, class_weight="balanced" if balanced else None
    ).fit(x, y, sample_weight=sw)
    coef = model.coef_.astype(np.float64)
    intercept = model.intercept_.astype(np.float64)
    # Softmax is unchanged by a shift of every intercept; scikit-learn returns them centred, and so are ours
    # (gradient steps from zero keep their sum at zero).
    intercept = intercept - intercept.mean()
    return {
        "name": name,
        "rows": n,
        "features": int(x.shape[1]),
        "classes": int(coef.shape[0]),
        "lambda": lam,
        "C": 1.0 / (lam * n),
        "objective": objective(x, y, coef, intercept, lam, cw, sw),
        "sample_weights": sw is not None,
        "class_weight": "balanced" if balanced else None,
        "class_weights": None if cw is None else cw.tolist(),
        "n_iter": int(model.n_iter_[0]),
        # W as softmax-wgpu stores it: [features][classes].
        "w": coef.T.tolist(),
        "b": intercept.tolist(),
        "train_accuracy": float(model.score(x, y)),
    }


def main():
    with gzip.open(os.path.join(ROOT, "data", "digits.csv.gz"), "rt") as f:
        table = np.loadtxt(f, delimiter=",")
    x_digits = (table[:, :-1] / 16.0).astype(np.float32).astype(np.float64)
    y_digits = table[:, -1].astype(np.int64)

    rng = np.random.default_rng(20261124)
    n, d, k = 800, 12, 4
    means = rng.normal(0.0, 1.0, size=(k, d))
    y_synth = rng.integers(0, k, size=n).astype(np.int64)
    x_synth = (means[y_synth] + rng.normal(0.0, 1.5, size=(n, d))).astype(np.float32)
    np.save(os.path.join(HERE, "lbfgs_synth_x.npy"), x_synth)
    np.save(os.path.join(HERE, "lbfgs_synth_y.npy"), y_synth)

    # Imbalanced: 60 / 30 / 10 % of 900 rows, 10 features; fitted with class_weight="balanced".
    n, d, k = 900, 10, 3
    means = rng.normal(0.0, 1.0, size=(k, d))
    y_imb = rng.choice(k, size=n, p=[0.6, 0.3, 0.1]).astype(np.int64)
    x_imb = (means[y_imb] + rng.normal(0.0, 1.5, size=(n, d))).astype(np.float32)
    np.save(os.path.join(HERE, "lbfgs_imbalanced_x.npy"), x_imb)
    np.save(os.path.join(HERE, "lbfgs_imbalanced_y.npy"), y_imb)

    # Sample weights: 700 x 8, 3 classes, a weight per row uniform in [0, 3) with a tenth of them 0.
    n, d, k = 700, 8, 3
    means = rng.normal(0.0, 1.0, size=(k, d))
    y_w = rng.integers(0, k, size=n).astype(np.int64)
    x_w = (means[y_w] + rng.normal(0.0, 1.5, size=(n, d))).astype(np.float32)
    sw = rng.uniform(0.0, 3.0, size=n).astype(np.float32)
    sw[rng.random(n) < 0.1] = 0.0
    np.save(os.path.join(HERE, "lbfgs_weighted_x.npy"), x_w)
    np.save(os.path.join(HERE, "lbfgs_weighted_y.npy"), y_w)
    np.save(os.path.join(HERE, "lbfgs_weighted_w.npy"), sw)

    out = {
        "generator": "tests/data/sklearn_lbfgs.py",
        "versions": {"scikit-learn": sklearn.__version__, "scipy": scipy.__version__, "numpy": np.__version__},
        "solver": 'LogisticRegression(solver="lbfgs", C=1/(lambda*N), tol=1e-10, max_iter=100000)',
        "problems": [
            solve("digits/16", x_digits, y_digits),
            solve("synthetic 800x12x4", x_synth.astype(np.float64), y_synth),
            solve("imbalanced 900x10x3, balanced", x_imb.astype(np.float64), y_imb, balanced=True),
            solve("weighted 700x8x3, sample weights", x_w.astype(np.float64), y_w, sw=sw.astype(np.float64)),
        ],
    }
    with open(os.path.join(HERE, "lbfgs_reference.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    for p in out["problems"]:
        print(p["name"], "objective", p["objective"], "iterations", p["n_iter"], "accuracy", p["train_accuracy"])


if __name__ == "__main__":
    main()
