"""softmax_wgpu.SoftmaxRegression against scikit-learn: its own estimator checks, LogisticRegression's optimum on
four of its data sets, weights, the binary case, pickling, and bad input."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import softmax_wgpu
from softmax_wgpu import SoftmaxRegression

# Software adapters (lavapipe) count: the GPU path is tested wherever wgpu finds an adapter.
GPU = len(softmax_wgpu.devices()) > 0

# The checks scikit-learn's own LogisticRegression is expected to fail, and why ours does too.
EXPECTED_FAILED = {
    "check_sample_weight_equivalence_on_dense_data": (
        "the fit stops at ‖∇J‖∞ ≤ tol (1e-4) in f32, so a weighted fit and a fit on repeated rows agree to about "
        "1e-4 in probability, where the check asks 1e-7; the objectives are the same (scikit-learn lists this "
        "check as an expected failure of LogisticRegression too)"
    ),
    "check_sample_weight_equivalence_on_sparse_data": (
        "as on dense data: a fit stopped at ‖∇J‖∞ ≤ 1e-4 in f32 agrees to about 1e-4, the check asks 1e-7 "
        "(an expected failure of scikit-learn's LogisticRegression too)"
    ),
}


# The CPU path, and the GPU path on the first adapter wherever there is one (lavapipe here: 64 checks in 82 s).
@parametrize_with_checks(
    [SoftmaxRegression(device="cpu")] + ([SoftmaxRegression(device="gpu")] if GPU else []),
    expected_failed_checks=lambda est: EXPECTED_FAILED,
)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def objective(model, X, y, sample_weight=None, class_weight=None):
    """scikit-learn's objective divided by C·N: mean weighted cross-entropy + ‖coef‖²/(2·C·N)."""
    p = model.predict_proba(X)
    index = np.searchsorted(model.classes_, y)
    w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
    if class_weight is not None:
        w = w * np.asarray([class_weight[c] for c in y])
    ce = -np.log(p[np.arange(len(y)), index])
    return (w * ce).mean() + (model.coef_**2).sum() / (2.0 * len(y))


DATASETS = [load_iris, load_wine, load_breast_cancer, load_digits]


@pytest.mark.parametrize("load", DATASETS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("device", ["cpu", "gpu"])
def test_reaches_logistic_regressions_optimum(load, device):
    if device == "gpu" and not GPU:
        pytest.skip("no adapter")
    X, y = load(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    ours = SoftmaxRegression(tol=1e-6, device=device).fit(X, y)
    theirs = LogisticRegression(tol=1e-10, max_iter=10_000).fit(X, y)
    # Both minimise the same strongly convex objective; ours in f32 to ‖∇J‖∞ ≤ 1e-6, theirs in f64 to 1e-10. 1e-6
    # relative is what f32 sums of the losses allow (measured: 9e-10 to 1.3e-7 on these four).
    j_ours, j_theirs = objective(ours, X, y), objective(theirs, X, y)
    assert abs(j_ours - j_theirs) <= 1e-6 * j_theirs, (j_ours, j_theirs)
    assert ours.coef_.shape == theirs.coef_.shape
    assert ours.intercept_.shape == theirs.intercept_.shape
    assert np.mean(ours.predict(X) == theirs.predict(X)) >= 0.99
    assert ours.n_iter_.shape == (1,) and ours.n_iter_[0] >= 1


def test_defaults_fit_logistic_regressions_defaults():
    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    ours = SoftmaxRegression(device="cpu").fit(X, y)
    theirs = LogisticRegression().fit(X, y)
    # Both stop at ‖∇J‖∞ ≤ 1e-4 of a λ-strongly convex J (λ = 1/N): each within ‖∇J‖²/(2λ) ≤ (D+1)·K·1e-8·N/2 of
    # the optimum.
    bound = 2 * (X.shape[1] + 1) * 10 * 1e-8 * len(y) / 2
    assert abs(objective(ours, X, y) - objective(theirs, X, y)) <= bound
    assert abs(ours.score(X, y) - theirs.score(X, y)) <= 0.01


def test_sample_and_class_weights_reach_logistic_regressions_optimum():
    X, y = load_wine(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    w = np.linspace(0.2, 3.0, len(y))
    ours = SoftmaxRegression(tol=1e-6, device="cpu").fit(X, y, sample_weight=w)
    theirs = LogisticRegression(tol=1e-10, max_iter=10_000).fit(X, y, sample_weight=w)
    assert abs(objective(ours, X, y, w) - objective(theirs, X, y, w)) <= 1e-6 * objective(theirs, X, y, w)
    ours = SoftmaxRegression(tol=1e-6, class_weight="balanced", device="cpu").fit(X, y)
    theirs = LogisticRegression(tol=1e-10, max_iter=10_000, class_weight="balanced").fit(X, y)
    counts = np.bincount(y)
    cw = {c: len(y) / (len(counts) * counts[c]) for c in range(len(counts))}
    j_ours = objective(ours, X, y, class_weight=cw)
    j_theirs = objective(theirs, X, y, class_weight=cw)
    assert abs(j_ours - j_theirs) <= 1e-6 * j_theirs


def test_two_classes_have_one_weight_vector_as_in_scikit_learn():
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    labels = np.where(y == 1, "benign", "malignant")
    ours = SoftmaxRegression(device="cpu").fit(X, labels)
    assert ours.coef_.shape == (1, X.shape[1]) and ours.intercept_.shape == (1,)
    scores = ours.decision_function(X)
    assert scores.shape == (len(y),)
    proba = ours.predict_proba(X)
    np.testing.assert_allclose(proba[:, 1], 1 / (1 + np.exp(-scores)), rtol=1e-12)
    np.testing.assert_allclose(np.exp(ours.predict_log_proba(X)), proba, rtol=1e-12)
    assert set(ours.predict(X)) <= {"benign", "malignant"}
    assert list(ours.classes_) == ["benign", "malignant"]


def test_pickle_and_clone():
    X, y = load_iris(return_X_y=True)
    model = SoftmaxRegression(C=0.5, device="cpu").fit(X, y)
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict_proba(X), model.predict_proba(X))
    fresh = clone(model)
    assert fresh.get_params() == model.get_params()
    assert not hasattr(fresh, "coef_")


def test_bad_input_is_a_value_error():
    X, y = load_iris(return_X_y=True)
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        SoftmaxRegression(device="cpu").fit(bad, y)
    with pytest.raises(ValueError, match="2 classes"):
        SoftmaxRegression(device="cpu").fit(X, np.zeros(len(y)))
    for params in [dict(penalty="l3"), dict(C=0), dict(tol=-1), dict(max_iter=0)]:
        with pytest.raises(ValueError):
            SoftmaxRegression(device="cpu", **params).fit(X, y)
    with pytest.raises(ValueError, match="--adapter"):
        SoftmaxRegression(device="no such adapter").fit(X, y)


def test_save_load_round_trip(tmp_path):
    X, y = load_wine(return_X_y=True)
    for labels in [y, np.where(y == 0, "a", "b")]:
        model = SoftmaxRegression(device="cpu").fit(X, labels)
        path = tmp_path / "m.safetensors"
        model.save(path)
        again = SoftmaxRegression.load(path)
        np.testing.assert_array_equal(again.classes_, model.classes_)
        # Stored in f32: probabilities to f32 rounding of the weights.
        np.testing.assert_allclose(again.predict_proba(X), model.predict_proba(X), atol=1e-5)
        np.testing.assert_array_equal(again.predict(X), model.predict(X))


def _cli():
    import os

    path = os.environ.get("SOFTMAX_WGPU_BIN")
    if not path:
        pytest.skip("SOFTMAX_WGPU_BIN names no command line (tests/python.rs sets it)")
    return path


def test_one_model_file_for_python_and_the_command_line(tmp_path):
    import subprocess

    cli = _cli()
    X, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    csv = tmp_path / "iris.csv"
    with open(csv, "w") as f:
        f.write("a,b,c,d,class\n")
        for row, name in zip(X, names):
            f.write(",".join(repr(float(v)) for v in row) + f",{name}\n")
    # Python → command line.
    model = SoftmaxRegression(device="cpu").fit(X, names)
    py_model = tmp_path / "py.safetensors"
    model.save(py_model)
    out = subprocess.run(
        [cli, "predict", "--model", str(py_model), "--data", str(csv)], capture_output=True, text=True, check=True
    )
    predicted = out.stdout.split()[1:]
    np.testing.assert_array_equal(predicted, model.predict(X))
    # Command line (standardised features, stored in the model) → Python.
    cli_model = tmp_path / "cli.safetensors"
    subprocess.run([cli, "train", "--data", str(csv), "--out", str(cli_model), "--quiet"], check=True)
    out = subprocess.run(
        [cli, "predict", "--model", str(cli_model), "--data", str(csv)], capture_output=True, text=True, check=True
    )
    loaded = SoftmaxRegression.load(cli_model)
    np.testing.assert_array_equal(out.stdout.split()[1:], loaded.predict(X))


@pytest.mark.parametrize("device", ["cpu", "gpu"])
def test_sparse_input_trains_on_the_sparse_path_to_the_dense_optimum(device):
    import scipy.sparse as sp

    if device == "gpu" and not GPU:
        pytest.skip("no adapter")
    X, y = load_digits(return_X_y=True)
    X = X / 16.0  # sparse as it is: a third of the pixels are 0
    # Unscaled, the optimum takes about 200 iterations to reach ‖∇J‖∞ ≤ 1e-6.
    dense = SoftmaxRegression(tol=1e-6, max_iter=1000, device=device).fit(X, y)
    for matrix in [sp.csr_matrix(X), sp.csc_matrix(X), sp.csr_array(X)]:
        sparse = SoftmaxRegression(tol=1e-6, max_iter=1000, device=device).fit(matrix, y)
        assert "sparse" in sparse.device_ or device == "gpu", sparse.device_
        j_dense, j_sparse = objective(dense, X, y), objective(sparse, X, y)
        assert abs(j_dense - j_sparse) <= 1e-6 * j_dense, (j_dense, j_sparse)
        np.testing.assert_allclose(sparse.predict_proba(matrix), sparse.predict_proba(X), rtol=1e-12)
    theirs = LogisticRegression(tol=1e-10, max_iter=10_000).fit(sp.csr_matrix(X), y)
    assert abs(objective(theirs, X, y) - j_dense) <= 1e-6 * j_dense


def test_warm_start_continues_from_the_last_fit():
    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    model = SoftmaxRegression(tol=1e-5, max_iter=1000, warm_start=True, device="cpu").fit(X, y)
    cold_iterations, optimum = model.n_iter_[0], objective(model, X, y)
    assert cold_iterations > 10
    # From the optimum it found, a second fit has (almost) nothing left to do; without warm_start it starts over.
    model.fit(X, y)
    assert model.n_iter_[0] <= 2, model.n_iter_
    assert abs(objective(model, X, y) - optimum) <= 1e-6 * optimum
    model.set_params(warm_start=False).fit(X, y)
    assert model.n_iter_[0] == cold_iterations


def test_verbose_prints_each_iteration(capfd):
    X, y = load_iris(return_X_y=True)
    model = SoftmaxRegression(verbose=1, device="cpu").fit(X, y)
    err = capfd.readouterr().err
    assert err.count("iter ") == model.n_iter_[0], err
    assert "objective" in err and "|grad|" in err


def test_ctrl_c_raises_keyboard_interrupt_and_leaves_the_estimator_unfitted():
    import os
    import signal
    import threading

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200_000, 100)).astype(np.float32)
    y = rng.integers(0, 10, size=200_000)
    model = SoftmaxRegression(tol=1e-30, max_iter=100_000, device="cpu")
    timer = threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            model.fit(X, y)
    finally:
        timer.cancel()
    assert not hasattr(model, "coef_") and not hasattr(model, "classes_")


@pytest.mark.filterwarnings("ignore:X does not have valid feature names")
def test_pandas_column_names_are_kept():
    pd = pytest.importorskip("pandas")
    X, y = load_iris(return_X_y=True)
    frame = pd.DataFrame(X, columns=["sl", "sw", "pl", "pw"])
    model = SoftmaxRegression(device="cpu").fit(frame, y)
    assert list(model.feature_names_in_) == ["sl", "sw", "pl", "pw"]
    np.testing.assert_array_equal(model.predict(frame), model.predict(X))


def test_grid_search_over_two_processes_and_joblib(tmp_path):
    import joblib
    from sklearn.model_selection import GridSearchCV

    X, y = load_iris(return_X_y=True)
    search = GridSearchCV(SoftmaxRegression(device="cpu"), {"C": [0.1, 1.0, 10.0]}, n_jobs=2, cv=3).fit(X, y)
    assert search.best_score_ > 0.9
    path = tmp_path / "m.joblib"
    joblib.dump(search.best_estimator_, path)
    np.testing.assert_array_equal(joblib.load(path).predict(X), search.best_estimator_.predict(X))


def test_fit_file_reads_npy_csv_and_libsvm_to_the_in_memory_optimum(tmp_path):
    from sklearn.datasets import dump_svmlight_file

    X, y = load_wine(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    in_memory = SoftmaxRegression(tol=1e-6, device="cpu").fit(X, y)
    want = objective(in_memory, X, y)
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", y)
    names = np.array(["barolo", "grignolino", "barbera"])
    with open(tmp_path / "w.csv", "w") as f:
        for row, label in zip(X, names[y]):
            f.write(",".join(repr(float(v)) for v in row) + f",{label}\n")
    # scikit-learn's own writer for the LIBSVM file.
    dump_svmlight_file(X, y, str(tmp_path / "w.svm"))
    runs = [
        (dict(path=tmp_path / "x.npy", labels=tmp_path / "y.npy"), y, [0, 1, 2]),
        (dict(path=tmp_path / "w.csv"), names[y], sorted(names)),
        (dict(path=tmp_path / "w.svm"), y, [0, 1, 2]),
    ]
    for args, labels, classes in runs:
        model = SoftmaxRegression(tol=1e-6, device="cpu").fit_file(**args)
        assert list(model.classes_) == list(classes), args
        got = objective(model, X, labels)
        assert abs(got - want) <= 1e-6 * want, (args, got, want)
    with pytest.raises(ValueError, match="labels"):
        SoftmaxRegression(device="cpu").fit_file(tmp_path / "x.npy")
