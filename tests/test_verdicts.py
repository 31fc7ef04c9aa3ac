"""The verdict rule of the results page (gigassl.book.verdicts): one test per case, the p-values against the intervals,
Holm's correction against a direct computation."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import t

from gigassl.book import verdicts as v
from gigassl.evaluation.compare import t_interval

M = v.EQUIVALENCE_MARGIN


@pytest.mark.parametrize("paper, run, low, high, expected", [
    (0.04, 0.04, 0.01, 0.07, "consistent"),              # decided, the paper's value inside
    (0.04, 0.015, 0.01, 0.02, "same direction, smaller"),  # decided, the paper's value beyond the far end
    (0.04, 0.10, 0.08, 0.12, "same direction, larger"),   # decided, the paper's value before the near end
    (-0.04, -0.015, -0.02, -0.01, "same direction, smaller"),
    (-0.04, -0.10, -0.12, -0.08, "same direction, larger"),
    (0.04, -0.02, -0.03, -0.01, "opposite"),
    (0.04, 0.04, -0.01, 0.09, "undecided"),               # contains the paper's value AND 0: never agrees
    (0.04, float("nan"), float("nan"), float("nan"), "no run number"),
])
def test_a_numeric_claim(paper, run, low, high, expected):
    assert v.judge(paper, run, low, high)[0] == expected


@pytest.mark.parametrize("run, low, high, expected", [
    (0.001, -0.01, 0.012, "equivalent"),     # inside +-margin
    (0.005, 0.001, 0.015, "equivalent"),     # differs from 0, but by less than the margin
    (0.089, 0.054, 0.125, "different"),      # the nsclc_like Giga-SSL - DeepMIL, fair
    (-0.06, -0.09, -0.03, "different"),
    (0.0, -0.03, 0.03, "undecided"),         # contains 0 and reaches past the margin
    (0.02, 0.005, 0.035, "different"),       # a decided difference, though it reaches inside the margin
])
def test_a_claim_of_no_difference_is_an_equivalence_test(run, low, high, expected):
    assert v.kind(0.004) == "no difference" and v.kind(0.017) == "numeric"
    assert v.judge(0.004, run, low, high)[0] == expected


def test_a_decided_difference_where_the_paper_claims_none_is_different():
    verdict, words = v.judge(0.0, 0.138, 0.087, 0.200)
    assert verdict == "different" and v.CATEGORY[verdict] == "disagree" and "+0.138" in words


@pytest.mark.parametrize("claim, low, high, expected", [
    ("increase", 0.01, 0.05, "same direction"), ("increase", -0.05, -0.01, "opposite"),
    ("increase", -0.01, 0.05, "undecided"), ("decrease", -0.05, -0.01, "same direction"),
    ("decrease", 0.01, 0.05, "opposite"), ("decrease", -0.05, 0.01, "undecided"),
    ("no decrease", -0.01, 0.03, "no decrease"),      # equivalence-or-increase: low above -margin
    ("no decrease", 0.05, 0.10, "no decrease"),
    ("no decrease", -0.10, -0.03, "decrease"),        # decided below -margin
    ("no decrease", -0.10, 0.01, "undecided"),        # the Fig. 3C sparseconv: never agrees
    ("no decrease", -0.04, -0.01, "decrease"),        # a decided decrease
    ("no decrease", -0.04, 0.01, "undecided"),
])
def test_a_direction_claim_is_decided_only_by_a_decided_interval(claim, low, high, expected):
    assert v.judge(claim, (low + high) / 2, low, high)[0] == expected
    with pytest.raises(Exception, match="one of"):
        v.judge("grows", 0.1, 0.0, 0.2)


def test_an_undecided_interval_never_agrees():
    """Over a grid of intervals containing 0, every claim kind gives a verdict that is not an agreement."""
    for low in np.linspace(-0.3, 0.0, 7):
        for high in np.linspace(0.0, 0.3, 7):
            for paper in (0.04, -0.04, 0.0, 0.3, "increase", "decrease"):
                verdict = v.judge(paper, (low + high) / 2, low, high)[0]
                assert v.CATEGORY[verdict] != "agree" or (paper == 0.0 and -M < low and high < M)
            if low <= -M:
                assert v.judge("no decrease", (low + high) / 2, low, high)[0] != "no decrease"


def _claims(**columns):
    base = {"artefact": "Table 2", "paper": 0.04, "paper_claim": "+0.040", "agreement": "x", "scale": "AUC difference"}
    return pd.DataFrame([{**base, **row} for row in pd.DataFrame(columns).to_dict("records")])


def test_a_claim_against_an_arm_at_chance_or_collapsed_is_not_counted():
    assert v.at_chance({"a": (0.52, 0.45, 0.59), "b": (0.8, 0.7, 0.9)}) == ["a"]
    claims = _claims(verdict=["opposite", "consistent", "consistent", "no run number"], at_chance=["a", "", "", ""],
                     arm_names=["a;b", "gigassl;averagemil", "attention@9;attention@1", ""],
                     p_value=[0.01, 0.01, 0.01, np.nan])
    diagnostics = pd.DataFrame({"representation": ["ssl_attention", "ssl_full"], "effective_rank": [3.2, 14.3]})
    run_of = {"attention@9": "ssl_attention", "gigassl": "ssl_full"}
    marked = v.not_testable(claims, diagnostics, lambda artefact, arm: run_of.get(arm))
    assert list(marked["verdict"]) == [v.NOT_TESTABLE, "consistent", v.NOT_TESTABLE, "no run number"]
    assert list(marked["counted"]) == [False, True, False, False]
    assert "a at chance" in marked["agreement"][0] and "effective rank 3.2 < 5" in marked["agreement"][2]
    assert "opposite" in marked["agreement"][0]  # what the interval says stays shown
    counts = v.counts(marked)
    assert counts["agree"] == 1 and counts["disagree"] == 0 and counts["counted"] == 1
    assert counts[v.NOT_TESTABLE] == 2 and counts["total"] == 4


@pytest.mark.parametrize("paper, bounds", [(0.04, (0.0,)), ("increase", (0.0,)), (0.0, (M, -M, 0.0)),
                                           ("no decrease", (-M, 0.0))])
def test_the_p_value_is_the_level_at_which_the_interval_decides(paper, bounds):
    """decided at 95% <=> p <= 0.05, for each claim kind; and the interval at level 1 - p touches the boundary."""
    for run in (-0.08, -0.03, -0.01, 0.0, 0.01, 0.03, 0.08):
        se, df = 0.012, 9
        p = v.decision_p(paper, run, se, df)
        low, high = t_interval(run, se, df, 0.95)
        decided = v.judge(paper, run, low, high)[0] != "undecided"
        assert decided == (p <= 0.05), (paper, run, p)
        if 1e-9 < p < 1:
            low, high = t_interval(run, se, df, 1 - p)
            assert min(abs(end - b) for b in bounds for end in (low, high)) < 1e-9  # the interval touches a boundary


def test_holm_against_a_direct_computation():
    p = np.array([0.01, 0.04, 0.03, 0.005, np.nan])
    # sorted 0.005, 0.01, 0.03, 0.04 (m = 4): 4*0.005 = 0.02, 3*0.01 = 0.03, 2*0.03 = 0.06, 1*0.04 = 0.04 -> 0.06
    assert v.holm(p)[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02]) and np.isnan(v.holm(p)[4])
    assert v.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_the_corrected_verdicts_follow_holm():
    se, df = 0.01, 9
    runs = [0.05, 0.024, 0.045, 0.023]  # p-values about 0.0003, 0.040, 0.0008, 0.047: all decided at 95%
    claims = _claims(run=runs, se=se, df=df, verdict=[v.judge(0.04, r, *t_interval(r, se, df))[0] for r in runs],
                     p_value=[v.decision_p(0.04, r, se, df) for r in runs], counted=True)
    out = v.correct(claims)
    assert list(out["verdict"]) == ["consistent"] * 4
    assert out["p_holm"].tolist() == pytest.approx(v.holm(claims["p_value"]).tolist())
    # Holm: 4 p1 and 3 p3 below 0.05, 2 p2 = 0.08 above: p2 and p4 are not rejected
    assert list(out["corrected_verdict"]) == ["consistent", "undecided", "consistent", "undecided"]
    # the smallest p is judged at level 1 - 0.05/4
    k = int(np.argmin(claims["p_value"]))
    half = t.ppf(1 - 0.05 / 8, df) * se
    assert out["corrected_high"][k] - out["corrected_low"][k] == pytest.approx(2 * half)
    untestable = v.correct(claims.assign(counted=[False, True, True, True], verdict=[v.NOT_TESTABLE, "x", "y", "z"]))
    assert untestable["corrected_verdict"][0] == v.NOT_TESTABLE and np.isnan(untestable["p_holm"][0])


def test_the_page_states_the_rule_with_its_thresholds():
    text = v.rule_markdown()
    for said in ("+-0.02 AUC", "contains 0.5", "below 5", "Nadeau & Bengio", "Holm", "not counted", "counted once"):
        assert said in text, said


def _row(run, se, df, protocol="fair", paper=0.05, scale="AUC difference"):
    from gigassl.book.paper import claim_row

    row = claim_row("Table 2", "a - b", "t", "100%", paper, run, se, df, protocol, df + 1, ratio=0.25)
    return {**row, "scale": scale}


def test_the_cohort_variance_widens_every_difference_and_says_so():
    claims = pd.DataFrame([_row(0.06, 0.02, 9), _row(0.06, 0.02, 9, protocol="paper"),
                           _row(0.06, 0.02, 9, paper=0.0)])
    assert claims["verdict"].tolist() == ["consistent", "consistent", "different"]  # the splits alone decide
    tau2, df_tau = 0.03 ** 2, 12
    out = v.inflate(claims, {"fair": (tau2, df_tau)})
    fair = out.iloc[0]
    assert fair["se"] == pytest.approx(np.sqrt(0.02 ** 2 + tau2))
    expected_df = int((0.02 ** 2 + tau2) ** 2 / (0.02 ** 4 / 9 + tau2 ** 2 / df_tau))  # Welch-Satterthwaite
    assert fair["df"] == expected_df
    assert (fair["ci_low"], fair["ci_high"]) == pytest.approx(t_interval(0.06, fair["se"], expected_df))
    assert fair["verdict"] == "undecided" and fair["verdict_splits"] == "consistent"  # no longer decided
    assert fair["p_value"] > claims.iloc[0]["p_value"]
    assert "cohort and training seeds (tau 0.030, 12 df" in fair["variance_sources"]
    assert "not: SSL seed" not in fair["variance_sources"]
    # a protocol without an estimate keeps its split interval, and says so
    paper_row = out.iloc[1]
    assert paper_row["ci_low"] == claims.iloc[1]["ci_low"] and "no matching cohort benchmark" in \
        paper_row["variance_sources"]
    # a claim of no difference is judged again too: decided on the splits, undecided with the cohort
    assert out.iloc[2]["verdict"] == "undecided" and out.iloc[2]["verdict_splits"] == "different"
    # a zero extra variance changes nothing but the sources
    same = v.inflate(claims, {"fair": (0.0, 12)})
    assert same.iloc[0]["ci_low"] == pytest.approx(claims.iloc[0]["ci_low"]) and same.iloc[0]["df"] == 9


def test_the_speed_row_and_rows_without_a_standard_error_keep_their_interval():
    claims = pd.DataFrame([_row(50.0, float("nan"), 0, scale="log ratio"), _row(float("nan"), float("nan"), 0)])
    out = v.inflate(claims, {"fair": (0.01, 10)})
    pd.testing.assert_series_equal(out["ci_low"], claims["ci_low"], check_names=False)
    assert out["verdict"].tolist() == claims["verdict"].tolist()
