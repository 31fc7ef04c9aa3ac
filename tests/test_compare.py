"""Paired comparisons over splits: pairing, intervals, verdicts."""

import numpy as np
import pandas as pd
import pytest

from gigassl.evaluation.compare import paired, paired_interval, per_split, verdict
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


def test_corrected_interval_against_a_direct_computation():
    """Nadeau & Bengio (2003): mean +- t_{J-1, 0.975} sqrt((1/J + n_test/n_train) s^2), s^2 with ddof 1."""
    from scipy.stats import t

    from gigassl.evaluation.compare import corrected_interval, corrected_t

    d = np.array([0.03, -0.01, 0.05, 0.02, 0.00, 0.04, 0.01, 0.06, -0.02, 0.03])
    J, n_test, n_train = len(d), 30, 90
    mean = sum(d) / J
    s2 = sum((x - mean) ** 2 for x in d) / (J - 1)
    half = t.ppf(0.975, J - 1) * (s2 * (1 / J + n_test / n_train)) ** 0.5
    low, high = corrected_interval(d, n_test / n_train)
    assert (low, high) == pytest.approx((mean - half, mean + half))
    assert corrected_t(d, 1 / 3)[2] == J - 1
    naive = t.ppf(0.975, J - 1) * (s2 / J) ** 0.5  # the uncorrected t-interval is narrower
    assert high - low > 2 * naive
    assert all(np.isnan(corrected_interval([0.1], 0.3)))
    with pytest.raises(ConfigError, match="n_test / n_train"):
        corrected_interval(d, 0.0)


def test_paired_offers_the_corrected_interval_from_the_splits_sizes():
    from gigassl.evaluation.compare import VARIANCE_SOURCES, corrected_interval, split_ratio

    frame = table(0.03, noise=0.1).assign(n_train=90, n_test=30)
    result = paired(frame, "a", "b", interval="corrected").iloc[0]
    d = per_split(frame, "a", "b")["difference"]
    assert (result.ci_low, result.ci_high) == pytest.approx(corrected_interval(d, 30 / 90))
    assert split_ratio(frame) == pytest.approx(1 / 3) and split_ratio(table(0, 0.1), default=0.5) == 0.5
    assert set(VARIANCE_SOURCES) == {"bootstrap", "corrected"}
    with pytest.raises(ConfigError, match="n_train"):
        split_ratio(table(0, 0.1))
    with pytest.raises(ConfigError, match="one of"):
        paired(frame, "a", "b", interval="jackknife")


def test_common_splits_keeps_the_splits_every_method_has():
    from gigassl.evaluation.compare import common_splits

    frame = pd.concat([table(0.05, 0.01), table(0.05, 0.01).query("method == 'b'").assign(method="c")])
    frame = frame[~((frame.method == "c") & frame.split.isin(["split_5", "split_6"]))]
    kept = common_splits(frame)
    assert kept.groupby("method")["split"].nunique().to_dict() == {"a": 8, "b": 8, "c": 8}
