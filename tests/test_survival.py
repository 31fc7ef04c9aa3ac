"""Tests of gigassl.evaluation.survival: concordances against direct pairwise loops, Kaplan-Meier and the log-rank
test against hand and textbook values, the Cox probe's invariances, and the runs table's identical splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gigassl.errors import ConfigError, ManifestError
from gigassl.evaluation.survival import (CoxProbe, harrell_c, kaplan_meier, load_survival, logrank, risk_groups,
                                         surv, survival_risks, survival_runs, survival_splits, uno_c)


def _harrell_loop(time, event, risk) -> float:
    """Harrell's C by definition: pairs (i, j) with time_i < time_j and an event at i; risk_i > risk_j concordant,
    equal risks one half."""
    num = den = 0.0
    for i in range(len(time)):
        for j in range(len(time)):
            if event[i] and time[i] < time[j]:
                den += 1
                num += 1.0 if risk[i] > risk[j] else 0.5 if risk[i] == risk[j] else 0.0
    return num / den


def _censoring_km(time, event, t) -> float:
    """P(C > t): the Kaplan-Meier estimate of the censoring distribution (censorings are its events)."""
    s = 1.0
    for u in np.unique(time[(~event) & (time <= t)]):
        s *= 1.0 - np.sum((time == u) & ~event) / np.sum(time >= u)
    return s


def _uno_loop(train_time, train_event, time, event, risk, tau) -> float:
    """Uno's C by definition: Harrell's pairs with time_i < tau, weighted by 1 / G(time_i)^2."""
    num = den = 0.0
    for i in range(len(time)):
        if not event[i] or time[i] >= tau:
            continue
        w = _censoring_km(train_time, train_event, time[i]) ** -2
        for j in range(len(time)):
            if time[i] < time[j]:
                den += w
                num += w * (1.0 if risk[i] > risk[j] else 0.5 if risk[i] == risk[j] else 0.0)
    return num / den


def _survival_data(n=60, seed=0):
    g = np.random.default_rng(seed)
    time = g.exponential(1.0, n)  # continuous: no tied times
    event = g.random(n) < 0.7
    risk = np.round(g.normal(size=n), 1)  # rounded: tied risks
    return time, event, risk


def test_harrell_c_equals_the_pairwise_definition():
    time, event, risk = _survival_data()
    assert harrell_c(time, event, risk) == pytest.approx(_harrell_loop(time, event, risk), abs=1e-12)
    assert harrell_c(time, event, -time) == pytest.approx(1.0)  # the true order
    assert np.isnan(harrell_c([1.0, 2.0], [False, False], [0.1, 0.2]))  # no comparable pair


def test_uno_c_equals_the_ipcw_definition_and_harrell_without_censoring():
    train_time, train_event, _ = _survival_data(80, seed=1)
    time, event, risk = _survival_data(50, seed=2)
    time = np.minimum(time, 0.95 * train_time.max())  # inside the training follow-up
    for tau in (None, float(np.median(train_time))):
        expected = _uno_loop(train_time, train_event, time, event, risk,
                             train_time.max() if tau is None else tau)
        assert uno_c(train_time, train_event, time, event, risk, tau=tau) == pytest.approx(expected, abs=1e-10)
    # no censored training slide: every weight is 1 and Uno's C is Harrell's
    everyone = np.ones_like(train_event)
    assert uno_c(train_time, everyone, time, event, risk) == pytest.approx(harrell_c(time, event, risk), abs=1e-12)


def test_kaplan_meier_matches_a_hand_computation():
    times, survival = kaplan_meier([1, 2, 2, 3, 4], [1, 1, 0, 1, 0])
    np.testing.assert_array_equal(times, [1, 2, 3, 4])
    # 4/5; x 3/4 (one event among the four at risk at 2); x 1/2 (two at risk at 3); a censoring at 4
    np.testing.assert_allclose(survival, [0.8, 0.6, 0.3, 0.3])


def test_logrank_gives_the_textbook_value_of_the_leukaemia_trial():
    # Freireich et al. 1963 (Gehan 1965): remission times in weeks, 6-MP vs placebo; log-rank chi2 16.79, p 4.2e-5
    mp = [6, 6, 6, 6, 7, 9, 10, 10, 11, 13, 16, 17, 19, 20, 22, 23, 25, 32, 32, 34, 35]
    mp_event = [1, 1, 1, 0, 1, 0, 1, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0]
    placebo = [1, 1, 2, 2, 3, 4, 4, 5, 5, 8, 8, 8, 8, 11, 11, 12, 12, 15, 17, 22, 23]
    p = logrank(mp + placebo, mp_event + [1] * 21, [0] * 21 + [1] * 21)
    assert p == pytest.approx(4.17e-5, rel=0.01)
    assert np.isnan(logrank([1, 2], [1, 1], [0, 0]))


def test_logrank_equals_the_direct_two_group_statistic():
    from scipy.stats import chi2

    time, event, _ = _survival_data(70, seed=3)
    group = np.random.default_rng(4).integers(0, 2, 70)
    o = e = v = 0.0
    for t in np.unique(time[event]):
        at_risk, d = time >= t, (time == t) & event
        n, n1, dt = at_risk.sum(), (at_risk & (group == 1)).sum(), d.sum()
        o += (d & (group == 1)).sum()
        e += dt * n1 / n
        v += dt * (n1 / n) * (1 - n1 / n) * (n - dt) / max(n - 1, 1)
    assert logrank(time, event, group) == pytest.approx(chi2.sf((o - e) ** 2 / v, 1), rel=1e-8)


def test_risk_groups_cut_at_the_training_median_and_follow_the_order_only():
    g = np.random.default_rng(0)
    train, test = g.normal(size=101), g.normal(size=40)
    groups = risk_groups(train, test)
    np.testing.assert_array_equal(groups, (test >= np.median(train)).astype(int))
    np.testing.assert_array_equal(risk_groups(np.exp(train), np.exp(test)), groups)  # a monotone transform
    assert set(risk_groups(train, test, n_groups=3)) == {0, 1, 2}
    with pytest.raises(ConfigError, match="n_groups must be >= 2; got 1"):
        risk_groups(train, test, n_groups=1)


# ------------------------------------------------------------------------------------------------- the probe
def _cohort(n_cases=90, dim=24, seed=0, signal=1.5):
    """Two slides a case; the case's log hazard is ``signal`` times a factor that feature 0 carries (with noise)."""
    g = np.random.default_rng(seed)
    z = g.normal(size=n_cases)
    event_time = g.exponential(np.exp(-signal * z))
    censor_time = g.exponential(2.0, n_cases)
    case = np.repeat(np.arange(n_cases), 2)
    X = g.normal(size=(2 * n_cases, dim))
    X[:, 0] += 2.0 * z[case]
    labels = pd.DataFrame({"slide_id": [f"S{i:03d}" for i in range(2 * n_cases)],
                           "case_id": [f"P{c:03d}" for c in case],
                           "time": np.minimum(event_time, censor_time)[case],
                           "event": (event_time <= censor_time)[case].astype(int)})
    return X, labels


def test_cox_probe_finds_the_hazard_feature_and_ranks_held_out_slides():
    X, labels = _cohort(n_cases=150)
    train, test = slice(0, 200), slice(200, 300)
    probe = CoxProbe().fit(X[train], surv(labels.time[train], labels.event[train]), groups=labels.case_id[train])
    assert np.argmax(np.abs(probe.coef_)) == 0 and probe.coef_[0] > 0  # higher factor, higher risk
    assert probe.alpha_ in probe.alphas_ and np.nanargmax(probe.cv_scores_) == list(probe.alphas_).index(probe.alpha_)
    assert probe.score(X[test], surv(labels.time[test], labels.event[test])) > 0.65


def test_cox_probe_is_invariant_to_feature_units():
    # standardised on its training rows: rescaling and shifting each feature changes nothing
    X, labels = _cohort()
    y = surv(labels.time, labels.event)
    scale, shift = np.geomspace(1e-3, 1e3, X.shape[1]), np.linspace(-50, 50, X.shape[1])
    a = CoxProbe().fit(X, y, groups=labels.case_id)
    b = CoxProbe().fit(X * scale + shift, y, groups=labels.case_id)
    assert a.alpha_ == pytest.approx(b.alpha_, rel=1e-9)
    np.testing.assert_allclose(a.predict(X), b.predict(X * scale + shift), rtol=1e-4, atol=1e-6)


def test_cox_probe_inner_folds_keep_cases_together():
    _, labels = _cohort(n_cases=40)
    folds = CoxProbe(inner_splits=3)._folds(labels.event.to_numpy().astype(bool), labels.case_id.to_numpy())
    assert len(folds) == 3
    for train, test in folds:
        assert not set(labels.case_id.iloc[train]) & set(labels.case_id.iloc[test])


def test_cox_probe_refuses_too_few_events_and_a_bad_mix():
    X, labels = _cohort(n_cases=10)
    with pytest.raises(ValueError, match="at least 2 observed events"):
        CoxProbe().fit(X, surv(labels.time, np.r_[1, np.zeros(19)]))
    with pytest.raises(ConfigError, match="l1_ratio must be in \\(0, 1\\]; got 0"):
        CoxProbe(l1_ratio=0).fit(X, surv(labels.time, labels.event))


# -------------------------------------------------------------------------------------------------- the runs
def test_survival_runs_table_and_identical_splits_for_every_representation():
    X, labels = _cohort(n_cases=60, dim=12)
    ids = list(labels.slide_id)
    noise = np.random.default_rng(9).normal(size=X.shape)
    kw = dict(n_splits=3, seed=1)
    both = survival_runs({"signal": (ids, X), "noise": (ids, noise)}, labels, task="os", **kw)
    assert list(both.columns[:7]) == ["method", "evaluation", "task", "setting", "draw", "metric", "value"]
    assert len(both) == 2 * 3 * 2 and set(both.evaluation) == {"survival"} and set(both.metric) == {"c_index"}
    assert set(both.setting) == {"harrell", "uno"} and set(both.task) == {"os"}
    by = both.set_index(["method", "setting", "draw"])
    np.testing.assert_array_equal(by.loc["signal"][["n_train", "n_test"]], by.loc["noise"][["n_train", "n_test"]])
    # a representation's rows do not depend on the others, nor on the order of its rows
    order = np.random.default_rng(2).permutation(len(ids))
    alone = survival_runs({"signal": ([ids[i] for i in order], X[order])}, labels, task="os", **kw)
    np.testing.assert_allclose(alone.value, both[both.method == "signal"].value, rtol=1e-6)
    means = both.groupby(["method", "setting"]).value.mean()
    assert means["signal", "harrell"] > means["noise", "harrell"] + 0.1


def test_survival_splits_are_grouped_by_case_and_drawn_from_the_labels_only():
    _, labels = _cohort(n_cases=50)
    table = load_survival(labels)
    splits = survival_splits(table, 4, 0.25, seed=0)
    case_of = dict(zip(table.slide_id, table.case_id))
    for split in splits:
        assert not {case_of[s] for s in split.train_ids} & {case_of[s] for s in split.test_ids}
        assert len(split.test_ids) == pytest.approx(25, abs=4)
    assert [s.test_ids for s in splits] == [s.test_ids for s in survival_splits(table, 4, 0.25, seed=0)]
    assert [s.test_ids for s in splits] != [s.test_ids for s in survival_splits(table, 4, 0.25, seed=1)]


def test_survival_risks_follow_the_runs_splits_and_groups():
    X, labels = _cohort(n_cases=60, dim=12)
    risks = survival_risks(list(labels.slide_id), X, labels, n_splits=2, seed=1)
    splits = survival_splits(load_survival(labels), 2, 0.25, seed=1)
    for draw, frame in risks.groupby("draw"):
        assert list(frame.slide_id) == list(splits[draw].test_ids)
        assert set(frame.group) == {0, 1}
        assert frame[frame.group == 1].risk.min() >= frame[frame.group == 0].risk.max()
        assert logrank(frame.time, frame.event, frame.group) < 0.05  # the signal separates the curves


def test_a_representation_missing_labelled_slides_is_named():
    X, labels = _cohort(n_cases=20, dim=4)
    ids = list(labels.slide_id)
    with pytest.raises(ManifestError, match=r"absent from the embeddings of 'partial' \(2: 'S000', 'S001'\)"):
        survival_runs({"partial": (ids[2:], X[2:])}, labels, n_splits=1)


@pytest.mark.parametrize("column, values, message", [
    ("time", [-1.0, 2.0, 3.0, 4.0], "not a finite time >= 0 for slide\\(s\\) 1: 'a'"),
    ("event", [2, 1, 1, 0], "holds \\['2'\\]; allowed: 1 \\(event observed\\) or 0"),
    ("event", [0, 0, 1, 0], "1 event\\(s\\) among 4 slides"),
])
def test_load_survival_refuses_bad_values_naming_them(column, values, message):
    frame = pd.DataFrame({"slide_id": list("abcd"), "time": [1.0, 2.0, 3.0, 4.0], "event": [1, 1, 0, 1]})
    frame[column] = values
    with pytest.raises(ManifestError, match=message):
        load_survival(frame)


def test_load_survival_reads_named_columns_and_drops_unlabelled_rows(tmp_path):
    path = tmp_path / "s.csv"
    pd.DataFrame({"slide_id": ["a", "b", "c", "U1"], "case_id": ["p", "p", "q", None],
                  "os_months": [3.0, 3.0, 7.5, None], "dead": [True, True, False, None]}).to_csv(path, index=False)
    table = load_survival(path, time="os_months", event="dead")
    assert table.to_dict("list") == {"slide_id": ["a", "b", "c"], "case_id": ["p", "p", "q"],
                                     "time": [3.0, 3.0, 7.5], "event": [1, 1, 0]}
    with pytest.raises(ManifestError, match="has no column 'time'.*--time COLUMN --event COLUMN"):
        load_survival(path)


def test_logrank_is_nan_where_the_test_is_undefined():
    from gigassl.evaluation.survival import logrank

    # group 0 leaves the risk set before the first event: the statistic's variance is singular
    assert np.isnan(logrank([1, 2, 3, 4], [0, 0, 1, 1], [0, 0, 1, 1]))
    assert np.isnan(logrank([1, 2, 3, 4], [0, 0, 0, 0], [0, 1, 0, 1]))  # no event
    assert 0 < logrank([1, 2, 3, 4, 5, 6], [1, 1, 1, 1, 0, 1], [0, 1, 0, 1, 0, 1]) <= 1
