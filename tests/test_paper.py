"""The comparison with the paper: published numbers and agreement computed from a run's numbers."""

import numpy as np
import pandas as pd
import pytest

from gigassl import paper
from gigassl.figures import markdown, save_figure, save_table


def test_published_tables_are_complete():
    table = paper.published()
    assert set(table["table"]) == {2, 3, 4} and len(table) == 78
    nsclc = table[(table["table"] == 2) & (table["task"] == "NSCLC subtyping") & (table["data_regime"] == "100%")]
    assert nsclc.set_index("method").loc["Giga-SSL", "auc_mean"] == pytest.approx(0.952)


def test_agreement_reads_direction_and_size():
    assert paper.agreement(0.04, 0.02) == "same direction (0.5x the paper's effect)"
    assert paper.agreement(0.04, -0.02) == "opposite direction"
    assert paper.agreement(0.04, 0.001) == "run: no difference"
    assert paper.agreement(0.04, float("nan")) == "no run number"
    assert paper.direction("decrease", -0.1) == "same direction"
    assert paper.direction("no decrease", -0.1).startswith("disagrees")


def test_agreement_uses_only_decided_verdicts():
    assert paper.agreement(0.04, 0.02, -0.01, 0.05) == "undecided"
    assert paper.agreement(0.04, 0.02, 0.01, 0.03) == "same direction (0.5x the paper's effect)"
    assert paper.agreement(0.04, -0.02, -0.03, -0.01) == "opposite direction"
    assert paper.agreement(0.04, 0.001, 0.0005, 0.002).startswith("same direction")  # decided, however small
    assert paper.direction("decrease", -0.1, -0.2, 0.01) == "undecided"
    assert paper.direction("no decrease", -0.1, -0.2, 0.01) == "agrees"
    assert paper.direction("no decrease", -0.1, -0.2, -0.01).startswith("disagrees")


def _splits(gain: float, noise: float = 0.0, n: int = 10) -> pd.DataFrame:
    """Per-split AUCs: Giga-SSL = AverageMIL + gain = DeepMIL + 2 gain, with split-to-split noise shared by all."""
    g = np.random.default_rng(0)
    rows = []
    for task in paper.TASK_ANALOGUES:
        for budget in ("full", "25p"):
            for k in range(n):
                base = 0.8 + noise * g.normal()
                jitter = noise * g.normal()
                for method, auc in (("gigassl", base + gain + jitter), ("averagemil", base),
                                    ("deepmil", base - gain)):
                    rows.append({"method": method, "protocol": "paper", "task": task, "budget": budget,
                                 "split": f"split_{k}", "auc": auc})
    return pd.DataFrame(rows)


def test_table2_comparison_is_paired_and_computed_from_the_run():
    better = paper.table2(_splits(0.05), n_bootstrap=200)
    assert len(better) == 12 and np.allclose(better.loc[better.comparison.str.contains("AverageMIL"), "run"], 0.05)
    assert (better.loc[better.comparison.str.contains("AverageMIL"), "agreement"].str.startswith("same")).all()
    assert (better.n_splits == 10).all() and (better.ci_low <= better.run).all() and (better.run <= better.ci_high).all()
    worse = paper.table2(_splits(-0.05), n_bootstrap=200)
    assert (worse.loc[worse.comparison.str.contains("AverageMIL"), "agreement"] == "opposite direction").all()
    # a difference drowned in split-to-split noise is undecided
    noisy = paper.table2(_splits(0.002, noise=0.05), n_bootstrap=500)
    assert (noisy.loc[noisy.comparison.str.contains("AverageMIL"), "agreement"] == "undecided").sum() >= 4
    counts = paper.verdict_counts(noisy)
    assert counts["total"] == 12 and counts["agree"] + counts["disagree"] + counts["undecided"] == 12


def test_figure_claims_are_paired():
    def table(methods: dict, task="nsclc_like"):
        return pd.DataFrame([{"method": m, "protocol": "paper", "task": task, "budget": "full",
                              "split": f"split_{k}", "auc": auc + 0.01 * k} for m, auc in methods.items()
                             for k in range(5)])

    tiles = table({"T2": 0.9, "T5": 0.85, "T20": 0.8})
    views = table({"R1": 0.8, "R10": 0.84, "R50": 0.85})
    agg = table({"attention@1": 0.8, "attention@2": 0.7, "sparseconv@1": 0.8, "sparseconv@2": 0.85})
    claims = paper.fig3(tiles, views, agg, n_bootstrap=200).set_index("artefact")
    assert claims.loc["Fig. 3A", "agreement"] == "same direction"
    assert claims.loc["Fig. 3B", "run"] == pytest.approx(0.05)
    assert list(claims.loc["Fig. 3C", "agreement"]) == ["same direction", "agrees"]
    rows = []
    for size, gains in (("20", (0.08, 0.06)), ("40", (0.04, 0.02)), ("80", (0.01, 0.0))):
        for task, gain in zip(("a", "b"), gains):
            for k in range(4):
                rows += [{"method": "gigassl", "protocol": "paper", "task": task, "budget": size, "split": f"split_{k}",
                          "auc": 0.8 + gain}, {"method": "deepmil", "protocol": "paper", "task": task, "budget": size,
                                               "split": f"split_{k}", "auc": 0.8}]
    fig2 = paper.fig2(pd.DataFrame(rows), n_bootstrap=200)
    assert fig2["run"].tolist() == pytest.approx([0.03, 0.07, 0.04])


def test_explain_states_the_run_numbers():
    diagnostics = pd.DataFrame([
        {"representation": "ssl_full", "alignment": 0.1, "uniformity": -1.0, "mean_cosine": 0.95,
         "effective_rank": 4.0, "centre_accuracy": 0.9, "centre_chance": 0.125},
        {"representation": "averagemil", "alignment": 0.01, "uniformity": -0.1, "mean_cosine": 0.9,
         "effective_rank": 2.0, "centre_accuracy": 0.5, "centre_chance": 0.125}])
    claims = paper.table2(_splits(0.05), n_bootstrap=100)
    text = paper.explain(diagnostics, claims, protocol="paper")
    assert "0.950" in text and "0.900" in text and "more organised by centre" in text
    assert "12 of 12 comparisons are decided" in text
    retrieval = pd.DataFrame({"epoch": [0, 10], "top1": [0.009, 0.015], "infonce": [5.9, 5.6], "chance_top1": 1 / 2048,
                              "chance_infonce": 7.62, "gain": [0.0, 0.006], "ci_low": [0.0, 0.002],
                              "ci_high": [0.0, 0.01], "verdict": ["", "trained better"]})
    deepmil = pd.DataFrame({"task": ["a", "b"], "budget": "full", "difference": [-0.2, 0.01], "ci_low": [-0.3, -0.05],
                            "ci_high": [-0.1, 0.06], "verdict": ["averagemil better", "undecided"]})
    text = paper.explain(diagnostics, claims, "paper", retrieval=retrieval, deepmil=deepmil)
    assert "0.0150 against 0.0090" in text and "from 5.900 (random init) to 5.600" in text
    assert "learnt invariances its random initialisation lacks" in text and "stays below AverageMIL on a" in text
    behind = retrieval.assign(ci_low=[0.0, -0.001])
    assert "not ahead of a random network" in paper.explain(diagnostics, claims, "paper", retrieval=behind)


def test_tables_and_figures_are_written(tmp_path):
    import matplotlib.pyplot as plt

    frame = pd.DataFrame({"a": [1.23456], "b": ["x"]})
    save_table(frame, "t", tmp_path)
    assert pd.read_csv(tmp_path / "t.csv").equals(frame) and "1.235" in (tmp_path / "t.md").read_text()
    assert markdown(frame).startswith("|")
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    save_figure(fig, "f", tmp_path)
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"


def test_the_verdict_is_data_beside_the_words():
    """Every claim row carries its verdict as one of paper.VERDICTS, from the same judgement as its words; the counts
    read that column, not the words."""
    assert paper.judge(0.04, 0.02, 0.01, 0.03) == ("agree", "same direction (0.5x the paper's effect)")
    assert paper.judge(0.04, -0.02, -0.03, -0.01) == ("disagree", "opposite direction")
    assert paper.judge(0.04, 0.02, -0.01, 0.05) == ("undecided", "undecided")
    assert paper.judge("no decrease", -0.1, -0.2, -0.01)[0] == "disagree"
    assert paper.judge(0.001, 0.03)[0] == "other"
    claims = paper.table2(_splits(0.05), n_bootstrap=200)
    assert set(claims["verdict"]) <= set(paper.VERDICTS)
    words = claims.assign(agreement="anything")  # the counts do not parse the words
    assert paper.verdict_counts(words) == paper.verdict_counts(claims)
    speed = paper.speed_claim(pd.DataFrame({"method": ["deepmil"], "x linear probe": [30.0]}))
    assert (speed["paper"] == 150 * 60 / 1.25).all() and (speed["verdict"] == "agree").all()
