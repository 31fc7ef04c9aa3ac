"""The evaluations page's helpers (gigassl.book.evaluations, issue #26): centres pooled as draws, few-shot curves,
Kaplan-Meier tables, the finding."""

import numpy as np
import pandas as pd
import pytest

from gigassl.book.evaluations import (evaluations_finding, fewshot_curve_table, kaplan_meier_table, pooled_centres,
                                      summary_table)
from gigassl.errors import ManifestError
from gigassl.evaluation.compare import head_to_head


def _centre_runs():
    rows = []
    for method, shift in (("gigassl", 0.1), ("averagemil", 0.0)):
        for i, centre in enumerate(("C0", "C1", "C2", "C3")):
            rows.append({"method": method, "evaluation": "unseen_centres", "task": "t", "setting": f"held_out:{centre}",
                         "draw": 0, "metric": "auroc", "value": 0.6 + 0.05 * i + shift})
            rows.append({"method": method, "evaluation": "unseen_centres", "task": "t", "setting": f"random:{centre}",
                         "draw": 0, "metric": "auroc", "value": 0.7})
    rows.append({"method": "gigassl", "evaluation": "unseen_centres", "task": "t", "setting": "held_out:C9",
                 "draw": 0, "metric": "auroc", "value": float("nan")})  # a skipped centre
    return pd.DataFrame(rows)


def test_held_out_centres_are_paired_over_centres():
    runs = pooled_centres(_centre_runs())
    pooled = runs[runs["setting"] == "held_out:all"]
    assert sorted(pooled["draw"].unique()) == [0, 1, 2, 3]  # the skipped centre is no draw
    assert len(pooled) == 8
    pairs = head_to_head(runs, ["gigassl", "averagemil"], n_bootstrap=200)
    row = pairs[pairs["setting"] == "held_out:all"].iloc[0]
    assert row["n_draws"] == 4 and row["difference"] == pytest.approx(0.1)
    assert row["verdict"] == "gigassl better"  # +0.1 on every centre
    single = pairs[pairs["setting"] == "held_out:C0"].iloc[0]
    assert single["verdict"] == "undecided" and single["n_draws"] == 1  # one centre: never decided
    assert pooled_centres(runs[runs["evaluation"] != "unseen_centres"]).equals(
        runs[runs["evaluation"] != "unseen_centres"])


def test_fewshot_curves_average_the_draws():
    rows = [{"method": m, "evaluation": "few_shot", "task": "t", "setting": f"knn:K={k}", "draw": d,
             "metric": "auroc", "value": k / 100 + d} for m in ("a", "b") for k in (1, 16) for d in (0, 1)]
    rows.append({"method": "a", "evaluation": "few_shot", "task": "t", "setting": "knn:K=1", "draw": 0,
                 "metric": "balanced_accuracy", "value": 9.0})
    curves = fewshot_curve_table(pd.DataFrame(rows))
    row = curves[(curves["method"] == "a") & (curves["K"] == 16)].iloc[0]
    assert row["classifier"] == "knn" and row["mean"] == pytest.approx(0.66) and row["count"] == 2


def test_kaplan_meier_table_pools_groups_and_tests_each_split():
    g = np.random.default_rng(0)
    risks = pd.DataFrame({"method": "m", "draw": np.repeat([0, 1], 40), "group": np.tile([0, 1], 40),
                          "time": g.exponential(10, 80), "event": g.random(80) < 0.7})
    curves, tests = kaplan_meier_table(risks)
    assert set(curves["group"]) == {0, 1} and (np.diff(curves[curves["group"] == 0]["survival"]) <= 0).all()
    assert list(tests["draw"]) == [0, 1] and tests["p_value"].between(0, 1).all()
    empty_curves, empty_tests = kaplan_meier_table(pd.DataFrame())
    assert empty_curves.empty and empty_tests.empty


def test_finding_counts_decided_pairs_and_refuses_a_table_without_the_pair():
    pairs = pd.DataFrame({"a": ["gigassl"] * 3, "b": ["averagemil"] * 3,
                          "verdict": ["gigassl better", "averagemil better", "undecided"]})
    runs = pd.DataFrame({"method": ["gigassl", "averagemil"], "evaluation": "survival", "setting": "harrell",
                         "value": [0.61, 0.58]})
    text = evaluations_finding(pairs, runs)
    assert "1 decided for Giga-SSL, 1 for AverageMIL, 1 undecided" in text and "gigassl 0.610" in text
    with pytest.raises(ManifestError):
        evaluations_finding(pairs.assign(a="x"), runs)


def test_summary_table_one_column_per_method():
    table = summary_table(_centre_runs().dropna())
    assert {"gigassl", "averagemil"} <= set(table.columns)
    assert summary_table(_centre_runs().iloc[0:0]).empty


def test_holm_keeps_a_clear_difference_and_drops_a_marginal_one():
    from gigassl.book.evaluations import holm_pairs

    rows = []
    for d in range(10):
        for method, clear, marginal in (("a", 0.8 + 0.001 * d, 0.6 + (0.02 if d % 2 else -0.005)), ("b", 0.6, 0.6)):
            rows.append({"method": method, "evaluation": "few_shot", "task": "t", "setting": "clear", "draw": d,
                         "metric": "auroc", "value": clear})
            rows.append({"method": method, "evaluation": "few_shot", "task": "t", "setting": "marginal", "draw": d,
                         "metric": "auroc", "value": marginal})
    runs = pd.DataFrame(rows)
    pairs = holm_pairs(runs, head_to_head(runs, ["a", "b"], n_bootstrap=500), test_train_ratio=1 / 3)
    clear, marginal = (pairs[pairs["setting"] == s].iloc[0] for s in ("clear", "marginal"))
    assert clear["corrected_verdict"] == "a better" and clear["p_holm"] < 1e-6
    assert marginal["p_value"] > 0.01 and marginal["corrected_verdict"] == "undecided"
    assert marginal["p_holm"] == pytest.approx(marginal["p_value"])  # Holm: the larger of two p-values times 1


def test_page_labels_merge_the_synthetic_survival_outcome(tmp_path):
    from gigassl.book.evaluations import page_labels
    from gigassl.book.plan import MANIFEST, SURVIVAL

    (tmp_path / SURVIVAL).parent.mkdir(parents=True)
    pd.DataFrame({"slide_id": ["a", "b", "u"], "path": "x", "case_id": ["p", "q", "r"], "center": "C0",
                  "t": ["0", "1", None]}).to_csv(tmp_path / MANIFEST, index=False)  # u: the unlabelled pool
    pd.DataFrame({"slide_id": ["a", "b"], "case_id": ["p", "q"], "time": [3.0, 5.0], "event": [1, 0]}).to_csv(
        tmp_path / SURVIVAL, index=False)
    labels = page_labels(tmp_path)
    assert list(labels["slide_id"]) == ["a", "b"] and list(labels["time"]) == [3.0, 5.0]
    (tmp_path / SURVIVAL).unlink()
    assert "time" not in page_labels(tmp_path).columns
