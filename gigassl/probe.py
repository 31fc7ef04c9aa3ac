"""Linear probing of frozen slide embeddings (Sec. 4.2) and the tidy result table of every comparison (Sec. 4.3).

- :class:`LinearProbe`: a scikit-learn classifier, logistic regression with class-balanced weights (the
  authors' code: ``C=10``, lbfgs, L2 penalty, ``max_iter=1000``) after a preprocessing step: ``"l2"``
  (unit L2 norm, for Giga-SSL embeddings), ``"standard"`` (standard scaling fitted on the training slides,
  for average embeddings) or ``"none"`` (Sec. 4.2 "Default settings").
- :func:`auc_score`: ROC AUC as in the authors' code (binary: positive-class probability; multi-class:
  one-vs-rest macro average), tolerant of a test set lacking a class.
- :func:`evaluate`: runs any method over planned splits and returns the tidy table, one row per
  (method, task, budget, split) with the columns of :data:`COLUMNS`; :func:`run_probe` does it for the
  linear probe; :func:`summarize` gives mean, std and a bootstrap 95% interval per (method, task, budget).

Speed (the paper: 10 splits of BRCA subtyping in 1.25 CPU-seconds): the fit runs with one BLAS/OpenMP
thread (``n_threads=1``). The estimator is unchanged (same lbfgs, C, tol, max_iter; identical AUCs), but
on a busy 2-core machine the libraries' default threading costs 2x (binary, small) to 50x (1000 x 512,
10 splits) more CPU-seconds, in threads that mostly wait; see ``benchmarks/probe.py``.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
import zlib

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler, normalize
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from . import logistic
from .config import PREPROCESSING, ProbeConfig
from .errors import ConfigError, ManifestError
from .splits import Split, check_ids, check_splits, load_labels, plan_splits
from .utils import rng, write_csv_atomic

PROTOCOLS = ("paper", "fair")
COLUMNS = (
    "method", "protocol", "task", "budget", "split", "auc", "n_train", "n_test", "n_classes_test", "case_overlap",
    "grouped_by", "cpu_seconds", "wall_seconds", "device", "seed",
)

_CONTROLLER = None


def _threads(n: int | None):
    """Context limiting BLAS/OpenMP threads to ``n`` (None: leave the libraries' default)."""
    global _CONTROLLER
    if n is None:
        return contextlib.nullcontext()
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=int(n))


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
        self.C = C
        self.preprocessing = preprocessing
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.tol = tol
        self.n_threads = n_threads

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
        if self.preprocessing not in PREPROCESSING:
            raise ConfigError(f"preprocessing must be one of {', '.join(PREPROCESSING)}; got {self.preprocessing!r}.")
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
        with _threads(self.n_threads):
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
        with _threads(self.n_threads):
            return self.model_.decision_function(X)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (S, n_classes), columns in the order of ``classes_``."""
        X = self._checked(X)
        with _threads(self.n_threads):
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
    rows passed to ``fit`` enters the choice, so under :func:`evaluate` the test slides of a split never do.

    Args:
        Cs: candidate inverse regularisation strengths. preprocessings: candidates (see :class:`LinearProbe`).
        inner_splits: folds of the inner cross-validation (fewer when the rows have fewer cases per class).
        seed: the inner folds' shuffle.

    Attributes: best_params_ ({"preprocessing", "C"}), best_score_, cv_results_ (one dict per candidate),
        best_estimator_ (the refitted :class:`LinearProbe`), classes_.
    """

    def __init__(self, Cs=(0.01, 0.1, 1.0, 10.0, 100.0, 1000.0), preprocessings=("l2", "standard", "l2+standard"),
                 inner_splits: int = 3, class_weight="balanced", max_iter: int = 1000, seed: int = 0,
                 n_threads: int | None = 1):
        self.Cs = Cs
        self.preprocessings = preprocessings
        self.inner_splits = inner_splits
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.seed = seed
        self.n_threads = n_threads

    def _folds(self, X, y, groups):
        from sklearn.model_selection import StratifiedGroupKFold

        groups = np.arange(len(y)) if groups is None else np.asarray(groups)
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
        raise ConfigError(f"class_weight must be 'balanced', None or a dict; got {self.class_weight!r}.")

    def fit(self, X, y, groups=None):
        """Choose (preprocessing, C) by inner cross-validation on X (S, F), y (S,), groups (S,); refit on all."""
        for prep in self.preprocessings:
            if prep not in PREPROCESSING:
                raise ConfigError(f"preprocessing must be one of {', '.join(PREPROCESSING)}; got {prep!r}.")
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        folds = self._folds(X, y, groups)
        self.cv_results_ = []
        scores = {(prep, float(C)): [] for prep in self.preprocessings for C in self.Cs}
        with _threads(self.n_threads), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an inner test fold lacking a class; lbfgs at its iteration cap
            for prep in self.preprocessings:
                for train, test in folds:
                    # one path per fold along increasing C, each fit warm-started from the previous one, solved in
                    # kernel form (gigassl.logistic: scikit-learn's objective, a fraction of its per-fit cost)
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
        return self

    def decision_function(self, X) -> np.ndarray:
        check_is_fitted(self)
        return self.best_estimator_.decision_function(X)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (S, n_classes) of the refitted probe, columns in the order of ``classes_``."""
        check_is_fitted(self)
        return self.best_estimator_.predict_proba(X)

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self)
        return self.best_estimator_.predict(X)


# ------------------------------------------------------------------------------------------------------ metrics
def auc_score(y_true, proba, classes, where: str = "") -> float:
    """ROC AUC of class probabilities (the authors' metric, Sec. 4.3).

    Two classes: AUC of ``proba[:, 1]`` (the probability of ``classes[1]``). More classes: one-vs-rest AUC
    of each class, macro-averaged (as ``roc_auc_score(multi_class="ovr")``). A test set lacking a class:
    the average runs over the classes present in ``y_true`` (each against all other test slides); with fewer
    than two classes present the AUC is undefined: NaN, with a warning naming ``where``.

    Shape: y_true (S,), proba (S, n_classes) with columns following ``classes``.
    """
    y_true = np.asarray(y_true)
    classes = np.asarray(classes)
    proba = np.asarray(proba, dtype=float).reshape(len(y_true), -1)
    where = where or "test set"
    unseen = sorted(set(y_true.tolist()) - set(classes.tolist()))
    if unseen:
        warnings.warn(f"{where}: test label(s) {unseen} absent from training; they count only as negatives.")
    # one-vs-rest problems that have both a positive and a negative test slide
    scored = [i for i, c in enumerate(classes) if 0 < np.sum(y_true == c) < len(y_true)]
    if len(classes) == 2:
        scored = [1] if 1 in scored else []
    if not scored:
        warnings.warn(f"{where}: fewer than two classes among the {len(y_true)} test slides; AUC is NaN.")
        return float("nan")
    return float(np.mean([binary_auc(y_true == classes[i], proba[:, i]) for i in scored]))


def binary_auc(positive, score) -> float:
    """ROC AUC of ``score`` for the boolean ``positive`` (S,), by ranks (Mann-Whitney U, ties counting one half):
    the value of ``sklearn.metrics.roc_auc_score``, without its per-call validation (the fair protocol scores
    thousands of inner folds). Both classes must be present."""
    from scipy.stats import rankdata

    positive = np.asarray(positive, dtype=bool)
    ranks = rankdata(np.asarray(score, dtype=float))
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def bootstrap_ci(values, n_bootstrap: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (per-split AUCs; NaNs dropped), seeded.

    ``n_bootstrap=0`` skips the bootstrap and returns (NaN, NaN).
    """
    values = np.asarray(values, float)
    values = values[~np.isnan(values)]
    if len(values) == 0 or n_bootstrap <= 0:
        return float("nan"), float("nan")
    draws = rng(seed).integers(0, len(values), size=(int(n_bootstrap), len(values)))
    means = values[draws].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1.0 - alpha))


def summarize(table: pd.DataFrame, n_bootstrap: int = 2000, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """One row per (method, protocol, task, budget) of a tidy table, in order of first appearance.

    Columns: method, protocol (``paper`` when the table has none), task, budget, n_splits (AUCs that are not NaN), auc_mean, auc_std (over splits, ddof=0 as
    ``np.std`` in the authors' code), ci_low, ci_high (bootstrap of the mean over splits, seeded per group),
    n_train, n_test (means), case_overlap (mean per split), cpu_seconds, wall_seconds (totals), device.
    """
    rows = []
    if "protocol" not in table.columns:
        table = table.assign(protocol="paper")
    for (method, protocol, task, budget), group in table.groupby(["method", "protocol", "task", "budget"],
                                                                 sort=False):
        auc = group["auc"].to_numpy(float)
        name = f"{method}/{task}/{budget}" + ("" if protocol == "paper" else f"/{protocol}")
        key = zlib.crc32(name.encode())
        low, high = bootstrap_ci(auc, n_bootstrap, level, seed=int(rng(seed, key).integers(2**31)))
        valid = auc[~np.isnan(auc)]
        rows.append({
            "method": method, "protocol": protocol, "task": task, "budget": budget, "n_splits": len(valid),
            "auc_mean": float(valid.mean()) if len(valid) else float("nan"),
            "auc_std": float(valid.std()) if len(valid) else float("nan"),
            "ci_low": low, "ci_high": high,
            "n_train": float(group["n_train"].mean()), "n_test": float(group["n_test"].mean()),
            "case_overlap": float(group["case_overlap"].mean()),
            "cpu_seconds": float(group["cpu_seconds"].sum()), "wall_seconds": float(group["wall_seconds"].sum()),
            "device": ",".join(sorted(set(group["device"].astype(str)))),
        })
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------- running a protocol
def evaluate(plan: list[Split], labels: pd.DataFrame, fit_predict, *, method: str, task: str, device: str = "cpu",
             allow_case_overlap: bool = False, seed: int = 0, protocol: str = "paper") -> pd.DataFrame:
    """Run one method over planned splits and return the tidy table (columns :data:`COLUMNS`).

    Args:
        plan: splits from :func:`gigassl.splits.plan_splits` (each carries its budget name).
        labels: frame from :func:`gigassl.splits.load_labels`.
        fit_predict: ``fit_predict(split, index) -> (classes, proba[, extra])``: train on ``split.train_ids``
            and return the probabilities (n_test, n_classes) of ``split.test_ids``, optionally with a dict of
            extra columns; ``index`` is the split's position within its budget (a seed key). Its CPU time
            (``time.process_time``, all threads of the process) and wall time are recorded.
        protocol: the probe protocol's name, recorded in the column ``protocol`` (``paper``, ``fair``; the MIL
            baselines, which are no linear probe, are the same under both).

    Raises:
        ManifestError: a slide or (unless ``allow_case_overlap``) a case on both sides of a split.
    """
    overlaps = check_splits(plan, labels, allow_case_overlap)
    label_of = dict(zip(labels["slide_id"], labels["label"]))
    # "case": splits keep a case's slides together; "slide": the labels had no case_id (each slide its own case)
    grouped_by = "slide" if "case_source" in labels and (labels["case_source"] == "slide_id").all() else "case"
    seen: dict[str, int] = {}
    rows = []
    for split, overlap in zip(plan, overlaps):
        index = seen[split.budget] = seen.get(split.budget, -1) + 1
        y_test = np.array([label_of[i] for i in split.test_ids])
        cpu, wall = time.process_time(), time.perf_counter()
        classes, proba, *extra = fit_predict(split, index)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        auc = auc_score(y_test, proba, classes, where=f"{method}/{task}/{split.budget}/{split.name}")
        rows.append({
            "method": method, "protocol": protocol, "task": task, "budget": split.budget, "split": split.name,
            "auc": auc,
            "n_train": len(split.train_ids), "n_test": len(split.test_ids),
            "n_classes_test": len(set(y_test.tolist())), "case_overlap": overlap, "grouped_by": grouped_by,
            "cpu_seconds": cpu, "wall_seconds": wall, "device": device, "seed": seed, **(extra[0] if extra else {}),
        })
    columns = list(COLUMNS) + [c for c in (rows[0] if rows else {}) if c not in COLUMNS]
    return pd.DataFrame(rows, columns=columns)


def load_embeddings(embeddings, ids_path=None) -> tuple[list[str], np.ndarray]:
    """Slide embeddings as (ids, (S, D) array) from a file (:func:`gigassl.io.read_embeddings`) or a pair.

    Raises:
        ManifestError: repeated ids, or a row count that does not match the ids.
    """
    if isinstance(embeddings, (str, os.PathLike)):
        from .io import read_embeddings

        ids, matrix, _ = read_embeddings(embeddings, ids_path)
    else:
        ids, matrix = embeddings
    ids = [str(i) for i in ids]
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != len(ids):
        raise ManifestError(f"Embeddings of shape {matrix.shape} for {len(ids)} ids; expected ({len(ids)}, D).")
    if len(set(ids)) != len(ids):
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        raise ManifestError(f"Embedding ids repeated: {repeated[:10]} ({len(repeated)}); each slide once.")
    return ids, matrix


def probe_fit_predict(ids, matrix: np.ndarray, labels: pd.DataFrame, probe):
    """A ``fit_predict`` for :func:`evaluate`: a fresh clone of ``probe`` (a :class:`LinearProbe` or a
    :class:`TunedLinearProbe`) fitted on the training rows of ``matrix`` (looked up by slide id) and applied to the
    test rows. A TunedLinearProbe gets the training slides' cases as inner-CV groups and its choice is returned as
    the extra columns ``preprocessing`` and ``C``; the test rows are read only after the fit."""
    from sklearn.base import clone

    row = {sid: i for i, sid in enumerate(ids)}
    frame = labels.set_index("slide_id").reindex(list(ids))
    y = np.asarray(frame["label"].to_numpy(), dtype=object)
    cases = np.asarray(frame["case_id"].to_numpy(), dtype=object)

    def fit_predict(split: Split, index: int):
        train = np.fromiter((row[i] for i in split.train_ids), int, len(split.train_ids))
        test = np.fromiter((row[i] for i in split.test_ids), int, len(split.test_ids))
        fitted = clone(probe)
        if isinstance(fitted, TunedLinearProbe):
            fitted.fit(matrix[train], y[train].astype(str), groups=cases[train].astype(str))
            extra = dict(fitted.best_params_)
        else:
            fitted.fit(matrix[train], y[train].astype(str))
            extra = {"preprocessing": fitted.preprocessing, "C": float(fitted.C)}
        return fitted.classes_, fitted.predict_proba(matrix[test]), extra

    return fit_predict


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
    raise ConfigError(f"probe protocol must be one of {', '.join(PROTOCOLS)}; got {protocol!r}.")


def resolve_budgets(budgets, train_sizes, config: ProbeConfig) -> tuple[tuple, tuple]:
    """The budgets of a run: those given, or the config's (fractions and sizes) when neither is given."""
    if budgets is None and train_sizes is None:
        return tuple(config.budgets), tuple(config.train_sizes)
    return tuple(budgets or ()), tuple(train_sizes or ())


def probe_plan(embeddings, labels: pd.DataFrame, plan: list[Split], *, task: str, preprocessing: str = "l2",
               method: str = "gigassl", config: ProbeConfig = ProbeConfig(), allow_case_overlap: bool = False,
               n_threads: int | None = 1, protocol: str = "paper") -> pd.DataFrame:
    """The linear probe over planned splits (each with its budget): the fast core of :func:`run_probe`.

    Args:
        embeddings: (ids, (S, D) matrix); labels: frame from :func:`gigassl.splits.load_labels`.
        n_threads: BLAS/OpenMP threads for the whole run (1: fewest CPU-seconds; None: library default).
        protocol: ``paper`` (``preprocessing`` and C = ``config.C``) or ``fair`` (see :func:`make_probe`).

    Raises:
        ManifestError: split ids absent from the embeddings (listed), or leakage (see :func:`evaluate`).
    """
    ids, matrix = load_embeddings(embeddings)
    check_ids(plan, set(ids), what="the embeddings")
    probe = make_probe(protocol, preprocessing, config, n_threads)
    fit_predict = probe_fit_predict(ids, matrix, labels, probe)
    with _threads(n_threads):
        return evaluate(plan, labels, fit_predict, method=method, task=task, device="cpu",
                        allow_case_overlap=allow_case_overlap, seed=config.seed, protocol=protocol)


def run_probe(embeddings, labels, task: str, *, ids_path=None, splits=None, n_splits: int | None = None,
              budgets=None, train_sizes=None, allow_case_overlap: bool = False, preprocessing: str = "l2",
              method: str = "gigassl", config: ProbeConfig = ProbeConfig(), protocol: str = "paper",
              out=None) -> pd.DataFrame:
    """The linear-probe protocol (Sec. 4.2): ``gigassl probe --embeddings FILE --labels CSV --task COLUMN``.

    Args:
        embeddings: an embeddings file (HDF5 of ``gigassl embed``, or ``.npy`` with ``ids_path``) or (ids, matrix).
        labels: a manifest / label CSV path or frame (``slide_id``, ``case_id``, ``task``).
        splits: a folder of ``split_<k>.csv`` (``--splits DIR``), a list of base :class:`Split`, or None to
            generate ``n_splits`` (default ``config.n_splits``) case-grouped stratified splits (``--n-splits K``).
        budgets, train_sizes: fractions (``--budget F``) and exact sizes (``--train-size N``) applied to each
            training split; both None: ``config.budgets`` and ``config.train_sizes``.
        allow_case_overlap: accept splits with a case on both sides (``--allow-case-overlap``); the number of
            such cases is recorded per split (column ``case_overlap``).
        preprocessing: see :class:`LinearProbe`; ``"standard"`` for average embeddings.
        protocol: ``paper`` (the paper's probe, with ``preprocessing``) or ``fair`` (:class:`TunedLinearProbe`).
        out: write the table there (CSV, atomically).

    Returns: the tidy table (:data:`COLUMNS`), one row per budget and split.
    """
    ids, matrix = load_embeddings(embeddings, ids_path)
    frame = load_labels(labels, task)
    fractions, sizes = resolve_budgets(budgets, train_sizes, config)
    n_splits = config.n_splits if n_splits is None else n_splits
    plan = plan_splits(frame, splits=splits, n_splits=n_splits, test_fraction=config.test_fraction,
                       budgets=fractions, train_sizes=sizes, seed=config.seed)
    table = probe_plan((ids, matrix), frame, plan, task=task, preprocessing=preprocessing, method=method,
                       config=config, allow_case_overlap=allow_case_overlap, protocol=protocol)
    if out is not None:
        write_csv_atomic(table, out)
    return table


def neighbour_agreement(matrix: np.ndarray, labels, k: int = 5) -> float:
    """Mean fraction of each row's ``k`` nearest neighbours (cosine) that share its label, e.g. its centre.

    A measure of how much an embedding is organised by a slide-level attribute (Sec. 5: shortcut features shared by
    all the tiles of a slide); its chance level is :func:`label_agreement_chance`.
    Shape: matrix (S, D), labels (S,) -> float in [0, 1].
    """
    x = np.asarray(matrix, np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    k = min(k, len(x) - 1)
    neighbours = np.argsort(-sim, axis=1)[:, :k]
    labels = np.asarray(labels)
    return float((labels[neighbours] == labels[:, None]).mean())


def label_agreement_chance(labels, k: int = 5) -> float:
    """The expected :func:`neighbour_agreement` of an embedding that ignores ``labels`` (neighbours drawn at random
    among the other rows)."""
    labels = np.asarray(labels)
    n = len(labels)
    _, counts = np.unique(labels, return_counts=True)
    return float((counts * (counts - 1)).sum() / (n * (n - 1)))


def probe_runs(named: dict, labels, tasks, *, budgets=None, train_sizes=None, protocols=PROTOCOLS,
               config: ProbeConfig = ProbeConfig(), n_splits: int | None = None) -> pd.DataFrame:
    """Probe several representations over the same splits, tasks, budgets and protocols: one tidy table.

    Args:
        named: ``{method: (embeddings, paper_preprocessing)}``, embeddings as for :func:`run_probe` (a file or
            (ids, matrix)), paper_preprocessing the one the paper's protocol applies to that representation (``l2``
            for Giga-SSL embeddings, ``standard`` for average embeddings).
        tasks: label columns of ``labels``. protocols: ``paper`` and/or ``fair`` (:func:`make_probe`).

    Every method sees the same split plan (keyed by ``config.seed``), so their per-split AUCs pair up
    (:func:`gigassl.compare.paired`).
    """
    tables = []
    for method, (embeddings, preprocessing) in named.items():
        loaded = load_embeddings(embeddings)
        for task in tasks:
            for protocol in protocols:
                tables.append(run_probe(loaded, labels, task, n_splits=n_splits, budgets=budgets,
                                        train_sizes=train_sizes, preprocessing=preprocessing, method=method,
                                        config=config, protocol=protocol))
    return pd.concat(tables, ignore_index=True)
