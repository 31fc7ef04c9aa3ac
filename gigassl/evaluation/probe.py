"""The linear probe on frozen slide embeddings (Sec. 4.2): scikit-learn estimators.

- :class:`LinearProbe`: logistic regression with class-balanced weights (the authors' code: ``C=10``, lbfgs, L2
  penalty, ``max_iter=1000``) after a preprocessing step: ``"l2"`` (unit L2 norm, for Giga-SSL embeddings),
  ``"standard"`` (standard scaling fitted on the training slides, for average embeddings), ``"l2+standard"`` or
  ``"none"`` (Sec. 4.2 "Default settings").
- :class:`TunedLinearProbe`: the same probe with its preprocessing and C chosen by an inner cross-validation on the
  training slides (the book's "fair" protocol).
- :func:`make_probe`: the estimator of a protocol (``paper`` or ``fair``).

Running a probe over splits is :mod:`gigassl.evaluation.protocol`; the metrics are :mod:`gigassl.evaluation.metrics`.

Speed (the paper: 10 splits of BRCA subtyping in 1.25 CPU-seconds): the fit runs with one BLAS/OpenMP
thread (``n_threads=1``). The estimator is unchanged (same lbfgs, C, tol, max_iter; identical AUCs), but
on a busy 2-core machine the libraries' default threading costs 2x (binary, small) to 50x (1000 x 512,
10 splits) more CPU-seconds, in threads that mostly wait; see ``benchmarks/probe.py``.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler, normalize
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ..evaluation import logistic
from ..config import PREPROCESSING, ProbeConfig, choice, refused
from .metrics import auc_score
from ..devices import limit_threads

PROTOCOLS = ("paper", "fair")


class LinearProbe(ClassifierMixin, BaseEstimator):
    """Logistic regression on frozen slide embeddings (Sec. 4.2), with the authors' settings as defaults.

    Args:
        C: inverse L2 regularisation strength (the authors: 10).
        preprocessing: ``"l2"`` (rows scaled to unit norm; Giga-SSL embeddings), ``"standard"`` (zero mean,
            unit variance, fitted on the training rows; AverageMIL embeddings), ``"l2+standard"`` (unit norm, then
            standard scaling fitted on the training rows) or ``"none"``.
        class_weight: passed to LogisticRegression (the authors: ``"balanced"``).
        max_iter, tol: lbfgs stopping rule, as in scikit-learn (defaults 1000 and 1e-4: the authors').
        n_threads: BLAS/OpenMP threads during fit and predict; 1 is cheapest in CPU-seconds for probe-sized
            problems and does not change the estimator; None keeps the libraries' default.

    Attributes:
        classes_: (n_classes,) sorted labels; ``predict_proba`` columns follow it.
        coef_: (1, F) for two classes, else (n_classes, F), on the preprocessed features; intercept_ likewise.
        scaler_: the fitted StandardScaler (``"standard"``, ``"l2+standard"``) or None; n_iter_: lbfgs iterations.

    Shape: X (S, F) -> predict_proba (S, n_classes).

    >>> probe = LinearProbe(preprocessing="l2").fit(X_train, y_train)  # doctest: +SKIP
    >>> auc = auc_score(y_test, probe.predict_proba(X_test), probe.classes_)  # doctest: +SKIP
    """

    def __init__(self, C: float = 10.0, preprocessing: str = "l2", class_weight="balanced", max_iter: int = 1000,
                 tol: float = 1e-4, n_threads: int | None = 1):
        # scikit-learn's convention: every argument stored unchanged under its own name (get_params, clone)
        self.C, self.preprocessing, self.class_weight = C, preprocessing, class_weight
        self.max_iter, self.tol, self.n_threads = max_iter, tol, n_threads

    def _transform(self, X: np.ndarray) -> np.ndarray:
        if self.preprocessing == "l2":
            return normalize(X)
        if self.preprocessing == "standard":
            return self.scaler_.transform(X)
        if self.preprocessing == "l2+standard":
            return self.scaler_.transform(normalize(X))
        return X

    def fit(self, X, y):
        """Fit the preprocessing and the logistic regression on X (S, F) and labels y (S,); returns self."""
        choice(self.preprocessing, PREPROCESSING, "LinearProbe.preprocessing")
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(
                f"LinearProbe needs samples of at least 2 classes; got 1 class ({classes[0]!r}). "
                "Check the training split and the label column."
            )
        self.scaler_ = None
        if self.preprocessing == "standard":
            self.scaler_ = StandardScaler().fit(X)
        elif self.preprocessing == "l2+standard":
            self.scaler_ = StandardScaler().fit(normalize(X))
        with limit_threads(self.n_threads, "blas"):
            self.model_ = LogisticRegression(
                C=self.C, class_weight=self.class_weight, max_iter=self.max_iter, tol=self.tol
            ).fit(self._transform(X), y)
        self.classes_ = self.model_.classes_
        self.coef_ = self.model_.coef_
        self.intercept_ = self.model_.intercept_
        self.n_iter_ = self.model_.n_iter_
        return self

    def _checked(self, X) -> np.ndarray:
        check_is_fitted(self)
        return self._transform(validate_data(self, X, reset=False, dtype=[np.float64, np.float32]))

    def decision_function(self, X) -> np.ndarray:
        """Scores (S,) for two classes (of ``classes_[1]``), else (S, n_classes)."""
        X = self._checked(X)
        with limit_threads(self.n_threads, "blas"):
            return self.model_.decision_function(X)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (S, n_classes), columns in the order of ``classes_``."""
        X = self._checked(X)
        with limit_threads(self.n_threads, "blas"):
            return self.model_.predict_proba(X)

    def predict(self, X) -> np.ndarray:
        """Most probable class of each row (S,)."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]


def _preprocess(preprocessing: str, fit_rows: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``fit_rows`` and ``other`` after a :class:`LinearProbe` preprocessing fitted on ``fit_rows``."""
    if preprocessing in ("l2", "l2+standard"):
        fit_rows, other = normalize(fit_rows), normalize(other)
    if preprocessing in ("standard", "l2+standard"):
        scaler = StandardScaler().fit(fit_rows)
        fit_rows, other = scaler.transform(fit_rows), scaler.transform(other)
    return fit_rows, other


class TunedLinearProbe(ClassifierMixin, BaseEstimator):
    """The linear probe with its preprocessing and C chosen by an inner cross-validation on the training rows only:
    the "fair" protocol, applied identically to every representation (Giga-SSL, AverageMIL, ablations).

    Each (preprocessing, C) of the grid is scored by the mean ROC AUC (:func:`auc_score`) over ``inner_splits``
    stratified folds of the rows given to :meth:`fit`, grouped by ``groups`` (cases) when given; the best one
    (the first in grid order on ties: preprocessings, then Cs) is refitted on all of them; when no inner fold
    holds two classes (a handful of training slides), the first preprocessing with the paper's C = 10 is used.
    Nothing outside the
    rows passed to ``fit`` enters the choice, so under :func:`gigassl.evaluation.protocol.evaluate_splits` the test
    slides of a split never do.

    Args:
        Cs: candidate inverse regularisation strengths. preprocessings: candidates (see :class:`LinearProbe`).
        inner_splits: folds of the inner cross-validation (fewer when the rows have fewer cases per class).
        seed: the inner folds' shuffle.

    Attributes: best_params_ ({"preprocessing", "C"}), best_score_, cv_results_ (one dict per candidate),
        best_estimator_ (the refitted :class:`LinearProbe`), classes_, n_features_in_, n_iter_ (the refit's lbfgs
        iterations, (1,)).

    Groups, the scikit-learn way: ``fit(X, y, groups=cases)`` directly; inside a scikit-learn meta-estimator
    (``cross_validate``, a ``Pipeline``) with metadata routing enabled, ``groups`` reaches ``fit`` once requested,
    as for any consumer of fit metadata (the same array can also feed the outer splitter)::

        sklearn.set_config(enable_metadata_routing=True)
        probe = TunedLinearProbe().set_fit_request(groups=True)
        cross_validate(probe, X, y, cv=GroupKFold(5), params={"groups": cases})

    It passes scikit-learn's estimator checks (``tests/test_probe.py``).
    """

    def __init__(self, Cs=(0.01, 0.1, 1.0, 10.0, 100.0, 1000.0), preprocessings=("l2", "standard", "l2+standard"),
                 inner_splits: int = 3, class_weight="balanced", max_iter: int = 1000, seed: int = 0,
                 n_threads: int | None = 1):
        self.Cs, self.preprocessings, self.inner_splits = Cs, preprocessings, inner_splits
        self.class_weight, self.max_iter, self.seed, self.n_threads = class_weight, max_iter, seed, n_threads

    def _folds(self, X, y, groups):
        from sklearn.model_selection import StratifiedGroupKFold

        groups = np.arange(len(y)) if groups is None else np.asarray(groups)
        if groups.shape != (len(y),):
            raise ValueError(f"TunedLinearProbe.fit: groups has shape {groups.shape}; it must be ({len(y)},), one "
                             "group (case) per row of X. Pass the cases of the training rows, or groups=None.")
        _, counts = np.unique(y, return_counts=True)
        n = int(min(self.inner_splits, len(np.unique(groups)), counts.max()))
        if n < 2:
            return []
        cv = StratifiedGroupKFold(n_splits=n, shuffle=True, random_state=int(self.seed))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a class with fewer members than folds
            return [(tr, te) for tr, te in cv.split(X, y, groups) if len(np.unique(y[tr])) >= 2]

    def _sample_weight(self, y: np.ndarray) -> np.ndarray:
        if self.class_weight is None:
            return np.ones(len(y))
        if isinstance(self.class_weight, dict):
            return np.array([float(self.class_weight.get(label, 1.0)) for label in y])
        if self.class_weight == "balanced":
            return logistic.balanced_weights(y)
        raise refused("TunedLinearProbe.class_weight", self.class_weight, "'balanced', None or a dict", "")

    def fit(self, X, y, groups=None):
        """Choose (preprocessing, C) by inner cross-validation on X (S, F), y (S,), groups (S,); refit on all."""
        for prep in self.preprocessings:
            choice(prep, PREPROCESSING, "TunedLinearProbe.preprocessings")
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        folds = self._folds(X, y, groups)
        self.cv_results_ = []
        scores = {(prep, float(C)): [] for prep in self.preprocessings for C in self.Cs}
        with limit_threads(self.n_threads, "blas"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an inner test fold lacking a class; lbfgs at its iteration cap
            for prep in self.preprocessings:
                for train, test in folds:
                    # one path per fold along increasing C, each fit warm-started from the previous one, solved in
                    # kernel form (gigassl.evaluation.logistic: scikit-learn's objective, a fraction of its per-fit cost)
                    x_train, x_test = _preprocess(prep, X[train], X[test])
                    classes, index = np.unique(y[train], return_inverse=True)
                    Cs = sorted(float(C) for C in self.Cs)
                    path = logistic.logistic_path(x_train @ x_train.T, index, Cs,
                                                  self._sample_weight(y[train]), max_iter=self.max_iter)
                    kernel = x_test @ x_train.T
                    for C, (A, b) in zip(Cs, path):
                        scores[(prep, C)].append(auc_score(y[test], logistic.predict_proba(kernel, A, b), classes))
        best, best_key, best_score = None, -np.inf, float("nan")
        for prep in self.preprocessings:
            for C in self.Cs:
                values = scores[(prep, float(C))]
                score = float(np.nanmean(values)) if values and not np.all(np.isnan(values)) else float("nan")
                self.cv_results_.append({"preprocessing": prep, "C": float(C), "score": score})
                key = -np.inf if np.isnan(score) else score
                if best is None or key > best_key:
                    best, best_key, best_score = (prep, float(C)), key, score
        if not np.isfinite(best_key):  # no usable inner fold (a handful of slides): the paper's C, the first prep
            best = (self.preprocessings[0], 10.0 if 10.0 in self.Cs else float(self.Cs[len(self.Cs) // 2]))
        self.best_params_ = {"preprocessing": best[0], "C": best[1]}
        self.best_score_ = best_score
        self.best_estimator_ = LinearProbe(C=best[1], preprocessing=best[0], class_weight=self.class_weight,
                                           max_iter=self.max_iter, n_threads=self.n_threads).fit(X, y)
        self.classes_ = self.best_estimator_.classes_
        self.n_iter_ = self.best_estimator_.n_iter_
        return self

    def decision_function(self, X) -> np.ndarray:
        """Scores of the refitted probe: (S,) for two classes (of ``classes_[1]``), else (S, n_classes)."""
        check_is_fitted(self)
        return self.best_estimator_.decision_function(X)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (S, n_classes) of the refitted probe, columns in the order of ``classes_``."""
        check_is_fitted(self)
        return self.best_estimator_.predict_proba(X)

    def predict(self, X) -> np.ndarray:
        """Most probable class of each row (S,), by the refitted probe."""
        check_is_fitted(self)
        return self.best_estimator_.predict(X)


def make_probe(protocol: str, preprocessing: str, config: ProbeConfig, n_threads: int | None = 1):
    """The estimator of a probe protocol: ``paper`` (the paper's: :class:`LinearProbe` with C = ``config.C`` and the
    method's own ``preprocessing``, l2 for Giga-SSL, standard for AverageMIL) or ``fair`` (one
    :class:`TunedLinearProbe` for every method: preprocessing and C chosen on the training slides of each split)."""
    if protocol == "paper":
        return LinearProbe(C=config.C, max_iter=config.max_iter, preprocessing=preprocessing, n_threads=n_threads)
    if protocol == "fair":
        return TunedLinearProbe(Cs=tuple(config.Cs), preprocessings=tuple(config.preprocessings),
                                inner_splits=config.inner_splits, max_iter=config.max_iter, seed=config.seed,
                                n_threads=n_threads)
    raise refused("probe protocol", protocol, "one of " + ", ".join(map(repr, PROTOCOLS)),
                  "Pass --protocol paper or --protocol fair.")
