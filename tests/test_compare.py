"""Paired comparisons over splits: pairing, intervals, verdicts."""

import numpy as np
import pandas as pd
import pytest

from gigassl.compare import paired, paired_interval, per_split, verdict
from gigassl.errors import ConfigError


def table(diff, noise, n=10, seed=0):
    g = np.random.default_rng(seed)
    base = 0.7 + noise * g.normal(size=n)
    rows = [{"method": "a", "protocol": "paper", "task": "t", "budget": "full", "split": f"split_{k}",
             "auc": base[k] + diff + 0.2 * noise * g.normal()} for k in range(n)]
    rows += [{"method": "b", "protocol": "paper", "task": "t", "budget": "full", "split": f"split_{k}",
              "auc": base[k]} for k in range(n)]
    return pd.DataFrame(rows)


def test_pairing_removes_the_shared_split_effect():
    frame = table(0.03, noise=0.1)
    result = paired(frame, "a", "b", n_bootstrap=1000).iloc[0]
    # unpaired, the split-to-split noise (0.1) would swamp a 0.03 difference; paired, it cancels
    assert result.verdict == "a better" and result.ci_low > 0 and result.n_splits == 10
    assert result.difference == pytest.approx(frame[frame.method == "a"].auc.mean() - frame[frame.method == "b"].auc.mean())


def test_undecided_when_the_interval_contains_zero():
    result = paired(table(0.0, noise=0.1, seed=3), "a", "b", n_bootstrap=1000).iloc[0]
    assert result.ci_low < 0 < result.ci_high and result.verdict == "undecided"
    assert verdict(-0.02, -0.01, "x", "y") == "y better" and verdict(float("nan"), 1.0) == "undecided"


def test_only_common_splits_are_paired():
    frame = table(0.05, 0.01)
    frame = frame[~((frame.method == "b") & frame.split.isin(["split_8", "split_9"]))]
    assert len(per_split(frame, "a", "b")) == 8
    with pytest.raises(ConfigError, match="ghost"):
        paired(frame, "a", "ghost")


def test_interval_is_seeded_and_needs_two_values():
    d = np.random.default_rng(0).normal(size=10)
    assert paired_interval(d, 500, seed=1) == paired_interval(d, 500, seed=1)
    assert all(np.isnan(paired_interval([0.1], 500)))
