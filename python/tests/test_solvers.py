"""softmax_wgpu.SoftmaxRegression beyond the defaults: L1 and elastic net against scikit-learn's optimum, no
intercept, the minibatch solvers, partial_fit, standardize, fit_file's weights and warm start, validate, and the
proof that a float32 array or CSR matrix is trained on in place."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import sklearn
from sklearn.datasets import load_breast_cancer, load_iris, load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

import softmax_wgpu
from softmax_wgpu import SoftmaxRegression

GPU = len(softmax_wgpu.devices()) > 0
DEVICES = ["cpu", pytest.param("gpu", marks=pytest.mark.skipif(not GPU, reason="no adapter"))]


def objective(model, X, y, C=1.0, l1_ratio=0.0):
    """scikit-learn's objective divided by C·N, in its own parameterisation (one vector for two classes):
    mean cross-entropy + ((1 − ρ)/2·‖coef‖² + ρ·‖coef‖₁)/(C·N)."""
    p = model.predict_proba(X)
    index = np.searchsorted(model.classes_, y)
    ce = -np.log(p[np.arange(len(y)), index])
    coef = model.coef_
    penalty = (1 - l1_ratio) / 2 * (coef**2).sum() + l1_ratio * np.abs(coef).sum()
    return ce.mean() + penalty / (C * len(y))


def scaled(load):
    X, y = load(return_X_y=True)
    return StandardScaler().fit_transform(X), y


@pytest.mark.parametrize("device", DEVICES)
def saga(rho, C):
    """scikit-learn's LogisticRegression with the L1 share ``rho`` by SAGA to its optimum, in the interface of the
    installed version (``penalty`` is deprecated from 1.8, where ``l1_ratio`` alone says the mix)."""
    tight = dict(C=C, solver="saga", tol=1e-12, max_iter=200_000)
    if tuple(int(v) for v in sklearn.__version__.split(".")[:2]) >= (1, 8):
        return LogisticRegression(l1_ratio=rho, **tight)
    return LogisticRegression(penalty="l1" if rho == 1 else "elasticnet", l1_ratio=rho, **tight)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "load,penalty,l1_ratio,C",
    [
        (load_iris, "l1", 0.0, 0.5),
        (load_wine, "auto", 1.0, 0.2),
        (load_breast_cancer, "l1", 0.0, 0.5),
        (load_wine, "elasticnet", 0.5, 0.3),
        (load_breast_cancer, "auto", 0.3, 1.0),
    ],
    ids=lambda v: getattr(v, "__name__", str(v)),
)
def test_l1_and_elastic_net_reach_scikit_learns_optimum(device, load, penalty, l1_ratio, C):
    X, y = scaled(load)
    ours = SoftmaxRegression(penalty=penalty, l1_ratio=l1_ratio, C=C, tol=1e-7, max_iter=5000, device=device)
    ours.fit(X, y)
    rho = 1.0 if penalty == "l1" else l1_ratio
    theirs = saga(rho, C).fit(X, y)
    j_ours, j_theirs = objective(ours, X, y, C, rho), objective(theirs, X, y, C, rho)
    # The same convex objective: ours by OWL-QN in f32 to ‖◇J‖∞ ≤ 1e-7, scikit-learn's SAGA in f64 to 1e-12. J is
    # flat at the optimum, so 1e-6 relative is what f32 sums of the losses allow, as for L2 (measured: 6e-13 to
    # 5e-11 on the CPU path and lavapipe, with the same zero weights as SAGA's).
    assert abs(j_ours - j_theirs) <= 1e-6 * j_theirs, (j_ours, j_theirs)
    # The weights that are 0: exactly 0 in ours (OWL-QN's projection), the same set as scikit-learn's but for
    # weights at the edge (|∂f/∂w| within 1e-3 of λ₁ at the optimum, where a tolerance decides).
    zeros_ours, zeros_theirs = ours.coef_ == 0, np.abs(theirs.coef_) < 1e-8
    assert zeros_ours.any()
    assert (zeros_ours != zeros_theirs).sum() <= max(1, zeros_theirs.size // 50), (zeros_ours, theirs.coef_)
    assert np.mean(ours.predict(X) == theirs.predict(X)) >= 0.99


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("load", [load_iris, load_breast_cancer], ids=lambda f: f.__name__)
def test_no_intercept_reaches_scikit_learns_optimum(device, load):
    X, y = scaled(load)
    X = X + 0.5  # an offset that an intercept would absorb
    ours = SoftmaxRegression(fit_intercept=False, tol=1e-7, device=device).fit(X, y)
    theirs = LogisticRegression(fit_intercept=False, tol=1e-10, max_iter=10_000).fit(X, y)
    assert np.all(ours.intercept_ == 0)
    j_ours, j_theirs = objective(ours, X, y), objective(theirs, X, y)
    assert abs(j_ours - j_theirs) <= 1e-6 * j_theirs, (j_ours, j_theirs)


@pytest.mark.parametrize("solver", ["sgd", "momentum", "nesterov", "adam", "adamw"])
def test_minibatch_solvers_approach_the_optimum_and_repeat_with_their_seed(solver):
    X, y = scaled(load_wine)
    best = objective(LogisticRegression(tol=1e-10, max_iter=10_000).fit(X, y), X, y)
    make = lambda seed: SoftmaxRegression(  # noqa: E731
        solver=solver, batch_size=16, learning_rate=0.05 if solver in ("sgd", "momentum") else 0.01,
        max_iter=200, tol=1e-6, random_state=seed, device="cpu",
    )
    one = make(3).fit(X, y)
    # A minibatch solver with a constant step ends in a neighbourhood of the optimum whose size scales with the
    # step; 200 epochs of 12 steps at these rates end within 5 % (measured 0.1–2 %). The L2 penalty is applied to
    # each step's gradient, so the objective is the same one.
    assert objective(one, X, y) <= 1.05 * best, (objective(one, X, y), best)
    assert one.score(X, y) >= 0.98
    assert 1 <= one.n_iter_[0] <= 200
    np.testing.assert_array_equal(make(3).fit(X, y).coef_, one.coef_)
    assert not np.array_equal(make(4).fit(X, y).coef_, one.coef_)


def test_minibatch_l1_gives_exact_zeros():
    X, y = scaled(load_wine)
    model = SoftmaxRegression(solver="sgd", penalty="l1", C=0.05, batch_size=16, max_iter=100, device="cpu")
    model.fit(X, y)
    assert (model.coef_ == 0).any() and model.score(X, y) >= 0.9


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # 5 epochs on purpose
@pytest.mark.parametrize("load", [load_iris, load_breast_cancer], ids=lambda f: f.__name__)
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_partial_fit_epochs_are_fits_epochs(solver, load):
    X, y = scaled(load)
    X = X.astype(np.float32)
    classes = np.unique(y)
    # tol 0 with patience 5 cannot stop 5 epochs early: fit runs exactly 5 epochs, as do 5 calls of partial_fit,
    # each one epoch shuffled by its own number, with the solver's state (Adam's moments, its step count) carried.
    fit = SoftmaxRegression(solver=solver, max_iter=5, tol=0.0, random_state=7, device="cpu").fit(X, y)
    assert fit.n_iter_[0] == 5
    partial = SoftmaxRegression(solver=solver, random_state=7, device="cpu")
    # Two classes too: between calls the softmax's own two vectors are kept, not only coef_'s difference.
    for _ in range(5):
        partial.partial_fit(X, y, classes=classes)
    np.testing.assert_array_equal(partial.coef_, fit.coef_)
    np.testing.assert_array_equal(partial.intercept_, fit.intercept_)
    # The state crosses pickling.
    import pickle

    copy = pickle.loads(pickle.dumps(partial))
    partial.partial_fit(X, y)
    copy.partial_fit(X, y)
    np.testing.assert_array_equal(partial.coef_, copy.coef_)


def test_partial_fit_refuses_what_it_cannot_do():
    X, y = scaled(load_iris)
    with pytest.raises(ValueError, match="classes must be passed"):
        SoftmaxRegression().partial_fit(X, y)
    model = SoftmaxRegression().partial_fit(X[y < 2], y[y < 2], classes=[0, 1, 2])
    assert list(model.classes_) == [0, 1, 2] and model.coef_.shape == (3, 4)
    with pytest.raises(ValueError, match="labels not in classes"):
        model.partial_fit(X, np.where(y == 2, 5, y))
    with pytest.raises(ValueError, match="partial_fit"):
        SoftmaxRegression(solver="lbfgs").partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="fit_intercept"):
        SoftmaxRegression(fit_intercept=False, solver="adam").fit(X, y)


def test_no_penalty_by_penalty_none_or_infinite_C():
    X, y = scaled(load_iris)
    a = SoftmaxRegression(penalty=None, max_iter=30, device="cpu").fit(X, y)
    b = SoftmaxRegression(C=np.inf, max_iter=30, device="cpu").fit(X, y)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    # Without a penalty the weights of separable classes (setosa) grow past what C = 1 allows.
    assert np.abs(a.coef_).max() > 2 * np.abs(SoftmaxRegression(device="cpu").fit(X, y).coef_).max()


def test_standardize_is_a_scaled_fit_folded_back():
    X, y = load_wine(return_X_y=True)
    ours = SoftmaxRegression(standardize=True, tol=1e-7, device="cpu").fit(X, y)
    scaler = StandardScaler().fit(X)
    plain = SoftmaxRegression(tol=1e-7, device="cpu").fit(scaler.transform(X), y)
    # The folded model on raw features predicts what the scaled one does on scaled features.
    np.testing.assert_allclose(
        ours.decision_function(X), plain.decision_function(scaler.transform(X)), rtol=1e-4, atol=1e-4
    )
    np.testing.assert_array_equal(ours.predict(X), plain.predict(scaler.transform(X)))


def test_fit_file_takes_sample_and_class_weights_and_warm_starts(tmp_path):
    X, y = scaled(load_wine)
    X = X.astype(np.float32)
    w = np.linspace(0.2, 3.0, len(y)).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", y.astype(np.int64))
    np.save(tmp_path / "w.npy", w)
    model = SoftmaxRegression(tol=1e-7, device="cpu")
    from_file = model.fit_file(tmp_path / "x.npy", labels=tmp_path / "y.npy", sample_weight=tmp_path / "w.npy")
    in_memory = SoftmaxRegression(tol=1e-7, device="cpu").fit(X, y, sample_weight=w)
    # The same rows, weights and objective, by the same trainer: the same optimum to f32's resolution.
    np.testing.assert_allclose(from_file.coef_, in_memory.coef_, rtol=1e-4, atol=1e-5)
    balanced = SoftmaxRegression(tol=1e-7, class_weight="balanced", device="cpu")
    balanced.fit_file(tmp_path / "x.npy", labels=tmp_path / "y.npy")
    expected = SoftmaxRegression(tol=1e-7, class_weight="balanced", device="cpu").fit(X, y)
    np.testing.assert_allclose(balanced.coef_, expected.coef_, rtol=1e-4, atol=1e-5)
    named = SoftmaxRegression(tol=1e-7, class_weight={0: 2.0, 2: 0.5}, device="cpu")
    named.fit_file(tmp_path / "x.npy", labels=tmp_path / "y.npy")
    expected = SoftmaxRegression(tol=1e-7, class_weight={0: 2.0, 2: 0.5}, device="cpu").fit(X, y)
    np.testing.assert_allclose(named.coef_, expected.coef_, rtol=1e-4, atol=1e-5)
    # A warm start from the optimum of the same file stops at once.
    warm = SoftmaxRegression(tol=1e-4, warm_start=True, device="cpu")
    warm.fit_file(tmp_path / "x.npy", labels=tmp_path / "y.npy")
    first = warm.n_iter_[0]
    warm.fit_file(tmp_path / "x.npy", labels=tmp_path / "y.npy")
    assert first > 5 and warm.n_iter_[0] <= 1, (first, warm.n_iter_)
    with pytest.raises(ValueError, match="w_short.npy: holds 10 sample weights for the 178 rows"):
        np.save(tmp_path / "w_short.npy", w[:10])
        model.fit_file(tmp_path / "x.npy", labels=tmp_path / "y.npy", sample_weight=tmp_path / "w_short.npy")


@pytest.mark.skipif(not GPU, reason="no adapter")
def test_validate_returns_the_command_lines_report():
    report = softmax_wgpu.validate(device="gpu", steps=20)
    assert report["pass"] is True
    (adapter,) = report["adapters"]
    assert adapter["pass"] is True and adapter["kernels"] and adapter["lbfgs"]["pass"]
    with pytest.raises(ValueError):
        softmax_wgpu.validate(device="no such adapter")


NO_COPY = textwrap.dedent(
    """
    import sys
    import numpy as np
    from softmax_wgpu import SoftmaxRegression
    def peak():
        # This process's peak resident memory, in bytes: VmHWM, not ru_maxrss, which after exec starts from the
        # parent's peak (Linux keeps it across execve), so that a fit's growth would hide under pytest's own peak.
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    dtype = np.dtype(sys.argv[1])
    # Filled a block at a time, so that making X leaves no peak above what the process holds.
    X = np.empty((200_000, 250), dtype=dtype)
    rng = np.random.default_rng(0)
    for i in range(0, len(X), 10_000):
        X[i : i + 10_000] = rng.standard_normal((10_000, 250), dtype=np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    before = peak()
    model = SoftmaxRegression(max_iter=3, device="cpu").fit(X, y)
    print(peak() - before, model.input_copied_)
    """
)


def test_a_float32_array_is_trained_on_in_place():
    """The peak memory of a fit on 200 MB of float32 grows by far less than the array (a copy would add 200 MB);
    float64 input is converted once, and the same measurement sees that copy."""

    def grown(dtype):
        out = subprocess.run([sys.executable, "-c", NO_COPY, dtype], capture_output=True, text=True, check=True)
        grew, copied = out.stdout.split()
        return int(grew), copied == "True"

    grew, copied = grown("float32")
    # The CPU path's working memory is a block of rows' logits and the gradient (measured: 3.2 MB; float64: 203 MB).
    assert not copied and grew < 50e6, grew
    grew, copied = grown("float64")
    # The converted copy: 203 MB measured. (Read through ru_maxrss, which starts from pytest's own peak, it once
    # showed 99 MB in CI; VmHWM is this process's alone.) Half of the copy tells it from none (float32: 3.2 MB).
    assert copied and grew > 100e6, grew


SPARSE_NO_COPY = textwrap.dedent(
    """
    import sys
    import numpy as np
    import scipy.sparse as sp
    from softmax_wgpu import SoftmaxRegression
    def peak():
        # This process's peak resident memory, in bytes: VmHWM, not ru_maxrss, which after exec starts from the
        # parent's peak (Linux keeps it across execve), so that a fit's growth would hide under pytest's own peak.
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    dtype = np.dtype(sys.argv[1])
    # 200,000 rows of 125 non-zeros (25 M: 100 MB of float32 values and 100 MB of int32 column indices, ascending in
    # each row), filled a block at a time so that making X leaves no peak above what the process holds.
    n, d, per = 200_000, 10_000, 125
    data = np.empty(n * per, dtype=dtype)
    indices = np.empty(n * per, dtype=np.int32)
    rng = np.random.default_rng(0)
    for i in range(0, n, 10_000):
        at = slice(i * per, (i + 10_000) * per)
        data[at] = rng.standard_normal(10_000 * per, dtype=np.float32)
        step = np.arange(per, dtype=np.int32) * (d // per)
        indices[at] = (step + rng.integers(0, d // per, (10_000, per), dtype=np.int32)).ravel()
    X = sp.csr_matrix((data, indices, np.arange(0, n * per + 1, per, dtype=np.int32)), shape=(n, d))
    y = (data[::per] > 0).astype(np.int64)
    before = peak()
    model = SoftmaxRegression(max_iter=3, device="cpu").fit(X, y)
    print(peak() - before, model.input_copied_)
    """
)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # 3 iterations on purpose
def test_a_float32_csr_matrix_is_trained_on_in_place():
    """The peak memory of a fit on a canonical CSR matrix (200 MB of float32 values and int32 indices) grows by far
    less than the matrix; a float64 one has only its values converted (100 MB), its indices still lent."""

    def grown(dtype):
        out = subprocess.run(
            [sys.executable, "-W", "ignore", "-c", SPARSE_NO_COPY, dtype], capture_output=True, text=True, check=True
        )
        grew, copied = out.stdout.split()
        return int(grew), copied == "True"

    grew, copied = grown("float32")
    # The CPU sparse path's working memory is the rows' logits and the gradient: measured 9.1 MB. Before the matrix
    # was lent it grew by 713 MB: a canonical copy, its indices widened, and two copies on the native side.
    assert not copied and grew < 50e6, grew
    grew, copied = grown("float64")
    # The float32 values: 100 MB (measured 109 MB); a copy of the indices as well would add another 100 MB.
    assert copied and 50e6 < grew < 190e6, grew


def test_a_sparse_matrix_the_library_cannot_read_in_place_is_copied_not_changed():
    """Unsorted column indices, duplicate entries, int64 indices and CSC are made canonical in a copy: the caller's
    matrix is left as it was, and the fit equals the one on the canonical matrix."""
    import scipy.sparse as sp

    X, y = load_iris(return_X_y=True)
    canonical = sp.csr_matrix(X.astype(np.float32))
    reference = SoftmaxRegression(device="cpu").fit(canonical, y)
    assert not reference.input_copied_
    # Each row's entries reversed, and the first entry split into two halves that add up to it.
    rows = [canonical.getrow(i) for i in range(canonical.shape[0])]
    indptr, indices, data = [0], [], []
    for r in rows:
        idx, val = r.indices[::-1].tolist(), r.data[::-1].tolist()
        idx, val = [idx[0]] + idx, [val[0] / 2, val[0] / 2] + val[1:]
        indices += idx
        data += val
        indptr.append(len(indices))
    messy = sp.csr_matrix((np.array(data, np.float32), np.array(indices, np.int32), np.array(indptr)), shape=X.shape)
    assert not messy.has_canonical_format
    before = (messy.indices.copy(), messy.data.copy())
    wide = canonical.copy()
    wide.indices = wide.indices.astype(np.int64)
    wide.indptr = wide.indptr.astype(np.int64)
    for matrix in [messy, wide, canonical.tocsc(), sp.csr_array(canonical).astype(np.float64)]:
        model = SoftmaxRegression(device="cpu").fit(matrix, y)
        assert model.input_copied_
        np.testing.assert_array_equal(model.coef_, reference.coef_)
        np.testing.assert_array_equal(model.intercept_, reference.intercept_)
    np.testing.assert_array_equal(messy.indices, before[0])
    np.testing.assert_array_equal(messy.data, before[1])


def test_the_readmes_example_runs():
    """README.md's Python example, run as it is written."""
    import pathlib

    readme = (pathlib.Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = readme.index("```python\nfrom sklearn.datasets import load_digits")
    code = readme[start + len("```python\n") : readme.index("```\n", start + 10)]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert float(out[0]) >= 0.95 and "softmaxregression__C" in out[1], out


def test_a_run_that_reaches_max_iter_warns_as_scikit_learn_does():
    from sklearn.exceptions import ConvergenceWarning

    X, y = load_wine(return_X_y=True)
    with pytest.warns(ConvergenceWarning, match="max_iter=3"):
        SoftmaxRegression(max_iter=3, device="cpu").fit(X, y)
    with pytest.warns(ConvergenceWarning, match="epochs"):
        SoftmaxRegression(solver="sgd", max_iter=2, tol=0.0, device="cpu").fit(scaled(load_wine)[0], y)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        SoftmaxRegression(device="cpu").fit(*scaled(load_wine))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # 5 epochs on purpose
def test_fit_file_runs_every_solver_and_penalty_as_fit_does(tmp_path):
    X, y = scaled(load_wine)
    X = X.astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", y.astype(np.int64))
    # The same rows held in the same order, the same seed: the same run as fit, bit for bit.
    for params in [dict(solver="adam", max_iter=5, random_state=1), dict(penalty="l1", C=0.3)]:
        a = SoftmaxRegression(device="cpu", **params).fit(X, y)
        b = SoftmaxRegression(device="cpu", **params).fit_file(tmp_path / "x.npy", labels=tmp_path / "y.npy")
        np.testing.assert_array_equal(a.coef_, b.coef_)
        np.testing.assert_array_equal(a.intercept_, b.intercept_)
