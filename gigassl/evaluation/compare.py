"""Paired comparisons of two methods on the same splits, with an interval and a verdict (Sec. 4.3).

Every comparison of the book is paired: both methods are evaluated on the very same train/test splits (the split
plan is keyed by the probe seed, so every method of a run sees the same splits), the per-split AUC differences are
formed, and their mean is reported with a percentile bootstrap interval over splits (resampling splits, seeded).
The verdict is ``"<a> better"`` or ``"<b> better"`` when the interval excludes 0, else ``"undecided"``.

Two intervals are offered (``interval=`` of :func:`paired` and :func:`summarize_pairs`):

- ``"bootstrap"`` (the default of the experiment pages): the percentile bootstrap over splits. Repeated random splits
  share slides (their training and test sets overlap), so it holds only the split-to-split variance and is too narrow
  for a claim about the method.
- ``"corrected"``: the corrected resampled t-interval of Nadeau & Bengio (2003, Machine Learning 52:239-281, Sec. 4):
  the mean of J per-split differences +- t_{J-1} * sqrt((1/J + n_test/n_train) * s^2), s^2 their sample variance
  (ddof 1). The term n_test/n_train accounts for the correlation of estimates from overlapping random splits
  (:func:`corrected_interval`, :func:`corrected_t`). The results page uses it.

The evaluations of ``gigassl evaluate`` (:mod:`gigassl.evaluation.headtohead`) return one tidy runs table
(:data:`RUN_COLUMNS`, one row per method, draw and metric); :func:`paired_runs` and :func:`head_to_head` pair its
representations on (evaluation, task, setting, metric, draw), with the interval :data:`DRAW_INTERVALS` names per
evaluation and the verdict's words turned for metrics where lower is better (:data:`LOWER_IS_BETTER`).

Neither holds the variance of the SSL training seed or of the cohort: the cohort-to-cohort spread is measured by
``benchmarks/seeds.py`` (BENCHMARKS.md). :data:`VARIANCE_SOURCES` names what each interval holds.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..seeding import rng

UNDECIDED = "undecided"
INTERVALS = ("bootstrap", "corrected")
# what each interval holds, the words of the results page's ``variance_sources`` column
VARIANCE_SOURCES = {"bootstrap": "splits (bootstrap, uncorrected for overlap)",
                    "corrected": "splits (Nadeau-Bengio corrected)"}


def corrected_t(differences, test_train_ratio: float) -> tuple[float, float, int]:
    """(mean, standard error, degrees of freedom) of the corrected resampled t-test of Nadeau & Bengio (2003).

    ``differences``: one value per random split (NaNs dropped), J of them; ``test_train_ratio``: n_test / n_train
    of the splits (known from the split plan). The standard error is sqrt((1/J + n_test/n_train) * s^2), s^2 the
    sample variance (ddof 1) of the differences; J - 1 degrees of freedom. Fewer than 2 values: (mean or NaN, NaN, 0).

    Raises:
        ConfigError: a ratio that is not a positive finite number.
    """
    if not (np.isfinite(test_train_ratio) and test_train_ratio > 0):
        raise ConfigError(f"test_train_ratio must be n_test / n_train > 0; got {test_train_ratio}. Pass the mean "
                          "test and training sizes of the splits (columns n_test, n_train of the per-split table).")
    d = np.asarray(differences, float)
    d = d[~np.isnan(d)]
    if len(d) < 2:
        return (float(d.mean()) if len(d) else float("nan")), float("nan"), 0
    se = float(np.sqrt((1.0 / len(d) + float(test_train_ratio)) * d.var(ddof=1)))
    return float(d.mean()), se, len(d) - 1


def t_interval(mean: float, se: float, df: int, level: float = 0.95) -> tuple[float, float]:
    """mean +- t_{df, (1 + level) / 2} * se; (NaN, NaN) when ``se`` is undefined or ``df`` < 1."""
    from scipy.stats import t

    if df < 1 or not np.isfinite(se):
        return float("nan"), float("nan")
    half = float(t.ppf(0.5 + level / 2.0, df)) * se
    return mean - half, mean + half


def corrected_interval(differences, test_train_ratio: float, level: float = 0.95) -> tuple[float, float]:
    """The corrected resampled t-interval (Nadeau & Bengio, 2003) of the mean of per-split differences
    (:func:`corrected_t`)."""
    return t_interval(*corrected_t(differences, test_train_ratio), level=level)


def split_ratio(table: pd.DataFrame, default: float | None = None) -> float:
    """n_test / n_train of a per-split table (means of its ``n_test`` and ``n_train`` columns); ``default`` when it
    has none (e.g. the SSL monitor's rows: test_fraction / (1 - test_fraction) of the split plan)."""
    if {"n_test", "n_train"} <= set(table.columns) and table["n_train"].notna().any():
        return float(table["n_test"].mean() / table["n_train"].mean())
    if default is None:
        raise ConfigError("The per-split table has no n_train/n_test columns; pass default = n_test / n_train of the "
                          "split plan (test_fraction / (1 - test_fraction) at 100% of the labels).")
    return float(default)


def common_splits(table: pd.DataFrame, by=("protocol", "task", "budget")) -> pd.DataFrame:
    """The rows of the splits every method of each group of ``by`` has (Giga-SSL over DeepMIL's splits when DeepMIL
    runs fewer), so that every method of a table is summarised over the same splits."""
    by = [c for c in by if c in table.columns]
    n_methods = table.groupby(by)["method"].transform("nunique")
    per_split = table.groupby([*by, "split"])["method"].transform("nunique")
    return table[per_split == n_methods].reset_index(drop=True)


def _interval(d, interval: str, ratio: float | None, n_bootstrap: int, level: float, seed: int):
    if interval == "bootstrap":
        return paired_interval(d, n_bootstrap, level, seed=seed)
    if interval == "corrected":
        if ratio is None:
            raise ConfigError("interval='corrected' needs test_train_ratio (n_test / n_train of the splits).")
        return corrected_interval(d, ratio, level)
    raise ConfigError(f"interval must be one of {INTERVALS}; got {interval!r}.")


def verdict(low: float, high: float, a: str = "a", b: str = "b") -> str:
    """``"<a> better"`` when the interval [low, high] of a - b is above 0, ``"<b> better"`` below, else undecided."""
    if np.isnan(low) or np.isnan(high):
        return UNDECIDED
    if low > 0:
        return f"{a} better"
    if high < 0:
        return f"{b} better"
    return UNDECIDED


def paired_interval(differences, n_bootstrap: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of paired per-split differences (NaNs dropped), seeded.

    With fewer than 2 differences, or ``n_bootstrap = 0``, the interval is undefined: (NaN, NaN).
    """
    d = np.asarray(differences, float)
    d = d[~np.isnan(d)]
    if len(d) < 2 or n_bootstrap <= 0:
        return float("nan"), float("nan")
    draws = rng(seed).integers(0, len(d), size=(int(n_bootstrap), len(d)))
    means = d[draws].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1.0 - alpha))


def per_split(table: pd.DataFrame, a: str, b: str, by=("protocol", "task", "budget")) -> pd.DataFrame:
    """The per-split AUCs of methods ``a`` and ``b`` side by side, on the splits both have.

    ``table``: the tidy table of :func:`gigassl.evaluation.protocol.evaluate_splits` (columns method, split, auc and
    ``by``).
    Returns columns ``by``, split, auc_a, auc_b, difference (a - b).
    """
    by = [c for c in by if c in table.columns]
    missing = [m for m in (a, b) if m not in set(table["method"])]
    if missing:
        raise ConfigError(f"No results of method(s) {missing} to compare; the table has {sorted(set(table['method']))}.")
    keys = [*by, "split"]
    left = table[table["method"] == a][keys + ["auc"]].rename(columns={"auc": "auc_a"})
    right = table[table["method"] == b][keys + ["auc"]].rename(columns={"auc": "auc_b"})
    both = left.merge(right, on=keys, how="inner")
    return both.assign(difference=both["auc_a"] - both["auc_b"])


def paired(table: pd.DataFrame, a: str, b: str, by=("protocol", "task", "budget"), n_bootstrap: int = 2000,
           level: float = 0.95, seed: int = 0, interval: str = "bootstrap") -> pd.DataFrame:
    """Method ``a`` minus method ``b``, paired over splits, one row per group of ``by``.

    Columns: ``by``, a, b, n_splits, auc_a, auc_b (means), difference (mean of the per-split differences),
    difference_std (their std over splits), ci_low, ci_high (interval of the mean: ``interval`` ``"bootstrap"`` or
    ``"corrected"``, the Nadeau-Bengio t-interval with n_test / n_train of the group's splits), verdict.
    """
    pairs = per_split(table, a, b, by)
    by = [c for c in by if c in pairs.columns]
    rows = []
    groups = pairs.groupby(by, sort=False) if by else [((), pairs)]
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        d = group["difference"].to_numpy(float)
        name = "/".join(str(k) for k in (a, b, *key))
        ratio = None
        if interval == "corrected":
            rows_ab = table[table["method"].isin([a, b]) & table["split"].isin(set(group["split"]))]
            for column, value in zip(by, key):
                rows_ab = rows_ab[rows_ab[column] == value]
            ratio = split_ratio(rows_ab)
        low, high = _interval(d, interval, ratio, n_bootstrap, level,
                              seed=int(rng(seed, zlib.crc32(name.encode())).integers(2**31)))
        valid = d[~np.isnan(d)]
        rows.append({**dict(zip(by, key)), "a": a, "b": b, "n_splits": len(valid),
                     "auc_a": float(np.nanmean(group["auc_a"])), "auc_b": float(np.nanmean(group["auc_b"])),
                     "difference": float(valid.mean()) if len(valid) else float("nan"),
                     "difference_std": float(valid.std()) if len(valid) else float("nan"),
                     "ci_low": low, "ci_high": high, "verdict": verdict(low, high, a, b)})
    return pd.DataFrame(rows)


def summarize_pairs(pairs: pd.DataFrame, by=("protocol", "budget"), n_bootstrap: int = 2000, level: float = 0.95,
                    seed: int = 0, name: str = "", interval: str = "bootstrap",
                    test_train_ratio: float | None = None) -> pd.DataFrame:
    """Mean, std and interval (``interval``: bootstrap, or corrected with ``test_train_ratio``) of a per-split
    ``difference`` column, one row per group of ``by``."""
    by = [c for c in by if c in pairs.columns]
    rows = []
    for key, group in pairs.groupby(by, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        d = group["difference"].to_numpy(float)
        label = "/".join(str(k) for k in (name, *key))
        low, high = _interval(d, interval, test_train_ratio, n_bootstrap, level,
                              seed=int(rng(seed, zlib.crc32(label.encode())).integers(2**31)))
        rows.append({**dict(zip(by, key)), "n_splits": int((~np.isnan(d)).sum()),
                     "difference": float(np.nanmean(d)), "difference_std": float(np.nanstd(d)),
                     "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------ tidy runs of any evaluation (#26)
# the tidy table every evaluation of gigassl evaluate returns (gigassl.evaluation.headtohead): one row per (method,
# draw, metric); two representations pair up on PAIR_KEYS and the draw
RUN_COLUMNS = ("method", "evaluation", "task", "setting", "draw", "metric", "value")
PAIR_KEYS = ("evaluation", "task", "setting", "metric")
# metrics where a lower value is the better one (a loss, an error, a Brier score): the verdict's words follow
LOWER_IS_BETTER = ("brier", "integrated_brier", "ibs", "log_loss", "loss", "error", "mse")
# the interval of each evaluation over its draws: "corrected" where the draws are random splits whose training sets
# overlap (Nadeau & Bengio); the percentile bootstrap where they do not (few-shot training sets of K slides per
# class, held-out centres) or where the draws are queries of one fixed gallery (retrieval)
DRAW_INTERVALS = {"random_splits": "corrected", "patients": "corrected", "survival": "corrected",
                  "few_shot": "bootstrap", "retrieval": "bootstrap", "unseen_centres": "bootstrap"}


def higher_is_better(metric: str) -> bool:
    """False for a metric named in :data:`LOWER_IS_BETTER` (case-insensitive), True for every other (AUC,
    accuracy, concordance, mAP)."""
    return str(metric).lower() not in LOWER_IS_BETTER


def check_runs(table: pd.DataFrame, where: str = "the runs table") -> pd.DataFrame:
    """``table`` if it has the columns :data:`RUN_COLUMNS`; else a ConfigError naming the missing ones."""
    missing = [c for c in RUN_COLUMNS if c not in table.columns]
    if missing:
        raise ConfigError(f"{where} lacks the column(s) {missing}; a runs table has {list(RUN_COLUMNS)} "
                          "(one row per method, draw and metric).")
    return table


def paired_draws(table: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """The values of representations ``a`` and ``b`` side by side on the draws both have.

    ``table``: a runs table (:data:`RUN_COLUMNS`). Returns columns :data:`PAIR_KEYS`, draw, value_a, value_b,
    difference (a - b), and n_train, n_test (means of the two rows) when the table has them.
    """
    check_runs(table)
    missing = [m for m in (a, b) if m not in set(table["method"])]
    if missing:
        raise ConfigError(f"No runs of {missing} to compare; the table has {sorted(set(table['method']))}.")
    keys = [*PAIR_KEYS, "draw"]
    sizes = [c for c in ("n_train", "n_test") if c in table.columns]
    left = table[table["method"] == a][keys + ["value"] + sizes]
    right = table[table["method"] == b][keys + ["value"] + sizes]
    both = left.merge(right, on=keys, how="inner", suffixes=("_a", "_b"))
    for column in sizes:
        both[column] = (both.pop(f"{column}_a").astype(float) + both.pop(f"{column}_b").astype(float)) / 2.0
    return both.assign(difference=both["value_a"].astype(float) - both["value_b"].astype(float))


def paired_runs(table: pd.DataFrame, a: str, b: str, *, intervals: dict | None = None,
                test_train_ratio: float | None = None, n_bootstrap: int = 2000, level: float = 0.95,
                seed: int = 0) -> pd.DataFrame:
    """Representation ``a`` minus ``b``, paired over draws, one row per (evaluation, task, setting, metric).

    Args:
        table: a runs table (:data:`RUN_COLUMNS`) of both representations on identical draws.
        intervals: ``{evaluation: "bootstrap" | "corrected"}`` (default :data:`DRAW_INTERVALS`; an evaluation it
            does not name: the bootstrap).
        test_train_ratio: n_test / n_train for the corrected interval of rows without n_train/n_test columns
            (e.g. test_fraction / (1 - test_fraction)); None: such groups fall back to the bootstrap.

    Columns: PAIR_KEYS, a, b, n_draws, mean_a, mean_b, difference (mean of the per-draw differences),
    difference_std, interval (its words: :data:`VARIANCE_SOURCES`), ci_low, ci_high, higher_is_better, verdict
    (:func:`verdict`'s words; for a lower-is-better metric, ``"<a> better"`` when the interval is below 0).
    Fewer than two draws (retrieval's one gallery, a held-out centre): no interval, ``undecided``.
    """
    intervals = DRAW_INTERVALS if intervals is None else intervals
    pairs = paired_draws(table, a, b)
    rows = []
    for key, group in pairs.groupby(list(PAIR_KEYS), sort=False):
        d = group["difference"].to_numpy(float)
        kind = intervals.get(key[0], "bootstrap")
        ratio = None
        if kind == "corrected":
            if {"n_train", "n_test"} <= set(group.columns) and group["n_train"].notna().any():
                ratio = split_ratio(group)
            elif test_train_ratio is not None:
                ratio = float(test_train_ratio)
            else:
                kind = "bootstrap"
        name = "/".join(str(k) for k in (a, b, *key))
        low, high = _interval(d, kind, ratio, n_bootstrap, level,
                              seed=int(rng(seed, zlib.crc32(name.encode())).integers(2**31)))
        up = higher_is_better(key[3])
        valid = d[~np.isnan(d)]
        rows.append({**dict(zip(PAIR_KEYS, key)), "a": a, "b": b, "n_draws": len(valid),
                     "mean_a": float(np.nanmean(group["value_a"])), "mean_b": float(np.nanmean(group["value_b"])),
                     "difference": float(valid.mean()) if len(valid) else float("nan"),
                     "difference_std": float(valid.std()) if len(valid) else float("nan"),
                     "interval": VARIANCE_SOURCES[kind] if len(valid) > 1 else "none (one draw)",
                     "ci_low": low, "ci_high": high, "higher_is_better": up,
                     "verdict": verdict(low, high, a, b) if up else verdict(-high, -low, a, b)})
    return pd.DataFrame(rows)


def head_to_head(table: pd.DataFrame, methods=None, **kwargs) -> pd.DataFrame:
    """:func:`paired_runs` of every pair of representations (``methods``, default: the table's, in order of first
    appearance; pair (a, b) with a before b), one table."""
    check_runs(table)
    methods = list(dict.fromkeys(table["method"])) if methods is None else list(methods)
    tables = [paired_runs(table, a, b, **kwargs) for i, a in enumerate(methods) for b in methods[i + 1:]]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
