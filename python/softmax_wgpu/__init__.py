"""softmax-wgpu from Python: softmax (multinomial logistic) regression trained by the library's own trainer — on the
CPU path or on any GPU wgpu finds — as a scikit-learn classifier.

>>> from softmax_wgpu import SoftmaxRegression
>>> model = SoftmaxRegression().fit(X, y)          # scikit-learn's LogisticRegression() objective
>>> model.predict(X), model.predict_proba(X), model.score(X, y)
"""

import json
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils import check_random_state
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import _native

__all__ = ["SoftmaxRegression", "devices", "validate"]


def devices():
    """The GPU adapters wgpu finds, as the command line's ``devices`` lists them: a list of dicts with index, name,
    backend and device type ("Cpu" for a software adapter such as lavapipe). ``device=`` takes an index or a
    name."""
    return [
        {"index": i, "name": name, "backend": backend, "device_type": kind}
        for i, name, backend, kind in _native.adapters()
    ]


SOLVERS = ("auto", "lbfgs", "sgd", "momentum", "nesterov", "adam", "adamw")


class SoftmaxRegression(ClassifierMixin, BaseEstimator):
    """Softmax (multinomial logistic) regression on the CPU path or a GPU, by the library's own trainer.

    With its defaults it minimises scikit-learn's ``LogisticRegression()`` objective by full-batch L-BFGS, for two
    classes too: the mean cross-entropy plus ‖W‖²/(2·C·N) (the intercept is not penalised). With two classes, as
    scikit-learn, it exposes one weight vector, ``coef_`` of shape (1, n_features): the softmax's two vectors are
    w₁ = −w₀ = coef_/2.

    Parameters
    ----------
    C : float, default=1.0
        Inverse strength of the penalty, as scikit-learn's: J = mean CE + penalty/(C·N); ``np.inf``: none.
    penalty : {"auto", "l2", "l1", "elasticnet", None}, default="auto"
        "auto" (scikit-learn ≥ 1.8's rule, where ``penalty`` is deprecated): the mix ``l1_ratio`` says, none when C
        is infinite. ``"l2"``: ½‖W‖²; ``"l1"``: ‖W‖₁ (weights become exactly 0); ``"elasticnet"``:
        (1 − l1_ratio)/2·‖W‖² + l1_ratio·‖W‖₁; None: no penalty. L-BFGS minimises an L1 term by OWL-QN (to the
        optimum), a minibatch solver by a proximal step.
    l1_ratio : float in [0, 1], default=0.0
        The L1 share of the penalty: 0 is L2 (the default), 1 is L1, between them the elastic net. Read with
        ``penalty`` "auto" or "elasticnet".
    tol : float, default=1e-4
        L-BFGS: stop when the largest (pseudo-)gradient component is at most ``tol`` (scikit-learn's ``tol``, SciPy's
        ``gtol``). Minibatch solvers: stop when the training objective has not fallen by more than ``tol`` for 5
        epochs (SGDClassifier's rule).
    max_iter : int, default=100
        Most L-BFGS iterations, or most epochs of a minibatch solver.
    fit_intercept : bool, default=True
        Fit the intercepts; False keeps them at 0 (L-BFGS only).
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes' losses, as scikit-learn's.
    random_state : None, int or RandomState, default=None
        Seeds the minibatch solvers' shuffles. L-BFGS starts from zero weights and is deterministic.
    solver : {"auto", "lbfgs", "sgd", "momentum", "nesterov", "adam", "adamw"}, default="auto"
        "auto" is full-batch L-BFGS for ``fit`` and SGD for ``partial_fit``. The others are the command line's
        minibatch optimizers (momentum and Nesterov with μ = 0.9; Adam β = (0.9, 0.999); AdamW decay 0.01).
    batch_size : int, default=64
        Rows per step of a minibatch solver.
    learning_rate : float, default=0.01
        Step size of a minibatch solver.
    standardize : bool, default=False
        Train on features scaled to mean 0 and variance 1 (sparse input: scaled only, to stay sparse), so that the
        penalty weighs every feature alike; ``coef_`` and ``intercept_`` are then folded back to the raw features.
    verbose : int, default=0
        Above 0, one line an iteration or epoch on stderr (objective, gradient norm or learning rate, device).
    warm_start : bool, default=False
        Start the next ``fit`` from the current ``coef_`` and ``intercept_`` (same classes and features).
    device : str, default="auto"
        "auto" (a hardware GPU when there is one, else the CPU path), "cpu", "gpu", or an adapter's index or name
        (see :func:`devices`).

    A C-contiguous float32 array, or a float32 CSR matrix with sorted indices and no duplicates (what SciPy and
    scikit-learn's vectorizers make), is trained on in place, without a copy (``input_copied_`` says whether the
    trainer read a copy); do not write to it from another thread during ``fit``. Training releases the GIL. Ctrl-C raises
    ``KeyboardInterrupt`` at the next iteration or step and leaves the estimator as it was before the call.
    """

    def __init__(
        self,
        C=1.0,
        penalty="auto",
        l1_ratio=0.0,
        tol=1e-4,
        max_iter=100,
        fit_intercept=True,
        class_weight=None,
        random_state=None,
        solver="auto",
        batch_size=64,
        learning_rate=0.01,
        standardize=False,
        verbose=0,
        warm_start=False,
        device="auto",
    ):
        self.C = C
        self.penalty = penalty
        self.l1_ratio = l1_ratio
        self.tol = tol
        self.max_iter = max_iter
        self.fit_intercept = fit_intercept
        self.class_weight = class_weight
        self.random_state = random_state
        self.solver = solver
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.standardize = standardize
        self.verbose = verbose
        self.warm_start = warm_start
        self.device = device

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def _check_params(self):
        if self.penalty not in ("auto", "l2", "l1", "elasticnet", None):
            raise ValueError(f"penalty must be 'auto', 'l2', 'l1', 'elasticnet' or None, got {self.penalty!r}")
        if self.penalty in ("auto", "elasticnet"):
            r = self.l1_ratio
            if not (isinstance(r, (int, float, np.number)) and 0 <= r <= 1):
                raise ValueError(f"l1_ratio must be a number in [0, 1] with penalty={self.penalty!r}, got {r!r}")
        if not (isinstance(self.C, (int, float, np.number)) and self.C > 0 and not np.isnan(self.C)):
            raise ValueError(f"C must be a positive number (np.inf: no penalty), got {self.C!r}")
        if not (isinstance(self.tol, (int, float, np.number)) and self.tol >= 0):
            raise ValueError(f"tol must be a number ≥ 0, got {self.tol!r}")
        if not (isinstance(self.max_iter, (int, np.integer)) and self.max_iter >= 1):
            raise ValueError(f"max_iter must be an integer of at least 1, got {self.max_iter!r}")
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, got {self.solver!r}")
        if not (isinstance(self.batch_size, (int, np.integer)) and self.batch_size >= 1):
            raise ValueError(f"batch_size must be an integer of at least 1, got {self.batch_size!r}")
        lr = self.learning_rate
        if not (isinstance(lr, (int, float, np.number)) and np.isfinite(lr) and lr > 0):
            raise ValueError(f"learning_rate must be a positive, finite number, got {lr!r}")
        if not isinstance(self.device, str):
            raise ValueError(f"device must be a string, got {self.device!r}")

    def _settings(self, k, solver, class_weight=None, init=None, resume=None):
        """The native trainer's settings for ``k`` classes (see python/src/lib.rs, ``Settings``)."""
        if not self.fit_intercept and solver != "lbfgs":
            raise ValueError(f"fit_intercept=False needs solver 'lbfgs' (or 'auto' in fit), got {self.solver!r}")
        # scikit-learn's C·Σ CE + penalty, divided by C·N; the native side divides by N and doubles the L2 part for
        # two classes (its one vector is the softmax's w₁ − w₀ with w₁ = −w₀).
        ratio = {"l2": 0.0, "l1": 1.0, None: None}.get(self.penalty, self.l1_ratio)
        none = ratio is None or np.isinf(self.C)
        l2_c, l1_c = (0.0, 0.0) if none else ((1.0 - ratio) / self.C, ratio / self.C)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        return {
            "k": k,
            "l2_c": l2_c,
            "l1_c": l1_c,
            "fit_intercept": bool(self.fit_intercept),
            "solver": solver,
            "tol": float(self.tol),
            "max_iter": int(self.max_iter),
            "batch_size": int(self.batch_size),
            "learning_rate": float(self.learning_rate),
            "seed": seed,
            "device": self.device,
            "class_weight": class_weight,
            "verbose": bool(self.verbose),
            "init": init,
            "resume": resume,
        }

    def _train(self, X, y_index, settings, sample_weight, given=None):
        """Fits on validated ``X`` (dense or sparse) and class indices; returns the native trainer's results, with
        ``copied``: whether the trainer read anything but ``given`` (the caller's array) in place."""
        y_index = np.ascontiguousarray(y_index, dtype=np.uint32)
        if sample_weight is not None:
            sample_weight = np.ascontiguousarray(sample_weight, dtype=np.float32)
        if sp.issparse(X):
            # The sparse path: CSR with each row's indices ascending and no duplicates, as the library checks. A
            # CSR matrix in that form already is read in place (its float32 values and int32 column indices; a
            # float64 matrix's values are converted, its indices still lent); anything else is made so in a copy.
            if X.shape[1] > np.iinfo(np.uint32).max:
                most = np.iinfo(np.uint32).max
                raise ValueError(f"X has {X.shape[1]} features; the sparse path takes at most {most}")
            canonical = X.format == "csr" and X.has_canonical_format
            if not canonical:
                X = X.tocsr(copy=True)
                X.sum_duplicates()
                X.sort_indices()
            data = np.ascontiguousarray(X.data, dtype=np.float32)
            indices = X.indices
            indices = indices.view(np.uint32) if indices.dtype == np.int32 else indices.astype(np.uint32)
            out = _native.fit_csr(
                X.indptr.astype(np.uint64),
                indices,
                data,
                X.shape[1],
                y_index,
                settings,
                sample_weight,
            )
            same = (
                X is given
                and np.may_share_memory(data, given.data)
                and np.may_share_memory(indices, given.indices)
            )
            out["copied"] = not (out["lent"] and same)
            return out
        # A C-contiguous float32 array passes through as it is and is read in place.
        x = np.ascontiguousarray(X, dtype=np.float32)
        out = _native.fit_dense(x, y_index, settings, sample_weight)
        same = isinstance(given, np.ndarray) and given.ctypes.data == x.ctypes.data and given.dtype == x.dtype
        out["copied"] = not (out["lent"] and same)
        return out

    def _scaling(self, X):
        """The standardisation of ``X`` when asked for: (mean, scale) in float64 (mean 0 for sparse X), else None."""
        if not self.standardize:
            return None
        if sp.issparse(X):
            mean = np.zeros(X.shape[1])
            sq = np.asarray(X.multiply(X).mean(axis=0), dtype=np.float64).ravel()
            m = np.asarray(X.mean(axis=0), dtype=np.float64).ravel()
            scale = np.sqrt(np.maximum(sq - m * m, 0.0))
        else:
            mean = X.mean(axis=0, dtype=np.float64)
            scale = X.std(axis=0, dtype=np.float64)
        scale[scale == 0] = 1.0
        return mean, scale

    def _set_fitted(self, out, classes, scaling=None):
        """Sets the fitted attributes from the native results (only now: a fit that raised leaves the estimator as
        it was)."""
        coef = out["coef"].astype(np.float64)
        intercept = out["intercept"].astype(np.float64)
        if scaling is not None:
            mean, scale = scaling
            coef = coef / scale
            intercept = intercept - coef @ mean
        if len(classes) == 2:
            coef = (coef[1] - coef[0])[np.newaxis, :]
            intercept = np.array([intercept[1] - intercept[0]])
        self.classes_ = classes
        self.coef_ = coef
        self.intercept_ = intercept
        self.n_iter_ = np.array([out["n_iter"]], dtype=np.int32)
        self.objective_ = out["objective"]
        self.device_ = out["device"]
        self.input_copied_ = out.get("copied", True)

    def _warn_unconverged(self, out, solver):
        """scikit-learn's ConvergenceWarning when the run ended at its cap instead of by a convergence rule (not when
        L-BFGS ends because no step lowers J any more: in f32 that is where a tight ``tol`` meets J's precision)."""
        if not out["converged"] and out["n_iter"] >= self.max_iter:
            what = "iterations" if solver == "lbfgs" else "epochs"
            warnings.warn(
                f"{solver} stopped after max_iter={self.max_iter} {what} without converging (tol={self.tol}); "
                "increase max_iter or scale the data",
                ConvergenceWarning,
            )

    def fit(self, X, y, sample_weight=None):
        """Fits the model to ``X`` (n_samples, n_features: an array, or a SciPy CSR/CSC matrix, which trains on the
        sparse path) and the labels ``y``; ``sample_weight`` weighs each row's loss, as scikit-learn's."""
        self._check_params()
        given = X
        X, y = validate_data(
            self, X, y, accept_sparse=["csr", "csc"], dtype=[np.float32, np.float64], order="C"
        )
        check_classification_targets(y)
        classes, y_index = np.unique(y, return_inverse=True)
        k = len(classes)
        if k < 2:
            raise ValueError(
                f"This solver needs samples of at least 2 classes in the data, but the data contains only one "
                f"class: {classes[0]!r}"
            )
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X)
        class_weight = None
        if self.class_weight is not None:
            class_weight = [
                float(w) for w in compute_class_weight(self.class_weight, classes=classes, y=y)
            ]
        scaling = self._scaling(X)
        init = self._warm_weights(X.shape[1], classes) if self.warm_start else None
        if scaling is not None:
            mean, scale = scaling
            X = X.multiply(1.0 / scale).tocsr() if sp.issparse(X) else (X - mean) / scale
            if init is not None:
                init = _unfold(init, mean, scale)
        solver = "lbfgs" if self.solver == "auto" else self.solver
        settings = self._settings(k, solver, class_weight, init)
        out = self._train(X, y_index, settings, sample_weight, given)
        self._set_fitted(out, classes, scaling)
        self.__dict__.pop("_partial", None)
        self._warn_unconverged(out, solver)
        return self

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch of a minibatch solver (``solver="auto"``: SGD) over ``X`` and ``y``, continuing from the
        current weights and the solver's state (momentum, Adam's moments, the step count): for data that arrives in
        pieces (after ``fit``: from its model). ``classes`` (every class there will be) is needed on the first call
        to an unfitted estimator. Each call's penalty is over
        its own rows (λ = 1/(C·n)); to approach the objective of all N rows, set C to C·N/n. Not with
        ``standardize``, ``fit_intercept=False`` or ``class_weight="balanced"``."""
        self._check_params()
        given = X
        # After fit, partial_fit continues from its model with a fresh solver state, as SGDClassifier's does.
        first = not hasattr(self, "classes_")
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if self.standardize:
            raise ValueError("partial_fit does not standardize (each piece's statistics differ); scale X first")
        if isinstance(self.class_weight, str):
            raise ValueError(f"class_weight={self.class_weight!r} is not supported by partial_fit; give a dict")
        solver = "sgd" if self.solver == "auto" else self.solver
        X, y = validate_data(
            self, X, y, accept_sparse=["csr", "csc"], dtype=[np.float32, np.float64], order="C", reset=first
        )
        check_classification_targets(y)
        if first:
            all_classes = np.unique(classes)
            if len(all_classes) < 2:
                raise ValueError(f"classes must hold at least 2 classes, got {classes!r}")
        else:
            all_classes = self.classes_
            if classes is not None and not np.array_equal(np.unique(classes), all_classes):
                raise ValueError(f"classes={classes!r} is not the same as on the first call: {all_classes!r}")
        y_index = np.searchsorted(all_classes, y)
        found = all_classes[np.minimum(y_index, len(all_classes) - 1)] == y
        if not found.all():
            raise ValueError(f"y holds labels not in classes: {np.unique(np.asarray(y)[~found])!r}")
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X)
        class_weight = None
        if self.class_weight is not None:
            class_weight = [float(self.class_weight.get(c, 1.0)) for c in all_classes]
        epochs, state, kept = self.__dict__.get("_partial", (0, (0, []), None))
        init = None if first else self._warm_weights(X.shape[1], all_classes)
        if kept is not None and np.array_equal(kept[1], self.coef_) and np.array_equal(kept[2], self.intercept_):
            # The softmax's own weights of the last call, while coef_ and intercept_ are still what it exposed: with
            # two classes coef_ keeps only their difference, and w₀ = −w₁ holds only up to rounding.
            init = kept[0]
        settings = self._settings(len(all_classes), solver, class_weight, init, (epochs, state))
        out = self._train(X, y_index, settings, sample_weight, given)
        self._set_fitted(out, all_classes)
        weights = ([float(v) for v in out["coef"].ravel()], [float(v) for v in out["intercept"]])
        self._partial = (epochs + 1, out["state"], (weights, self.coef_.copy(), self.intercept_.copy()))
        return self

    def fit_file(self, path, labels=None, label_column=-1, zero_based="auto", sample_weight=None):
        """Fits on a file read by the library's own readers, for data larger than memory: NPY or IDX features with
        ``labels`` (a second file of class indices), LIBSVM (sparse, kept sparse), or CSV with its labels in
        ``label_column`` (negative: from the end). A LIBSVM file's indices are 0-based or 1-based as ``zero_based``
        says; "auto" (as scikit-learn's ``load_svmlight_file``) takes them as 1-based unless an index is 0. Rows
        that fit the memory are held; larger ones are streamed from the file for every evaluation of the objective
        (or epoch), never whole in memory. The objective is ``fit``'s over the file's N rows. ``sample_weight`` is
        a file of one weight a row (NPY, or text with one number a line), ``class_weight`` a dict keyed by the
        file's class names or "balanced" (counted from the file), and ``warm_start`` starts from the current model
        when the file has its classes and features. Not with ``standardize``. Class names are the file's (integers
        where they all are)."""
        self._check_params()
        if self.standardize:
            raise ValueError("fit_file does not standardize; standardize the file, or use the command line's train")
        class_weight = None
        if isinstance(self.class_weight, str):
            class_weight = self.class_weight
        elif self.class_weight is not None:
            class_weight = ",".join(f"{c}={float(w)}" for c, w in self.class_weight.items())
        init, init_classes = None, None
        if self.warm_start and hasattr(self, "coef_") and hasattr(self, "classes_"):
            init = self._warm_weights(self.coef_.shape[1], self.classes_)
            init_classes = [str(c) for c in self.classes_]
        solver = "lbfgs" if self.solver == "auto" else self.solver
        out = _native.fit_file(
            str(path),
            None if labels is None else str(labels),
            int(label_column),
            None if zero_based == "auto" else bool(zero_based),
            self._settings(0, solver, init=init),
            None if sample_weight is None else str(sample_weight),
            class_weight,
            init_classes,
        )
        self._set_fitted(out, _class_array(out["classes"]))
        self.n_features_in_ = self.coef_.shape[1]
        self.__dict__.pop("feature_names_in_", None)
        self.__dict__.pop("_partial", None)
        self._warn_unconverged(out, solver)
        return self

    def _warm_weights(self, features, classes):
        """The current weights in the softmax's form (W [K, D] row-major, b), when they are those of a fitted model
        of the same features and classes."""
        fitted = hasattr(self, "coef_") and hasattr(self, "classes_")
        if (
            not fitted
            or self.coef_.shape[1] != features
            or not np.array_equal(self.classes_, classes)
        ):
            return None
        coef, intercept = self.coef_, self.intercept_
        if coef.shape[0] == 1:
            coef = np.vstack([-coef / 2, coef / 2])
            intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
        return (
            [float(v) for v in np.asarray(coef, dtype=np.float32).ravel()],
            [float(v) for v in np.asarray(intercept, dtype=np.float32)],
        )

    def decision_function(self, X):
        """The logits: (n_samples, n_classes), or (n_samples,) for two classes (the second class's score)."""
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse=["csr", "csc"], dtype=[np.float64, np.float32], reset=False)
        scores = np.asarray(X @ self.coef_.T) + self.intercept_
        return scores.ravel() if scores.shape[1] == 1 else scores

    def predict_proba(self, X):
        """Class probabilities, (n_samples, n_classes), columns in the order of ``classes_``."""
        scores = self.decision_function(X)
        if scores.ndim == 1:
            scores = np.column_stack([-scores / 2, scores / 2])
        scores = scores - scores.max(axis=1, keepdims=True)
        e = np.exp(scores)
        return e / e.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X):
        """The log of :meth:`predict_proba`, computed stably."""
        scores = self.decision_function(X)
        if scores.ndim == 1:
            scores = np.column_stack([-scores / 2, scores / 2])
        scores = scores - scores.max(axis=1, keepdims=True)
        return scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))

    def predict(self, X):
        """The most probable class of each row."""
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(int)]
        return self.classes_[np.argmax(scores, axis=1)]

    def save(self, path):
        """Writes the model as the command line's model file (safetensors: ``weight`` [K, D], ``bias`` [K], the
        class names), so that ``softmax-wgpu predict --model path`` predicts what :meth:`predict` does."""
        check_is_fitted(self)
        coef, intercept = self.coef_, self.intercept_
        if len(self.classes_) == 2:
            # The softmax's two vectors: w₁ = −w₀ = coef_/2.
            coef = np.vstack([-coef / 2, coef / 2])
            intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
        settings = {"from": "softmax_wgpu.SoftmaxRegression", "params": self.get_params()}
        _native.save_model(
            str(path),
            np.ascontiguousarray(coef, dtype=np.float32),
            np.ascontiguousarray(intercept, dtype=np.float32),
            [str(c) for c in self.classes_],
            json.dumps(settings, default=str),
        )

    @classmethod
    def load(cls, path):
        """A fitted estimator from a model file (the command line's or :meth:`save`'s). A model trained with
        standardised features has the standardisation folded into ``coef_`` and ``intercept_`` (W/σ and
        b − Σ μ·W/σ), so that it predicts on raw features as ``softmax-wgpu predict`` does. Class names that are all
        integers (or all numbers) come back as such."""
        weight, bias, classes, standardizer = _native.load_model(str(path))
        coef = weight.astype(np.float64)
        intercept = bias.astype(np.float64)
        if standardizer is not None:
            mean, std = (np.asarray(v, dtype=np.float64) for v in standardizer)
            coef = coef / std
            intercept = intercept - coef @ mean
        model = cls()
        model.classes_ = _class_array(classes)
        if len(classes) == 2:
            coef = (coef[1] - coef[0])[np.newaxis, :]
            intercept = np.array([intercept[1] - intercept[0]])
        model.coef_ = coef
        model.intercept_ = intercept
        model.n_features_in_ = coef.shape[1]
        return model


def _unfold(init, mean, scale):
    """Weights on raw features (W [K, D] row-major, b, as lists) as weights on standardised ones: W·σ, b + W·μ."""
    w = np.asarray(init[0], dtype=np.float64).reshape(len(init[1]), -1)
    b = np.asarray(init[1], dtype=np.float64) + w @ mean
    w = w * scale
    return [float(v) for v in w.astype(np.float32).ravel()], [float(v) for v in b.astype(np.float32)]


def validate(device="gpu", seed=1, steps=200):
    """Runs the command line's ``validate`` on one adapter ("gpu": the best one, software adapters included; or an
    index or name, see :func:`devices`): every kernel against its CPU mirror, finite differences, a training
    trajectory against the CPU path and L-BFGS against an f64 reference. Returns the report as ``validate --json``
    writes it, as a dict: ``pass`` and ``adapters`` (a list of one report). Releases the GIL."""
    return json.loads(_native.validate(str(device), int(seed), int(steps)))


def _class_array(names):
    """Class names as integers, or floats, where every one is such a number; else as strings."""
    for kind in (int, float):
        try:
            return np.array([kind(n) for n in names])
        except ValueError:
            pass
    return np.array(names)
