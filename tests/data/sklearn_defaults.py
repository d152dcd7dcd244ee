#!/usr/bin/env python3
"""The accuracies that tests/defaults.rs compares softmax-wgpu's default run with.

For each small public table under data/ (iris, wine, breast cancer, and the digits), a stratified 75/25 split
(train_test_split(stratify=y, test_size=0.25, random_state=0)); scikit-learn's defaults on it, as its users run
them: StandardScaler, then LogisticRegression() (lbfgs, C=1, tol=1e-4, max_iter=100). The split's row indices and
the test accuracy are written to tests/data/defaults_reference.json; the test trains softmax-wgpu on the same rows
with `train --data train.csv --test test.csv` and no other flag.

It also writes the three tables as data/iris.csv, data/wine.csv and data/breast_cancer.csv (a header line, the
features, then the class name) from the copies scikit-learn bundles; data/README.md gives their sources and
licenses. Run from the repository root:
    python3 tests/data/sklearn_defaults.py
"""
import csv
import gzip
import json
import os
import warnings

import numpy as np
import sklearn
from sklearn.datasets import load_breast_cancer, load_iris, load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def write_table(name, bunch):
    path = os.path.join(ROOT, "data", name + ".csv")
    names = [str(t) for t in bunch.target_names]
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow([n.replace(" ", "_") for n in bunch.feature_names] + ["class"])
        for row, t in zip(bunch.data, bunch.target):
            w.writerow([repr(float(v)) for v in row] + [names[t]])
    # Read back exactly as written (float64 values as text), so both sides start from the same numbers.
    return "data/" + name + ".csv", bunch.data, bunch.target


def digits():
    with gzip.open(os.path.join(ROOT, "data", "digits.csv.gz"), "rt") as f:
        table = np.loadtxt(f, delimiter=",")
    return "data/digits.csv.gz", table[:, :-1], table[:, -1].astype(int)


def main():
    tables = [
        ("iris",) + write_table("iris", load_iris()),
        ("wine",) + write_table("wine", load_wine()),
        ("breast_cancer",) + write_table("breast_cancer", load_breast_cancer()),
        ("digits",) + digits(),
    ]
    problems = []
    for name, path, x, y in tables:
        idx = np.arange(len(y))
        train, test = train_test_split(idx, test_size=0.25, stratify=y, random_state=0)
        model = make_pipeline(StandardScaler(), LogisticRegression())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(x[train], y[train])
        lr = model[-1]
        problems.append({
            "name": name,
            "file": path,
            "rows": int(len(y)),
            "features": int(x.shape[1]),
            "classes": int(len(np.unique(y))),
            "train": sorted(int(i) for i in train),
            "test": sorted(int(i) for i in test),
            "accuracy": float(model.score(x[test], y[test])),
            "n_iter": int(lr.n_iter_[0]),
            "converged": not any(issubclass(w.category, ConvergenceWarning) for w in caught),
        })
        print(name, problems[-1]["accuracy"], "iterations", problems[-1]["n_iter"], "converged", problems[-1]["converged"])
    out = {
        "generator": "tests/data/sklearn_defaults.py",
        "versions": {"scikit-learn": sklearn.__version__, "numpy": np.__version__},
        "model": "make_pipeline(StandardScaler(), LogisticRegression())",
        "split": "train_test_split(stratify=y, test_size=0.25, random_state=0)",
        "problems": problems,
    }
    with open(os.path.join(HERE, "defaults_reference.json"), "w") as f:
        json.dump(out, f)
        f.write("\n")


if __name__ == "__main__":
    main()
