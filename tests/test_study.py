"""The study runner of issue #24 (gigassl.book.study, gigassl.book.study_analysis): the expansion of the design,
resumption by cell hash, the analysis (Holm across all the comparisons; an interval holding 0 never a win), and one
tiny cell end to end through the commands' functions."""

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from gigassl.book import study, study_analysis
from gigassl.book.verdicts import holm

TINY = {"cohort": {"n_train": 16, "n_test": 16, "tiles_per_slide": 48, "focal_tiles": 4},
        "train": {"steps": 2, "batch_size": 8}, "embed": {"views": 4},
        "deepmil": {"max_steps": 6, "eval_every": 2, "patience": 4, "min_steps": 0, "batch_size": 4}}


def tiny_design(tmp_path, **book):
    design, _ = study.read_design()
    design["book_grid"] = {"cells": ["M1"], "generator_seeds": [0], "ssl_seeds": [0], "pools": {"M1": [0]},
                           "methods": ["oracle", "averagemil"], **book}
    path = tmp_path / "design.yml"
    path.write_text(yaml.safe_dump(design))
    return path


def test_the_full_grid_expands_to_the_designs_runs_and_trainings():
    design, _ = study.read_design()
    runs = study.expand(study.grid_of(design, "full"))
    # per (cell, generator seed): oracle, AverageMIL, DeepMIL once; 2 untrained arms + the T=16 control x 2 SSL
    # seeds; gigassl and gigassl_local x pools x 2 SSL seeds (3 pools for M1 and M3, 1 for the 4 others)
    assert len(runs) == 3 * (2 * (3 + 6 + 2 * 3 * 2) + 4 * (3 + 6 + 2 * 1 * 2)) == 282
    trainings = [r for r in runs if r.method in study.ARMS and study.ARMS[r.method][2]]
    assert len(trainings) == 108 + 48  # the design's count: main grid and pool curves
    assert len(set(runs)) == len(runs)
    assert {r.pool for r in runs if r.cell == "M3" and r.method == "gigassl"} == {0, 200, 1000}
    assert {r.pool for r in runs if r.method == "random_aggregator"} == {0}


def test_the_book_grid_is_the_files_book_grid():
    design, _ = study.read_design()
    runs = study.expand(study.grid_of(design, "book"))
    book = design["book_grid"]
    assert {r.cell for r in runs} == set(book["cells"]) and {r.generator_seed for r in runs} == {0}
    assert sorted(r.method for r in runs) == sorted(book["methods"])
    assert all(r.ssl_seed in (-1, 0) for r in runs)
    with pytest.raises(Exception, match="full, book or sensitivity"):
        study.grid_of(design, "half")


def record_cells(monkeypatch) -> list:
    """Replace study.run_cell by a fake that records each (cell, generator seed) it is called for (the list
    returned) and gives 4 oracle scores."""
    calls = []

    def fake_cell(design, grid, cell, g, work, scale=None, keep=False, progress=None, readings=None):
        calls.append((cell["name"], g))
        return pd.DataFrame([{**dict(zip(study.COLUMNS, [cell["name"], cell["mechanism"], g, 0, "oracle", -1])),
                              "slide_id": f"test_{i:05d}", "label": i % 2, "score": float(i)} for i in range(4)])

    monkeypatch.setattr(study, "run_cell", fake_cell)
    return calls


def test_a_finished_cell_is_not_rerun_and_a_changed_hash_reruns(tmp_path, monkeypatch):
    calls = record_cells(monkeypatch)
    design = tiny_design(tmp_path, cells=["M1", "M3"], pools={"M1": [0], "M3": [0]})
    first = study.run_study(tmp_path / "out", design, "book", progress=None)
    assert calls == [("M1", 0), ("M3", 0)] and len(first) == 8
    again = study.run_study(tmp_path / "out", design, "book", progress=None)
    assert calls == [("M1", 0), ("M3", 0)]  # both kept
    pd.testing.assert_frame_equal(again, first, check_dtype=False)
    study.run_study(tmp_path / "out", design, "book", scale={"cohort": {"n_test": 40}}, progress=None)
    assert calls[2:] == [("M1", 0), ("M3", 0)]  # another cohort: another hash, rerun
    (tmp_path / "out" / "cells" / "M3_g0.csv").unlink()
    study.run_study(tmp_path / "out", design, "book", scale={"cohort": {"n_test": 40}}, progress=None)
    assert calls[4:] == [("M3", 0)]  # a missing result reruns that cell only


def test_shards_split_the_units_without_overlap_seed_first(tmp_path, monkeypatch):
    calls = record_cells(monkeypatch)
    design = tiny_design(tmp_path, cells=["M1", "M3"], generator_seeds=[0, 1], pools={"M1": [0], "M3": [0]})
    grid = study.grid_of(study.read_design(design)[0], "book")
    assert [(c["name"], g) for c, g in study.units(grid)] == [("M1", 0), ("M3", 0), ("M1", 1), ("M3", 1)]
    first = study.run_study(tmp_path / "out", design, "book", progress=None, shard=(0, 2))
    assert calls == [("M1", 0), ("M1", 1)] and set(first.cell) == {"M1"}
    nothing = study.run_study(tmp_path / "out", design, "book", progress=None, run=False)
    assert calls == [("M1", 0), ("M1", 1)] and len(nothing) == 8  # run=False: the finished units, nothing run
    both = study.run_study(tmp_path / "out", design, "book", progress=None, shard=(1, 2))
    assert calls[2:] == [("M3", 0), ("M3", 1)] and len(both) == 16  # the other half; every finished unit returned


def test_a_cell_stopped_midway_resumes_at_its_first_unfinished_run(tmp_path, monkeypatch):
    path = tiny_design(tmp_path, methods=["oracle", "averagemil"])
    design = study.read_design(path)[0]
    grid = study.grid_of(design, "book")
    cell = grid["cells"][0]
    first = study.run_cell(design, grid, cell, 0, tmp_path / "work", TINY, keep=True)
    assert sorted(p.name for p in (tmp_path / "work" / "runs").iterdir()) == ["averagemil_p0_s-1.csv",
                                                                           "oracle_p0_s-1.csv"]
    (tmp_path / "work" / "runs" / "averagemil_p0_s-1.csv").unlink()  # as if stopped after the oracle's run
    probed = []
    real = study.probe_scores
    monkeypatch.setattr(study, "probe_scores", lambda *a: probed.append(1) or real(*a))
    said = []
    again = study.run_cell(design, grid, cell, 0, tmp_path / "work", TINY, progress=said.append)
    assert len(probed) == 1  # only AverageMIL ran again
    assert len(said) == 1 and said[0].startswith("  M1_g0: averagemil, pool 0, SSL seed -1: ")
    assert said[0].endswith("(2 of 2 runs done)")
    pd.testing.assert_frame_equal(again, first, check_dtype=False)
    assert not (tmp_path / "work").exists()


def fake_scores(seed=0):
    """Two generator seeds x (oracle; gigassl with two SSL seeds) on 60 test slides each."""
    g = np.random.default_rng(seed)
    rows = []
    for gen in (0, 1):
        label = np.arange(60) % 2
        for method, ssl_seeds, shift in (("oracle", [-1], 1.5), ("gigassl", [0, 1], 0.3)):
            for s in ssl_seeds:
                score = g.normal(size=60) + shift * label
                rows += [{"cell": "M1", "mechanism": "M1", "generator_seed": gen, "pool": 0, "method": method,
                          "ssl_seed": s, "slide_id": f"test_{i:05d}", "label": label[i], "score": score[i]}
                         for i in range(60)]
    return pd.DataFrame(rows)


def test_the_cells_auc_is_the_mean_over_seeds_and_its_interval_holds_it():
    scores = fake_scores()
    table, draws = study_analysis.bootstrap_aucs(scores, n_bootstrap=300)
    for method in ("oracle", "gigassl"):
        arm = scores[scores.method == method]
        direct = np.mean([np.mean([roc_auc_score(r.label, r.score) for _, r in by_g.groupby("ssl_seed")])
                          for _, by_g in arm.groupby("generator_seed")])
        row = table.set_index("method").loc[method]
        assert row.auc == pytest.approx(direct, abs=1e-9)
        assert row.low < row.auc < row.high and draws[("M1", 0, method)].shape == (300,)
    assert table.set_index("method").n_runs.to_dict() == {"oracle": 2, "gigassl": 4}
    # the seed interval: a t-interval over the two generator seeds' AUCs (SSL seeds averaged inside each)
    from scipy.stats import t

    arm = scores[scores.method == "gigassl"]
    per_g = [np.mean([roc_auc_score(r.label, r.score) for _, r in by_g.groupby("ssl_seed")])
             for _, by_g in arm.groupby("generator_seed")]
    half = t.ppf(0.975, 1) * np.std(per_g, ddof=1) / np.sqrt(2)
    row = table.set_index("method").loc["gigassl"]
    assert (row.seed_low, row.seed_high) == pytest.approx((np.mean(per_g) - half, np.mean(per_g) + half))
    pairs = study_analysis.comparisons(table, draws, pairs=[("gigassl", "oracle")],
                                       seeds=study_analysis.seed_points(scores))
    oracle = [roc_auc_score(r.label, r.score) for _, r in scores[scores.method == "oracle"].groupby("generator_seed")]
    d = np.subtract(per_g, oracle)
    half = t.ppf(0.975, 1) * np.std(d, ddof=1) / np.sqrt(2)
    assert (pairs.seed_low[0], pairs.seed_high[0]) == pytest.approx((d.mean() - half, d.mean() + half))
    # seeds_agree: only for a decided verdict, True when the seed interval excludes 0 on its side too
    assert pairs.verdict[0] == "worse" and pairs.seeds_agree[0] == bool(pairs.seed_high[0] < 0)
    assert np.isnan(study_analysis.seed_interval([0.7])[0])


def fake_comparisons(p_side: dict):
    """A table and draws whose comparisons have known one-sided tail fractions (the differences' draws)."""
    table_rows, draws = [], {}
    for cell, methods in p_side.items():
        for method, values in methods.items():
            draws[(cell, 0, method)] = np.asarray(values, float)
            table_rows.append({"cell": cell, "pool": 0, "method": method, "auc": float(np.mean(values))})
    return pd.DataFrame(table_rows), draws


def test_holm_runs_across_every_comparison_of_every_cell_and_an_undecided_interval_is_never_better():
    b = 999
    base = np.zeros(b)
    # gigassl - averagemil: k of the 999 draws at or below 0 -> p = 2 (k + 1) / 1000
    def above(k, size=0.05):
        d = np.full(b, size)
        d[:k] = -0.01
        return d
    table, draws = fake_comparisons({
        "A": {"averagemil": base, "gigassl": above(0)},    # p 0.002: better, also after Holm (x 3)
        "B": {"averagemil": base, "gigassl": above(14)},   # p 0.03, interval above 0: better alone, not after Holm
        "C": {"averagemil": base, "gigassl": above(19)},   # p 0.04, interval above 0: the same
    })
    pairs = study_analysis.comparisons(table, draws, pairs=[("gigassl", "averagemil")])
    assert pairs.p.round(6).tolist() == [0.002, 0.03, 0.04]
    assert (pairs.low > 0).all()
    np.testing.assert_allclose(pairs.p_holm, holm(pairs.p.to_numpy()))
    np.testing.assert_allclose(pairs.p_holm, [0.006, 0.06, 0.06])  # one family across the three cells
    assert pairs.verdict.tolist() == ["better", "undecided", "undecided"]
    # each cell alone (a family of one, as a per-cell correction would make it): all three "better"
    alone = [study_analysis.comparisons(table[table.cell == c], draws, pairs=[("gigassl", "averagemil")]).verdict[0]
             for c in "ABC"]
    assert alone == ["better"] * 3
    # an interval that holds 0 is never a win, whatever the p-value; a Holm p at or above 0.05 never decides
    assert study_analysis.cell_verdict(0.05, 0.01, 0.09, 0.02) == "better"
    assert study_analysis.cell_verdict(0.05, -0.01, 0.09, 0.001) == "undecided"
    assert study_analysis.cell_verdict(-0.05, -0.09, -0.01, 0.001) == "worse"
    assert study_analysis.cell_verdict(-0.05, -0.09, 0.01, 0.001) == "undecided"
    assert study_analysis.cell_verdict(0.05, 0.01, 0.09, 0.05) == "undecided"


def test_one_tiny_cell_end_to_end_through_the_commands(tmp_path):
    design = tiny_design(tmp_path, methods=["oracle", "averagemil", "gigassl", "random_aggregator"])
    scores = study.run_study(tmp_path / "out", design, "book", scale=TINY, progress=None)
    assert set(scores.method) == {"oracle", "averagemil", "gigassl", "random_aggregator"}
    assert scores.groupby("method").size().eq(16).all() and np.isfinite(scores.score).all()
    assert not (tmp_path / "out" / "work").exists() or not any((tmp_path / "out" / "work").iterdir())
    # each run with an embedding has its reading; AverageMIL's embedding is the mean itself (CKA 1)
    readings = study.read_readings(tmp_path / "out", design, "book").set_index("method")
    assert sorted(readings.index) == ["averagemil", "gigassl", "random_aggregator"]
    assert readings.loc["averagemil", "cka_mean"] == pytest.approx(1.0)
    assert readings.cka_mean.between(0, 1 + 1e-9).all() and (readings.effective_rank >= 1).all()
    assert np.isfinite(readings.statistic_r2).all()
    table, draws = study_analysis.bootstrap_aucs(scores, n_bootstrap=200)
    assert table.auc.between(0, 1).all() and len(table) == 4
    pairs = study_analysis.comparisons(table, draws)
    assert {(r.method, r.against) for r in pairs.itertuples()} == {("gigassl", "averagemil"),
                                                                   ("random_aggregator", "averagemil"),
                                                                   ("gigassl", "random_aggregator")}
    words = study_analysis.predictions_table(study.read_design(design)[0], table, pairs)
    assert words.cell.tolist() == ["M1"] and "AverageMIL" in words.outcome[0] and "diffuse" not in words.outcome[0]
    assert words.prediction[0].startswith("AverageMIL wins")


def test_the_pages_figures_draw_the_pool_curves_only_when_an_arm_ran_at_several_pools():
    import matplotlib

    matplotlib.use("Agg")
    from gigassl.book import study_page

    table = pd.DataFrame([{"cell": "M1", "mechanism": "M1", "pool": p, "method": m, "auc": a, "low": a - 0.05,
                           "high": a + 0.05} for m, p, a in (("averagemil", 0, 0.8), ("gigassl", 0, 0.6),
                                                            ("gigassl", 200, 0.65), ("gigassl", 1000, 0.7))])
    assert study_page.study_pool_curves(table) is not None
    assert study_page.study_pool_curves(table[(table.method != "gigassl") | (table.pool == 1000)]) is None
    fig = study_page.regime_map(table)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["AverageMIL", "Giga-SSL"]
    # the map shows each method at its main pool: Giga-SSL's point is the pool-1000 AUC
    assert study_analysis.main_pool(table, "M1", "gigassl") == 1000


def test_the_implications_quote_this_runs_cells_and_say_which_are_missing():
    from gigassl.book import study_page

    table = pd.DataFrame([{"cell": "M3", "mechanism": "M3", "pool": p, "method": m, "auc": a, "low": a - 0.04,
                           "high": a + 0.04} for m, p, a in (("oracle", 0, 0.87), ("averagemil", 0, 0.52),
                                                            ("gigassl", 1000, 0.476))])
    pairs = pd.DataFrame([{"cell": "M3", "method": "gigassl", "against": "averagemil", "difference": -0.044,
                           "low": -0.085, "high": -0.001, "p": 0.046, "p_holm": 0.092, "verdict": "undecided"}])
    page = study_page.MechanismsPage("", "", "book", pd.DataFrame(), table, pairs, pd.DataFrame(), None)
    text = page.implications()
    assert "in M3: the oracle 0.870 [0.830, 0.910], AverageMIL 0.520" in text
    assert "Giga-SSL 0.476 [0.436, 0.516]; Giga-SSL minus AverageMIL -0.044, undecided after Holm" in text
    assert "M1 is not in this grid" in text and "M2-10 is not in this grid" in text
    # the paper's Table 2 gains are computed from the published table, not written in
    assert "+0.009 to" in text or "over 6 task-regime pairs" in text or "task-regime pairs" in text


def test_the_sensitivity_grid_varies_one_factor_of_the_named_cells():
    design, _ = study.read_design()
    spec = design["sensitivity"]["center_shift"]
    grid = study.grid_of(design, "sensitivity")
    assert [c["name"] for c in grid["cells"]] == [f"{n}+center_shift" for n in spec["cells"]]
    runs = study.expand(grid)
    assert {r.method for r in runs} == set(spec["methods"]) and {r.pool for r in runs if r.method == "gigassl"} == {
        spec["pool"]}
    assert {r.generator_seed for r in runs} == set(spec["generator_seeds"])
    assert {r.ssl_seed for r in runs if r.method == "gigassl"} == set(spec["ssl_seeds"])
    full = {c["name"]: c for c in study.grid_of(design, "full")["cells"]}
    for cell in grid["cells"]:
        base = study.base_cell(cell["name"])
        varied = dataclasses_asdict(study.cohort_config(design, cell, 1, spec["pool"]))
        plain = dataclasses_asdict(study.cohort_config(design, full[base], 1, spec["pool"]))
        assert {k for k in varied if varied[k] != plain[k]} == {"center_shift"}  # the one factor named
        assert varied["center_shift"] == spec["value"] and plain["center_shift"] == 0
    assert study.base_cell("M1") == "M1"
    with pytest.raises(Exception, match="one factor"):
        study.grid_of({**design, "sensitivity": {"center_shift": spec, "tile_noise": spec}}, "sensitivity")
    assert study.grid_of({**design, "sensitivity": None}, "sensitivity")["cells"] == []


def dataclasses_asdict(config):
    import dataclasses

    return dataclasses.asdict(config)


def test_a_factors_effect_is_paired_on_the_same_slides_and_is_its_own_holm_family():
    main = fake_scores(0)
    main = main.assign(score=lambda t: t.score + 2.0 * t.label * (t.method == "gigassl"))  # AUC about 0.9
    main = pd.concat([main, main[main.method == "gigassl"].assign(method="averagemil", score=lambda t: -t.score)])
    keep = main[(main.ssl_seed.isin([-1, 0]))]
    same = keep.assign(cell="M1+center_shift")  # the factor changed nothing: every difference exactly 0
    table, effects = study_analysis.factor_effects(main, same, n_bootstrap=200)
    assert set(table.cell) == {"M1", "M1+center_shift"}
    factor = effects[effects.kind == "factor"]
    assert sorted(factor.method) == ["averagemil", "gigassl", "oracle"]
    assert (factor.difference == 0).all() and (factor.low == 0).all() and (factor.verdict == "undecided").all()
    # the base arm is the same runs only: SSL seed 0 of gigassl, not the mean over both SSL seeds
    only0 = table[(table.cell == "M1") & (table.method == "gigassl")].n_runs.iloc[0]
    assert only0 == 2  # two generator seeds x SSL seed 0
    # a factor that destroys the signal: gigassl's scores replaced by noise -> lower, decided
    g = np.random.default_rng(1)
    broken = same.assign(score=lambda t: np.where(t.method == "gigassl", g.normal(size=len(t)), t.score))
    _, effects = study_analysis.factor_effects(main, broken, n_bootstrap=400)
    row = effects[(effects.kind == "factor") & (effects.method == "gigassl")].iloc[0]
    assert row.difference < -0.25 and row.high < 0 and row.verdict == "worse"
    inside = effects[effects.kind == "method"]
    assert inside[["method", "against"]].values.tolist() == [["gigassl", "averagemil"]]
    np.testing.assert_allclose(effects.p_holm, holm(effects.p.to_numpy()))  # factor and method rows: one family
    # a varied run on other test slides than its base run is refused, naming the run
    moved = same.assign(slide_id=lambda t: t.slide_id.str.replace("test_", "other_"))
    with pytest.raises(ValueError, match="same test slides and labels"):
        study_analysis.factor_effects(main, moved, n_bootstrap=50)


def test_a_centre_shift_cohort_has_its_base_cells_slides_labels_and_centres(tmp_path):
    from gigassl.cohorts.featsim import simulate

    design, _ = study.read_design()
    grid = study.grid_of(design, "sensitivity")
    small = {"n_train": 8, "n_test": 8, "tiles_per_slide": 32}
    cell = grid["cells"][0]
    base = {c["name"]: c for c in design["cells"]}[study.base_cell(cell["name"])]
    tables = [pd.read_csv(simulate(tmp_path / name, study.cohort_config(design, c, 0, 0, small), progress=False))
              for name, c in (("base", base), ("varied", cell))]
    columns = ["slide_id", "split", "true_label", "oracle"]
    pd.testing.assert_frame_equal(tables[0][columns], tables[1][columns])
    features = [sorted((tmp_path / name / "features_featsim").glob("*.h5")) for name in ("base", "varied")]
    import h5py

    with h5py.File(features[0][0]) as a, h5py.File(features[1][0]) as b:
        assert a["features"].shape == b["features"].shape and not np.allclose(a["features"][:], b["features"][:])
        np.testing.assert_array_equal(a["coords"][:], b["coords"][:])


def test_the_page_speaks_of_the_full_grid_once_a_whole_grid_of_this_design_is_recorded(tmp_path):
    import json

    from gigassl.book import study_page

    def table(cell, gigassl):
        return [{"cell": cell, "mechanism": cell[:2], "pool": p, "method": m, "auc": a, "low": a - 0.03,
                 "high": a + 0.03, "seed_sd": 0.01, "n_runs": 6}
                for m, p, a in (("oracle", 0, 0.85), ("averagemil", 0, 0.6), ("gigassl", 1000, gigassl))]

    full = pd.DataFrame(table("M1", 0.55) + table("M3", 0.7))
    pairs = pd.DataFrame([{"cell": c, "method": "gigassl", "against": "averagemil", "difference": d,
                           "low": d - 0.02, "high": d + 0.02, "p": 0.001, "p_holm": 0.004, "verdict": v}
                          for c, d, v in (("M1", -0.05, "worse"), ("M3", 0.1, "better"))])
    folder = tmp_path / "results"
    folder.mkdir()
    full.to_csv(folder / "study.csv", index=False)
    pairs.to_csv(folder / "study_pairs.csv", index=False)
    record = {"design_sha256": "abc", "complete": True, "dry_run": False,
              "units": {"M1_g0": {"commit": "0123456789", "machine": "x86_64, 2 CPU cores"}}}
    for changed, usable in (({}, True), ({"complete": False}, False), ({"dry_run": True}, False)):
        (folder / "study.json").write_text(json.dumps({**record, **changed}))
        assert (study_page.read_recorded(folder) is not None) is usable
    (folder / "study.json").write_text(json.dumps(record))
    recorded = study_page.read_recorded(folder)
    assert recorded.sensitivity is None and "commit(s) 0123456" in recorded.source()
    book = pd.DataFrame(table("M3", 0.65))
    book_pairs = pairs[pairs.cell == "M3"].assign(verdict="undecided")
    design, _ = study.read_design()
    page = study_page.MechanismsPage("", "", "book", pd.DataFrame({"generator_seed": [0]}), book, book_pairs,
                                     study_analysis.predictions_table(design, full, pairs), recorded)
    pd.testing.assert_frame_equal(page.map_tables()[0], full)
    assert "loses in M1" in page.finding() and "beats AverageMIL in M3" in page.finding()
    assert "undecided (Holm" in page.finding()  # the book's own M3 run, said apart
    words = page.paragraphs()
    assert words.startswith("On the full grid") and "**M1**" in words and "**M3**" in words
    text = page.implications()
    assert "does not beat the mean of tiles in M1 (-0.050, worse after Holm)" in text
    assert "Giga-SSL minus AverageMIL +0.100, better after Holm" in text and "M4 is not in this grid" in text
    assert "not recorded" in page.sensitivity()
    checks = {"M1": [{"claim": "Giga-SSL ties or loses against AverageMIL", "kind": "not_better", "method": "gigassl",
                      "against": "averagemil"}],
              "M3": [{"claim": "Giga-SSL beats AverageMIL", "kind": "better", "method": "gigassl",
                      "against": "averagemil"}, {"claim": "DeepMIL above chance", "kind": "above_chance",
                                                 "method": "deepmil"}]}
    checked = dataclasses_replace(page, checks=study_analysis.check_predictions(checks, full, pairs))
    assert checked.checks.outcome.tolist() == ["held", "held", "not run"]
    assert checked.finding().startswith("On the full grid (2 cells")  # the full grid leads the page
    assert "The predictions' checks, on the full grid: 2 held, 0 failed, 0 undecided, 1 not run." in checked.finding()
    assert checked.checks_summary().startswith("Of the 3 checks of the predictions on the full grid")
    # without a recorded grid the words are the book's run's, and say so
    alone = dataclasses_replace(page, recorded=None)
    assert "the book's grid" in alone.map_tables()[2] and "M1 is not in this map" in alone.implications()


def dataclasses_replace(page, **changes):
    import dataclasses

    return dataclasses.replace(page, **changes)


def test_each_check_can_hold_fail_or_stay_undecided_and_undecided_is_never_held():
    m = 0.02
    out = study_analysis.check_outcome
    assert [out("better", lo, hi, v, m) for lo, hi, v in ((0.01, 0.05, "better"), (-0.03, 0.01, "undecided"),
                                                         (-0.01, 0.04, "undecided"))] == ["held", "failed",
                                                                                          "undecided"]
    assert [out("worse", lo, hi, v, m) for lo, hi, v in ((-0.05, -0.01, "worse"), (-0.01, 0.03, "undecided"),
                                                        (-0.04, 0.01, "undecided"))] == ["held", "failed",
                                                                                         "undecided"]
    assert [out("tie", lo, hi, v, m) for lo, hi, v in ((-0.01, 0.015, "undecided"), (0.01, 0.05, "better"),
                                                      (-0.03, 0.01, "undecided"))] == ["held", "failed", "undecided"]
    # a tie held needs equivalence: an interval holding 0 but reaching past the margin is undecided, not held
    assert out("tie", -0.05, 0.05, "undecided", m) == "undecided"
    assert [out("not_better", lo, hi, v, m) for lo, hi, v in ((-0.05, 0.01, "undecided"), (0.01, 0.05, "better"),
                                                             (-0.01, 0.04, "undecided"))] == ["held", "failed",
                                                                                              "undecided"]
    assert [out("not_worse", lo, hi, v, m) for lo, hi, v in ((-0.01, 0.05, "undecided"), (-0.05, -0.01, "worse"),
                                                            (-0.04, 0.01, "undecided"))] == ["held", "failed",
                                                                                             "undecided"]
    assert [out("chance", lo, hi, None, m) for lo, hi in ((0.49, 0.515), (0.51, 0.56), (0.47, 0.53))] == [
        "held", "failed", "undecided"]
    assert [out("above_chance", lo, hi, None, m) for lo, hi in ((0.51, 0.6), (0.45, 0.515), (0.48, 0.56))] == [
        "held", "failed", "undecided"]
    with pytest.raises(ValueError, match="mechanisms_checks.yml"):
        out("wins", 0, 1, None, m)


def test_the_committed_checks_read_the_design_and_decide_on_the_map():
    from pathlib import Path

    root = Path(study.__file__).parents[2]
    checks = yaml.safe_load((root / "studies" / "mechanisms_checks.yml").read_text())["checks"]
    design, _ = study.read_design()
    assert set(checks) == {c["name"] for c in design["cells"]}  # a check list per cell of the design
    pairs = set(study_analysis.PAIRS)
    for cell_checks in checks.values():
        for check in cell_checks:
            assert check["kind"] in study_analysis.CHECKS
            assert check["method"] in set(design["methods"]) | {"every", "every_pair"}
            if "against" in check:
                assert (check["method"], check["against"]) in pairs  # a comparison the design runs
    table = pd.DataFrame([{"cell": "M3", "mechanism": "M3", "pool": p, "method": m, "auc": a, "low": lo, "high": hi}
                          for m, p, a, lo, hi in (("averagemil", 0, 0.5, 0.49, 0.51), ("gigassl", 1000, 0.6, 0.57, 0.63),
                                                  ("random_aggregator", 0, 0.55, 0.52, 0.58))])
    pairs_table = pd.DataFrame([{"cell": "M3", "method": "gigassl", "against": "averagemil", "difference": 0.1,
                                 "low": 0.06, "high": 0.14, "p": 0.001, "p_holm": 0.003, "verdict": "better"}])
    got = study_analysis.check_predictions(checks, table, pairs_table).set_index(["cell", "claim"]).outcome
    assert got[("M3", "Giga-SSL beats AverageMIL")] == "held"
    assert got[("M3", "AverageMIL at chance")] == "held"
    assert got[("M3", "The untrained aggregator above chance")] == "held"
    assert got[("M3", "DeepMIL above chance")] == "not run"
    assert got[("M3", "SSL adds to the untrained aggregator")] == "not run"  # that comparison is not in the table
    assert (got.loc["M1"] == "not run").all()


def test_the_representation_reading_finds_the_statistic_where_it_is_and_not_where_it_is_not():
    g = np.random.default_rng(0)
    mean = g.normal(size=(400, 8))
    statistic = mean[:, 0] + 0.1 * g.normal(size=400)
    carried = study.representation_reading(np.c_[mean, g.normal(size=(400, 4))], mean, statistic, 200)
    missing = study.representation_reading(g.normal(size=(400, 12)), mean, statistic, 200)
    assert carried["statistic_r2"] > 0.9 and missing["statistic_r2"] < 0.1
    assert carried["cka_mean"] > 0.8 and missing["cka_mean"] < 0.3


def test_a_run_finished_before_readings_were_kept_is_read_from_what_its_cell_still_holds(tmp_path, monkeypatch):
    path = tiny_design(tmp_path, methods=["oracle", "averagemil", "gigassl"])
    design = study.read_design(path)[0]
    grid = study.grid_of(design, "book")
    cell = grid["cells"][0]
    first = study.run_cell(design, grid, cell, 0, tmp_path / "work", TINY, keep=True, readings=tmp_path / "r1.csv")
    before = pd.read_csv(tmp_path / "r1.csv").set_index("method")
    for f in (tmp_path / "work" / "runs").glob("*.reading.json"):
        f.unlink()  # as if the runs had finished under a version that kept no readings
    monkeypatch.setattr(study, "probe_scores", lambda *a: pytest.fail("a finished run ran again"))
    again = study.run_cell(design, grid, cell, 0, tmp_path / "work", TINY, keep=True, readings=tmp_path / "r2.csv")
    pd.testing.assert_frame_equal(again, first, check_dtype=False)
    after = pd.read_csv(tmp_path / "r2.csv").set_index("method")
    pd.testing.assert_frame_equal(after.sort_index(), before.sort_index())  # the same readings, from the kept files
    # an arm whose folder is gone has no reading (it is not trained again for one)
    import shutil

    shutil.rmtree(tmp_path / "work" / "gigassl_p0_s0")
    for f in (tmp_path / "work" / "runs").glob("*.reading.json"):
        f.unlink()
    study.run_cell(design, grid, cell, 0, tmp_path / "work", TINY, readings=tmp_path / "r3.csv")
    assert pd.read_csv(tmp_path / "r3.csv").method.tolist() == ["averagemil"]


def test_the_readings_say_why_giga_ssl_ties_the_mean_or_not_and_the_checks_say_how_many_chance_fails_to_expect():
    from gigassl.book import study_page

    table = pd.DataFrame([{"cell": "M1", "mechanism": "M1", "pool": p, "method": m, "auc": 0.7, "low": 0.68,
                           "high": 0.72} for m, p in (("averagemil", 0), ("gigassl", 1000), ("oracle", 0))])
    pairs = pd.DataFrame(columns=["cell", "method", "against", "difference", "low", "high", "verdict"])

    def page_with(ssl_cka, ssl_r2, mean_r2, checks=None):
        readings = pd.DataFrame([
            {"cell": "M1", "pool": 0, "method": "averagemil", "cka_mean": 1.0, "effective_rank": 5.0,
             "statistic_r2": mean_r2},
            {"cell": "M1", "pool": 1000, "method": "gigassl", "cka_mean": ssl_cka, "effective_rank": 9.0,
             "statistic_r2": ssl_r2},
            {"cell": "M1", "pool": 0, "method": "gigassl", "cka_mean": 0.1, "effective_rank": 9.0,
             "statistic_r2": 0.99}])  # another pool than the map's main one: never read
        return study_page.MechanismsPage("", "", "book", pd.DataFrame({"generator_seed": [0]}), table, pairs,
                                         pd.DataFrame(), None, checks, readings=readings)

    same = page_with(0.97, 0.70, 0.72).reading_words("M1")
    assert "close to the mean of tiles (linear CKA 0.97" in same and "about as much" in same
    less = page_with(0.95, 0.20, 0.80).reading_words("M1")
    assert "holds less of the statistic" in less and "R^2 0.20 against 0.80" in less
    more = page_with(0.50, 0.60, 0.10).reading_words("M1")
    assert "apart from the mean of tiles (linear CKA 0.50" in more and "holds more" in more
    assert "neither it nor the mean holds" in page_with(0.97, 0.01, -0.02).reading_words("M1")
    # without AverageMIL's reading there is nothing to read Giga-SSL against: no why
    lone = page_with(0.97, 0.7, 0.7)
    lone = dataclasses_replace(lone, readings=lone.readings[lone.readings.method != "averagemil"])
    assert "Why" not in lone.reading_words("M1")
    # the checks: how many of the chance checks would fail with no effect, beside how many did
    checks = pd.DataFrame([{"cell": "M0", "claim": "at chance", "kind": "chance", "method": m, "against": "",
                            "low": 0.5, "high": 0.5, "verdict": "", "outcome": o}
                           for m, o in (("a", "failed"), ("b", "undecided"), ("c", "undecided"), ("d", "not run"))])
    said = page_with(0.9, 0.5, 0.5, checks).checks_summary()
    assert "of the 3 chance checks, about 0.2 would fail with no effect at all; 1 failed." in said
    null = page_with(0.97, 0.70, 0.72)
    null = dataclasses_replace(null, table=null.table.assign(cell="M0", mechanism="M0"),
                               readings=null.readings.assign(cell="M0"))
    assert "Read without the labels" in null.reading_words("M0") and "Why" not in null.reading_words("M0")


def test_the_null_cell_names_every_verdict_it_decides_as_a_false_positive_of_the_rule():
    from gigassl.book import study_page

    table = pd.DataFrame([{"cell": "M0", "mechanism": "M0", "pool": 0, "method": m, "auc": 0.5, "low": 0.47,
                           "high": 0.53, "seed_sd": 0.01, "n_runs": 3} for m in ("averagemil", "gigassl")])

    def page(verdict, agree):
        pairs = pd.DataFrame([{"cell": "M0", "method": "gigassl", "against": "averagemil", "difference": -0.046,
                               "low": -0.067, "high": -0.025, "p": 0.001, "p_holm": 0.04, "verdict": verdict,
                               "seed_low": -0.1, "seed_high": 0.005, "seeds_agree": agree}])
        design, _ = study.read_design()
        predictions = study_analysis.predictions_table(design, table, pairs)
        return study_page.MechanismsPage("", "", "book", pd.DataFrame({"generator_seed": [0]}), table, pairs,
                                         predictions, None)

    null = page("worse", False)
    recorded = study_page.Recorded(table, null.pairs, None, None, {"units": {}})
    assert "M0 is the null, where any decision is a false positive" in dataclasses_replace(
        null, recorded=recorded).finding()
    assert "is the null" not in dataclasses_replace(
        null, recorded=dataclasses_replace(recorded, pairs=null.pairs.assign(verdict="undecided"))).finding()
    words = page("worse", False).paragraphs()
    assert "A false positive of the verdict rule" in words and "decides 1 of the cell's 1 comparisons" in words
    assert "Giga-SSL worse than AverageMIL (-0.046)" in words and "0 of the 1 decided verdict(s) hold" in words
    assert "1 of the 1 decided" in page("worse", True).paragraphs()
    assert "decides none of the cell's 1 comparisons" in page("undecided", float("nan")).paragraphs()


def test_a_decided_verdict_is_quoted_with_its_seeds_interval_and_the_finding_counts_those_that_hold():
    from gigassl.book import study_page

    table = pd.DataFrame([{"cell": c, "mechanism": c[:2], "pool": p, "method": m, "auc": a, "low": a - 0.02,
                           "high": a + 0.02, "seed_sd": 0.01, "n_runs": 6}
                          for c in ("M1", "M3") for m, p, a in (("oracle", 0, 0.85), ("averagemil", 0, 0.8),
                                                                 ("gigassl", 1000, 0.74))])
    pairs = pd.DataFrame([{"cell": c, "method": "gigassl", "against": "averagemil", "difference": -0.061,
                           "low": -0.076, "high": -0.048, "p": 0.001, "p_holm": 0.04, "verdict": "worse",
                           "seed_low": lo, "seed_high": hi, "seeds_agree": agree}
                          for c, lo, hi, agree in (("M1", -0.149, 0.027, False), ("M3", -0.09, -0.03, True))])
    recorded = study_page.Recorded(table, pairs, None, None, {"units": {}})
    page = study_page.MechanismsPage("", "", "book", pd.DataFrame({"generator_seed": [0]}), table, pairs,
                                     pd.DataFrame(), recorded)
    text = page.implications()
    assert ("(-0.061, worse after Holm, over generator seeds [-0.149, +0.027] (the seeds do not: their interval "
            "holds 0))") in text
    assert "over generator seeds [-0.090, -0.030] (the seeds agree)" in text  # M3's, quoted in its sentence
    assert "1 of these 2 decided verdict(s) hold (M3)" in page.finding()
    # an undecided verdict is quoted with the seeds' interval but no agreement, and the finding counts nothing
    undecided = pairs.assign(verdict="undecided", seeds_agree=float("nan"))
    quiet = dataclasses_replace(page, pairs=undecided, recorded=dataclasses_replace(recorded, pairs=undecided))
    assert "undecided after Holm, over generator seeds [-0.149, +0.027])" in quiet.implications()
    assert "agree" not in quiet.implications() and "decided verdict(s) hold" not in quiet.finding()
