"""softmax-wgpu from Python: softmax (multinomial logistic) regression trained by the library's own trainer — on the
CPU path or on any GPU wgpu finds — as a scikit-learn classifier.

>>> from softmax_wgpu import SoftmaxRegression
>>> model = SoftmaxRegression().fit(X, y)          # scikit-learn's LogisticRegression() objective
>>> model.predict(X), model.predict_proba(X), model.score(X, y)
"""

import json

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import _native

__all__ = ["SoftmaxRegression", "devices"]


def devices():
    """The GPU adapters wgpu finds, as the command line's ``devices`` lists them: a list of dicts with index, name,
    backend and device type ("Cpu" for a software adapter such as lavapipe). ``device=`` takes an index or a
    name."""
    return [
        {"index": i, "name": name, "backend": backend, "device_type": kind}
        for i, name, backend, kind in _native.adapters()
    ]


class SoftmaxRegression(ClassifierMixin, BaseEstimator):
    """Softmax regression fitted by full-batch L-BFGS, on the CPU path or a GPU.

    With its defaults it minimises scikit-learn's ``LogisticRegression()`` objective, for two classes too: the mean
    cross-entropy plus ‖W‖²/(2·C·N) (the intercept is not penalised). With two classes, as scikit-learn, it exposes
    one weight vector, ``coef_`` of shape (1, n_features): the softmax's two vectors are w₁ = −w₀ = coef_/2.

    Parameters
    ----------
    C : float, default=1.0
        Inverse strength of the L2 penalty, as scikit-learn's.
    penalty : {"l2", None}, default="l2"
        The penalty on the weights.
    tol : float, default=1e-4
        Stop when the largest gradient component is at most ``tol`` (scikit-learn's ``tol``, SciPy's ``gtol``).
    max_iter : int, default=100
        Most L-BFGS iterations.
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes' losses, as scikit-learn's.
    random_state : None, int or RandomState, default=None
        Accepted as scikit-learn's LogisticRegression accepts it with L-BFGS: the fit starts from zero weights and
        is deterministic.
    verbose : int, default=0
        Above 0, one line an L-BFGS iteration on stderr (objective, gradient norm, step, device).
    warm_start : bool, default=False
        Start the next ``fit`` from the current ``coef_`` and ``intercept_`` (same classes and features).
    device : str, default="auto"
        "auto" (a hardware GPU when there is one, else the CPU path), "cpu", "gpu", or an adapter's index or name
        (see :func:`devices`).

    Training releases the GIL. Ctrl-C raises ``KeyboardInterrupt`` at the next iteration and leaves the estimator
    as it was before ``fit``.
    """

    def __init__(
        self,
        C=1.0,
        penalty="l2",
        tol=1e-4,
        max_iter=100,
        class_weight=None,
        random_state=None,
        verbose=0,
        warm_start=False,
        device="auto",
    ):
        self.C = C
        self.penalty = penalty
        self.tol = tol
        self.max_iter = max_iter
        self.class_weight = class_weight
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start
        self.device = device

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def _check_params(self):
        if self.penalty not in ("l2", None):
            raise ValueError(f"penalty must be 'l2' or None, got {self.penalty!r}")
        if not (isinstance(self.C, (int, float, np.number)) and np.isfinite(self.C) and self.C > 0):
            raise ValueError(f"C must be a positive, finite number, got {self.C!r}")
        if not (isinstance(self.tol, (int, float, np.number)) and self.tol > 0):
            raise ValueError(f"tol must be positive, got {self.tol!r}")
        if not (isinstance(self.max_iter, (int, np.integer)) and self.max_iter >= 1):
            raise ValueError(f"max_iter must be an integer of at least 1, got {self.max_iter!r}")
        if not isinstance(self.device, str):
            raise ValueError(f"device must be a string, got {self.device!r}")

    def fit(self, X, y, sample_weight=None):
        """Fits the model to ``X`` (n_samples, n_features: an array, or a SciPy CSR/CSC matrix, which trains on the
        sparse path) and the labels ``y``; ``sample_weight`` weighs each row's loss, as scikit-learn's."""
        self._check_params()
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
        n = X.shape[0]
        weights = None
        if sample_weight is not None:
            weights = np.ascontiguousarray(_check_sample_weight(sample_weight, X), dtype=np.float32)
        class_weight = None
        if self.class_weight is not None:
            class_weight = [
                float(w) for w in compute_class_weight(self.class_weight, classes=classes, y=y)
            ]
        # scikit-learn's C·Σ CE + ½‖W‖², divided by C·N: λ = 1/(C·N); with two classes its one vector is the
        # softmax's w₁ − w₀ with w₁ = −w₀, so λ = 2/(C·N) gives the same minimiser.
        numerator = 2.0 if k == 2 else 1.0
        l2 = numerator / (self.C * n) if self.penalty == "l2" else 0.0
        settings = (
            y_index.astype(np.uint32),
            k,
            l2,
            float(self.tol),
            int(self.max_iter),
            self.device,
            weights,
            class_weight,
            bool(self.verbose),
            self._warm_weights(X.shape[1], classes),
        )
        if sp.issparse(X):
            # The sparse path: CSR with each row's indices ascending and no duplicates, as the library checks.
            X = sp.csr_matrix(X, dtype=np.float32, copy=True)
            X.sum_duplicates()
            X.sort_indices()
            coef, intercept, n_iter, objective, device = _native.fit_lbfgs_csr(
                X.indptr.astype(np.uint64),
                X.indices.astype(np.uint32),
                np.ascontiguousarray(X.data, dtype=np.float32),
                X.shape[1],
                *settings,
            )
        else:
            coef, intercept, n_iter, objective, device = _native.fit_lbfgs(
                np.ascontiguousarray(X, dtype=np.float32), *settings
            )
        coef = coef.astype(np.float64)
        intercept = intercept.astype(np.float64)
        if k == 2:
            coef = (coef[1] - coef[0])[np.newaxis, :]
            intercept = np.array([intercept[1] - intercept[0]])
        # Set only now: a fit that raised (bad input, Ctrl-C) leaves the estimator as it was.
        self.classes_ = classes
        self.coef_ = coef
        self.intercept_ = intercept
        self.n_iter_ = np.array([n_iter], dtype=np.int32)
        self.objective_ = objective
        self.device_ = device
        return self

    def fit_file(self, path, labels=None, label_column=-1, zero_based="auto"):
        """Fits on a file read by the library's own readers, for data larger than memory: NPY or IDX features with
        ``labels`` (a second file of class indices), LIBSVM (sparse, kept sparse), or CSV with its labels in
        ``label_column`` (negative: from the end). A LIBSVM file's indices are 0-based or 1-based as ``zero_based``
        says; "auto" (as scikit-learn's ``load_svmlight_file``) takes them as 1-based unless an index is 0. Rows that fit the memory are held; larger ones are streamed from
        the file for every evaluation of the objective, never whole in memory. The objective is ``fit``'s
        (λ = 1/(C·N) over the file's N rows); ``class_weight``, ``sample_weight`` and ``warm_start`` are not used
        here yet. Class names are the file's (integers where they all are)."""
        self._check_params()
        if self.class_weight is not None:
            raise ValueError("class_weight is not supported by fit_file yet; use fit")
        (coef, intercept, n_iter, objective, device), classes = _native.fit_file(
            str(path),
            None if labels is None else str(labels),
            int(label_column),
            None if zero_based == "auto" else bool(zero_based),
            float(self.C),
            self.penalty == "l2",
            float(self.tol),
            int(self.max_iter),
            self.device,
            bool(self.verbose),
        )
        coef = coef.astype(np.float64)
        intercept = intercept.astype(np.float64)
        if len(classes) == 2:
            coef = (coef[1] - coef[0])[np.newaxis, :]
            intercept = np.array([intercept[1] - intercept[0]])
        self.classes_ = _class_array(classes)
        self.coef_ = coef
        self.intercept_ = intercept
        self.n_features_in_ = coef.shape[1]
        self.n_iter_ = np.array([n_iter], dtype=np.int32)
        self.objective_ = objective
        self.device_ = device
        return self

    def _warm_weights(self, features, classes):
        """The current weights in the softmax's form (W [K, D] row-major, b) when ``warm_start`` applies: a fitted
        model of the same features and classes."""
        fitted = hasattr(self, "coef_") and hasattr(self, "classes_")
        if (
            not self.warm_start
            or not fitted
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


def _class_array(names):
    """Class names as integers, or floats, where every one is such a number; else as strings."""
    for kind in (int, float):
        try:
            return np.array([kind(n) for n in names])
        except ValueError:
            pass
    return np.array(names)
