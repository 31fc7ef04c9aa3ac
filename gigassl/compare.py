"""Paired comparisons of two methods on the same splits, with an interval and a verdict (Sec. 4.3).

Every comparison of the book is paired: both methods are evaluated on the very same train/test splits (the split
plan is keyed by the probe seed, so every method of a run sees the same splits), the per-split AUC differences are
formed, and their mean is reported with a percentile bootstrap interval over splits (resampling splits, seeded).
The verdict is ``"<a> better"`` or ``"<b> better"`` when the interval excludes 0, else ``"undecided"``.

The interval is over splits of one cohort. Repeated random splits share slides (their test sets overlap), so it
is a lower bound on the uncertainty of a claim about the method; the cohort-to-cohort spread is measured by
``benchmarks/seeds.py`` (BENCHMARKS.md).
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from .errors import ConfigError
from .utils import rng

UNDECIDED = "undecided"


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

    ``table``: the tidy table of :func:`gigassl.protocol.evaluate` (columns method, split, auc and ``by``).
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
           level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Method ``a`` minus method ``b``, paired over splits, one row per group of ``by``.

    Columns: ``by``, a, b, n_splits, auc_a, auc_b (means), difference (mean of the per-split differences),
    difference_std (their std over splits), ci_low, ci_high (bootstrap interval of the mean), verdict.
    """
    pairs = per_split(table, a, b, by)
    by = [c for c in by if c in pairs.columns]
    rows = []
    groups = pairs.groupby(by, sort=False) if by else [((), pairs)]
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        d = group["difference"].to_numpy(float)
        name = "/".join(str(k) for k in (a, b, *key))
        low, high = paired_interval(d, n_bootstrap, level, seed=int(rng(seed, zlib.crc32(name.encode())).integers(2**31)))
        valid = d[~np.isnan(d)]
        rows.append({**dict(zip(by, key)), "a": a, "b": b, "n_splits": len(valid),
                     "auc_a": float(np.nanmean(group["auc_a"])), "auc_b": float(np.nanmean(group["auc_b"])),
                     "difference": float(valid.mean()) if len(valid) else float("nan"),
                     "difference_std": float(valid.std()) if len(valid) else float("nan"),
                     "ci_low": low, "ci_high": high, "verdict": verdict(low, high, a, b)})
    return pd.DataFrame(rows)


def summarize_pairs(pairs: pd.DataFrame, by=("protocol", "budget"), n_bootstrap: int = 2000, level: float = 0.95,
                    seed: int = 0, name: str = "") -> pd.DataFrame:
    """Mean, std and bootstrap interval of a per-split ``difference`` column, one row per group of ``by``."""
    by = [c for c in by if c in pairs.columns]
    rows = []
    for key, group in pairs.groupby(by, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        d = group["difference"].to_numpy(float)
        label = "/".join(str(k) for k in (name, *key))
        low, high = paired_interval(d, n_bootstrap, level, seed=int(rng(seed, zlib.crc32(label.encode())).integers(2**31)))
        rows.append({**dict(zip(by, key)), "n_splits": int((~np.isnan(d)).sum()),
                     "difference": float(np.nanmean(d)), "difference_std": float(np.nanstd(d)),
                     "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows)
