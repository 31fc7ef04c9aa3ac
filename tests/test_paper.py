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


def _summary(gain: float) -> pd.DataFrame:
    rows = []
    for task in paper.TASK_ANALOGUES:
        for budget in ("full", "25p"):
            rows += [{"task": task, "budget": budget, "method": "gigassl", "auc_mean": 0.8 + gain},
                     {"task": task, "budget": budget, "method": "averagemil", "auc_mean": 0.8},
                     {"task": task, "budget": budget, "method": "deepmil", "auc_mean": 0.8 - gain}]
    return pd.DataFrame(rows)


def test_table2_comparison_is_computed_from_the_run():
    better = paper.table2(_summary(0.05))
    assert len(better) == 12 and np.allclose(better.loc[better.comparison.str.contains("AverageMIL"), "run"], 0.05)
    assert (better.loc[better.comparison.str.contains("AverageMIL"), "agreement"].str.startswith("same")).all()
    worse = paper.table2(_summary(-0.05))
    assert (worse.loc[worse.comparison.str.contains("AverageMIL"), "agreement"] == "opposite direction").all()


def test_figure_claims():
    tiles = pd.DataFrame({"tiles_per_view": [2, 5, 20], "task": "nsclc_like", "auc_mean": [0.9, 0.85, 0.8]})
    views = pd.DataFrame({"views": [1, 10, 50], "task": "nsclc_like", "auc_mean": [0.8, 0.84, 0.85]})
    agg = pd.DataFrame({"epoch": [1, 2, 1, 2], "aggregator": ["attention"] * 2 + ["sparseconv"] * 2,
                        "task": "nsclc_like", "auc_mean": [0.8, 0.7, 0.8, 0.85]})
    claims = paper.fig3(tiles, views, agg).set_index("artefact")
    assert claims.loc["Fig. 3A", "agreement"] == "same direction"
    assert claims.loc["Fig. 3B", "run"] == pytest.approx(0.05)
    assert list(claims.loc["Fig. 3C", "agreement"]) == ["same direction", "agrees"]
    gains = pd.DataFrame({"train_size": [20, 40, 80] * 2, "task": ["a"] * 3 + ["b"] * 3,
                          "gain": [0.08, 0.04, 0.01, 0.06, 0.02, 0.0]})
    fig2 = paper.fig2(gains)
    assert fig2["run"].tolist() == pytest.approx([0.03, 0.07, 0.065])


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
