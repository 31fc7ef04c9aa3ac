"""The comparison with the paper: published numbers and agreement computed from a run's numbers."""

import numpy as np
import pandas as pd
import pytest

from gigassl.book import paper, verdicts
from gigassl.book.figures import markdown, save_figure, save_table


def test_published_tables_are_complete():
    table = paper.published()
    assert set(table["table"]) == {2, 3, 4} and len(table) == 78
    nsclc = table[(table["table"] == 2) & (table["task"] == "NSCLC subtyping") & (table["data_regime"] == "100%")]
    assert nsclc.set_index("method").loc["Giga-SSL", "auc_mean"] == pytest.approx(0.952)


def test_judge_is_the_rule_of_gigassl_verdicts():
    assert paper.judge(0.04, 0.02, 0.01, 0.03)[0] == "same direction, smaller"
    assert paper.judge(0.04, 0.02, -0.01, 0.05)[0] == "undecided"
    assert paper.judge("no decrease", -0.1, -0.2, 0.01)[0] == "undecided"  # an undecided interval never agrees
    assert paper.judge(0.001, 0.1, 0.06, 0.14)[0] == "different"
    assert set(paper.VERDICTS) >= {"consistent", "equivalent", "different", "not testable here"}


def _splits(gain: float, noise: float = 0.0, n: int = 10, deepmil: int | None = None) -> pd.DataFrame:
    """Per-split AUCs: Giga-SSL = AverageMIL + gain = DeepMIL + 2 gain, with split-to-split noise shared by all;
    DeepMIL on the first ``deepmil`` splits only (None: all); 90 training slides at 100%, 22 at 25%, 30 test."""
    g = np.random.default_rng(0)
    rows = []
    for task in paper.TASK_ANALOGUES:
        for budget in ("full", "25p"):
            for k in range(n):
                base = 0.8 + noise * g.normal()
                jitter = noise * g.normal()
                for method, auc in (("gigassl", base + gain + jitter), ("averagemil", base),
                                    ("deepmil", base - gain)):
                    if method == "deepmil" and deepmil is not None and k >= deepmil:
                        continue
                    rows.append({"method": method, "protocol": "paper", "task": task, "budget": budget,
                                 "split": f"split_{k}", "auc": auc, "n_train": 90 if budget == "full" else 22,
                                 "n_test": 30, "cpu_seconds": 5.0 if method == "deepmil" else 0.01})
    return pd.DataFrame(rows)


def test_table2_comparison_is_paired_and_computed_from_the_run():
    better = paper.table2(_splits(0.05))
    assert len(better) == 12 and np.allclose(better.loc[better.comparison.str.contains("AverageMIL"), "run"], 0.05)
    assert (better.loc[better.comparison.str.contains("AverageMIL"), "verdict"].str.startswith("same direction")
            | better.loc[better.comparison.str.contains("AverageMIL"), "verdict"].eq("consistent")).all()
    assert (better.n_splits == 10).all() and (better.ci_low <= better.run).all() and (better.run <= better.ci_high).all()
    worse = paper.table2(_splits(-0.05))
    assert (worse.loc[worse.comparison.str.contains("AverageMIL"), "verdict"] == "opposite").all()
    # a difference drowned in split-to-split noise is undecided
    noisy = paper.table2(_splits(0.002, noise=0.05))
    assert (noisy.loc[noisy.comparison.str.contains("AverageMIL"), "verdict"] == "undecided").sum() >= 4
    counts = paper.verdict_counts(noisy.assign(counted=True))
    assert counts["total"] == 12 and sum(counts[k] for k in verdicts.COUNTS) == 12


def test_table2_pairs_every_method_on_the_same_splits_and_labels_what_ran():
    """DeepMIL on 5 splits: Giga-SSL and AverageMIL are compared over those 5 too; the regime says the training
    size that ran beside the paper's; the interval is the corrected one and says so."""
    from gigassl.evaluation.compare import corrected_interval

    claims = paper.table2(_splits(0.05, noise=0.02, deepmil=5))
    assert (claims["n_splits"] == 5).all()
    assert set(claims["regime"]) == {"90 slides (100%), paper: 100%", "22 slides (25%), paper: 25%"}
    assert claims["variance_sources"].str.contains("Nadeau-Bengio corrected").all()
    assert claims["variance_sources"].str.contains("not: SSL seed, cohort").all()
    row = claims.iloc[0]
    splits = _splits(0.05, noise=0.02, deepmil=5)
    part = splits[(splits.task == row.task) & (splits.budget == "full") & splits.split.isin([f"split_{k}" for k in
                                                                                                range(5)])]
    d = part[part.method == "gigassl"].auc.to_numpy() - part[part.method == "averagemil"].auc.to_numpy()
    assert (row.ci_low, row.ci_high) == pytest.approx(corrected_interval(d, 30 / 90))
    side = paper.side_by_side(pd.DataFrame({"protocol": "paper", "task": "nsclc_like", "budget": "full",
                                            "method": ["gigassl"], "n_splits": [5], "auc_mean": [0.8],
                                            "auc_std": [0.1]}))
    assert side["n_splits"].tolist() == [5]


def test_a_claim_whose_arm_is_at_chance_is_not_counted():
    splits = _splits(0.05, noise=0.02)
    splits.loc[splits.method == "averagemil", "auc"] = 0.5 + 0.02 * np.sin(np.arange((splits.method == "averagemil")
                                                                                      .sum()))
    claims = verdicts.not_testable(paper.table2(splits))
    versus = claims[claims.comparison.str.contains("AverageMIL")]
    assert (versus["verdict"] == verdicts.NOT_TESTABLE).all() and not versus["counted"].any()
    assert versus["at_chance"].eq("averagemil").all() and versus["interval_verdict"].ne(verdicts.NOT_TESTABLE).all()
    assert paper.verdict_counts(claims)["counted"] == 6


def test_figure_claims_are_paired():
    def table(methods: dict, task="nsclc_like"):
        return pd.DataFrame([{"method": m, "protocol": "paper", "task": task, "budget": "full",
                              "split": f"split_{k}", "auc": auc + 0.01 * k} for m, auc in methods.items()
                             for k in range(5)])

    tiles = table({"T2": 0.9, "T5": 0.85, "T20": 0.8})
    views = table({"R1": 0.8, "R10": 0.84, "R50": 0.85})
    agg = table({"attention@1": 0.8, "attention@2": 0.7, "sparseconv@1": 0.8, "sparseconv@2": 0.85})
    claims = paper.fig3(tiles, views, agg, plan_ratio=1 / 3).set_index("artefact")
    assert claims.loc["Fig. 3A", "verdict"] == "same direction"
    assert claims.loc["Fig. 3B", "run"] == pytest.approx(0.05)
    assert list(claims.loc["Fig. 3C", "verdict"]) == ["same direction", "no decrease"]
    with pytest.raises(Exception, match="n_train"):
        paper.fig3(aggregator=agg)  # the monitor has no sizes: the split plan's ratio is needed
    rows = []
    for size, gains in (("20", (0.08, 0.06)), ("40", (0.04, 0.02)), ("80", (0.01, 0.0))):
        for task, gain in zip(("a", "b"), gains):
            for k in range(4):
                rows += [{"method": "gigassl", "protocol": "paper", "task": task, "budget": size, "split": f"split_{k}",
                          "auc": 0.8 + gain + 0.01 * k, "n_train": int(size), "n_test": 30},
                         {"method": "deepmil", "protocol": "paper", "task": task, "budget": size,
                          "split": f"split_{k}", "auc": 0.8 + 0.01 * k, "n_train": int(size), "n_test": 30}]
    fig2 = paper.fig2(pd.DataFrame(rows))
    assert fig2["run"].tolist() == pytest.approx([0.03, 0.07, 0.04])
    assert fig2["regime"].tolist() == ["40 slides, paper: 100 WSI", "20 slides, paper: 50 WSI",
                                       "20 vs 40 slides, paper: 50 vs 100 WSI"]
    assert fig2["variance_sources"].str.contains("n_test/n_train 1.50").iloc[1]


def test_explain_states_the_run_numbers():
    diagnostics = pd.DataFrame([
        {"representation": "ssl_full", "alignment": 0.1, "uniformity": -1.0, "mean_cosine": 0.95,
         "effective_rank": 4.0, "centre_accuracy": 0.9, "centre_chance": 0.125},
        {"representation": "averagemil", "alignment": 0.01, "uniformity": -0.1, "mean_cosine": 0.9,
         "effective_rank": 2.0, "centre_accuracy": 0.5, "centre_chance": 0.125}])
    claims = paper.table2(_splits(0.05))
    text = paper.explain_verdicts(diagnostics, claims, protocol="paper")
    assert "0.950" in text and "0.900" in text and "more organised by centre" in text
    assert "12 of 12 comparisons are decided" in text
    retrieval = pd.DataFrame({"epoch": [0, 10], "top1": [0.009, 0.015], "infonce": [5.9, 5.6], "chance_top1": 1 / 2048,
                              "chance_infonce": 7.62, "gain": [0.0, 0.006], "ci_low": [0.0, 0.002],
                              "ci_high": [0.0, 0.01], "verdict": ["", "trained better"]})
    deepmil = pd.DataFrame({"task": ["a", "b"], "budget": "full", "difference": [-0.2, 0.01], "ci_low": [-0.3, -0.05],
                            "ci_high": [-0.1, 0.06], "verdict": ["averagemil better", "undecided"]})
    text = paper.explain_verdicts(diagnostics, claims, "paper", retrieval=retrieval, deepmil=deepmil)
    assert "0.0150 against 0.0090" in text and "from 5.900 (random init) to 5.600" in text
    assert "learnt invariances its random initialisation lacks" in text and "stays below AverageMIL on a" in text
    behind = retrieval.assign(ci_low=[0.0, -0.001])
    assert "not ahead of a random network" in paper.explain_verdicts(diagnostics, claims, "paper", retrieval=behind)


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
    """Every claim row carries its verdict as one of paper.VERDICTS; the counts read that column, not the words."""
    claims = paper.table2(_splits(0.05))
    assert set(claims["verdict"]) <= set(paper.VERDICTS)
    claims = claims.assign(counted=True)
    words = claims.assign(agreement="anything")  # the counts do not parse the words
    assert paper.verdict_counts(words) == paper.verdict_counts(claims)


def test_speed_is_one_row_with_its_own_probes_time():
    splits = pd.concat([_splits(0.05).assign(protocol=p) for p in ("paper", "fair")], ignore_index=True)
    splits.loc[(splits.protocol == "fair") & (splits.method == "gigassl"), "cpu_seconds"] = 0.1  # the tuned probe
    speed = paper.speed_claim(splits, protocol="fair")
    assert len(speed) == 1 and speed["protocol"].item() == "fair"
    assert speed["run"].item() == pytest.approx(50.0) and speed["paper"].item() == pytest.approx(150 * 60 / 1.25)
    assert speed["verdict"].item() == "same direction, smaller" and speed["scale"].item() == "log ratio"
    assert paper.speed_claim(splits, protocol="paper")["run"].item() == pytest.approx(500.0)


def test_the_seed_benchmark_is_shown_only_when_recorded_with_the_runs_settings(tmp_path):
    """A recorded benchmark of other settings (another tile encoder, other steps) says nothing about this run: the
    page refuses it and says how to regenerate it; the same settings show the spread over cohorts."""
    import json

    from gigassl.book import paper

    csv = tmp_path / "seeds.csv"
    expected = paper.seed_settings("demo", 1800)
    assert expected == paper.seed_settings("demo", 1800) and expected != paper.seed_settings("demo", 900)
    assert expected["digest"] != paper.seed_settings("smoke", 1800)["digest"]
    table, note = paper.seed_spread(csv, expected, tmp_path)
    assert table.empty and "No recorded output" in note
    pd.DataFrame({"seed": [0, 1, 0, 1], "protocol": "fair", "method": ["gigassl"] * 2 + ["averagemil"] * 2,
                  "task": "nsclc_like", "budget": "full", "auc_mean": [0.8, 0.7, 0.75, 0.74],
                  "auc_std": [0.05, 0.06, 0.04, 0.05]}).to_csv(csv, index=False)
    table, note = paper.seed_spread(csv, expected, tmp_path)
    assert table.empty and "no record of its settings" in note and "benchmarks/seeds.py" in note
    csv.with_suffix(".json").write_text(json.dumps({"commit": "abc1234",
                                                    "settings": paper.seed_settings("demo", 900)}))
    table, note = paper.seed_spread(csv, expected, tmp_path)
    assert table.empty and "abc1234" in note and "is not used" in note
    csv.with_suffix(".json").write_text(json.dumps({"commit": "abc1234", "settings": expected}))
    table, note = paper.seed_spread(csv, expected, tmp_path)
    row = table.set_index("method").loc["gigassl"]
    assert row.seeds == 2 and abs(row.auc_mean - 0.75) < 1e-12 and abs(row.std_over_seeds - 0.0707) < 1e-3
    assert "abc1234" in note and "[0, 1]" in note


def test_the_seed_benchmark_is_read_under_the_project_root_not_the_working_directory(tmp_path, monkeypatch):
    """The results page names the recorded CSV relative to the project (``benchmarks/results/seeds.csv``): it is
    read under the root of the run (:func:`gigassl.book.plan.project_root`), whatever the working directory."""
    import json

    from gigassl.book import paper
    from gigassl.book.plan import project_root

    expected = paper.seed_settings("smoke", None)
    for folder, auc in ((tmp_path / "project", 0.8), (tmp_path / "elsewhere", 0.6)):  # the second: a decoy
        (folder / "benchmarks").mkdir(parents=True)
        csv = folder / "benchmarks" / "seeds.csv"
        pd.DataFrame({"seed": [0, 1], "protocol": "fair", "method": "gigassl", "task": "nsclc_like",
                      "budget": "full", "auc_mean": [auc, auc], "auc_std": 0.05}).to_csv(csv, index=False)
        csv.with_suffix(".json").write_text(json.dumps({"commit": "abc1234", "settings": expected}))
    monkeypatch.chdir(tmp_path / "elsewhere")
    root = project_root(tmp_path / "project" / "runs" / "smoke")
    assert root == tmp_path / "project"
    table, _ = paper.seed_spread("benchmarks/seeds.csv", expected, root)
    assert abs(table["auc_mean"].iloc[0] - 0.8) < 1e-12
    table, _ = paper.seed_spread(tmp_path / "elsewhere" / "benchmarks" / "seeds.csv", expected, root)
    assert abs(table["auc_mean"].iloc[0] - 0.6) < 1e-12  # an absolute path is read as it is


def _seed_rows(differences, se, protocol="fair"):
    return pd.DataFrame([{"seed": s, "protocol": protocol, "method": "gigassl - averagemil", "task": task,
                          "budget": "full", "auc_mean": d, "auc_std": 0.1, "se": se, "df": 9}
                         for task, values in differences.items() for s, d in enumerate(values)])


def test_the_cohort_variance_is_the_spread_between_cohorts_beyond_the_split_intervals():
    from gigassl.book import paper

    rows = _seed_rows({"a": [0.0, 0.1, 0.2], "b": [0.3, 0.3, 0.3]}, se=0.05)
    extra, table = paper.seed_variance(rows)
    # a: variance 0.01 between cohorts, 0.0025 held by the splits; b: none between (-0.0025); pooled over 2 x 2 df
    assert table.set_index("task").loc["a", "extra_variance"] == pytest.approx(0.01 - 0.0025)
    assert extra["fair"] == (pytest.approx((0.0075 - 0.0025) / 2), 4)
    assert paper.seed_variance(_seed_rows({"a": [0.1, 0.1, 0.1]}, se=0.05))[0]["fair"][0] == 0.0  # floored
    assert paper.seed_variance(rows.drop(columns="se"))[0] == {}  # an old record without the split errors
    assert paper.seed_variance(None)[0] == {}
    assert "tau 0.050" in paper.seed_extra_sentence(extra)


def test_the_reversal_check_flags_a_comparison_decided_both_ways():
    from gigassl.book import paper

    # task a: clearly above 0 on seeds 0 and 1, clearly below on seed 2 (a reversal on the splits alone);
    # task b: the same sign everywhere
    rows = _seed_rows({"a": [0.2, 0.2, -0.2], "b": [0.1, 0.12, 0.11]}, se=0.01)
    check = paper.reversals(rows)
    assert len(check) == 6 and set(check["seed"]) == {0, 1, 2}
    a = check[check["task"] == "a"]
    assert a["splits_only"].tolist() == ["above 0", "above 0", "below 0"] and a["splits_only_reverses"].all()
    assert not check[check["task"] == "b"]["splits_only_reverses"].any()
    # seed 2's widening comes from seeds 0 and 1 only: task a agrees there, b spreads by 0.014
    assert check[check["seed"] == 2]["tau"].iloc[0] == pytest.approx(np.sqrt(max(0.0, (0.0 - 1e-4 + 2e-4 - 1e-4) / 2)))
