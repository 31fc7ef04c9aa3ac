"""The metrics of the probes (Sec. 4.3): ROC AUC as the authors compute it, and the per-split summary.

- :func:`auc_score`: ROC AUC (binary: positive-class probability; multi-class: one-vs-rest macro average),
  tolerant of a test set lacking a class; :func:`binary_auc` its rank formula.
- :func:`summarize`: mean, std and a bootstrap 95% interval (:func:`bootstrap_ci`) per (method, protocol, task,
  budget) of a tidy result table (:data:`gigassl.evaluation.protocol.COLUMNS`).
"""

from __future__ import annotations

import warnings
import zlib

import numpy as np
import pandas as pd

from ..seeding import rng


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


def balanced_accuracy(y_true, y_pred) -> float:
    """Balanced accuracy: the mean over the classes present in ``y_true`` of the share of their slides predicted as
    that class (the recall of each class), as ``sklearn.metrics.balanced_accuracy_score``; chance is
    1 / n_classes whatever the class sizes. Shape: y_true (S,), y_pred (S,) -> float in [0, 1]."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_true) == 0:
        return float("nan")
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in np.unique(y_true)]))


def classification_scores(y_true, proba, classes, where: str = "") -> dict:
    """``{"auroc": auc_score(...), "balanced_accuracy": ...}`` of class probabilities (S, n_classes), columns
    following ``classes``; the predicted class of a slide is its most probable one (the first in ``classes`` on
    ties)."""
    proba = np.asarray(proba, dtype=float).reshape(len(y_true), -1)
    predicted = np.asarray(classes)[np.argmax(proba, axis=1)]
    return {"auroc": auc_score(y_true, proba, classes, where=where),
            "balanced_accuracy": balanced_accuracy(y_true, predicted)}
