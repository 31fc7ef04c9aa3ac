"""The experiment pages' functions (gigassl.book.experiments) on a run folder made on the fly: a labelled cohort and the
slide embeddings of a few training runs, one of which carries the label."""

import json

import numpy as np
import pandas as pd
import pytest

from gigassl.book import experiments, results
from gigassl import io
from gigassl.config import ProbeConfig, get_profile


def _config():
    smoke = get_profile("smoke")
    probe = ProbeConfig(n_splits=3, test_fraction=0.3, budgets=(1.0,), train_sizes=(12,), n_bootstrap=100,
                        Cs=(1.0, 10.0), preprocessings=("l2",), inner_splits=2)
    return type(smoke)(**{**smoke.__dict__, "probe": probe})


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """40 slides of 4 centres, task ``t`` (binary); run ``ssl_good`` encodes the label, ``ssl_noise`` does not."""
    root = tmp_path_factory.mktemp("run")
    gen = np.random.default_rng(0)
    n = 40
    ids = [f"s{i:02d}" for i in range(n)]
    labels = np.array(["x", "y"])[np.arange(n) % 2]
    manifest = pd.DataFrame({"slide_id": ids, "path": "none", "case_id": [f"c{i}" for i in range(n)],
                             "center": [f"k{i % 4}" for i in range(n)], "t": labels})
    (root / "cohort").mkdir()
    manifest.to_csv(root / "cohort" / "manifest.csv", index=False)
    signal = (labels == "y")[:, None] * 3.0
    for run, matrix, tiles in (("ssl_good", gen.normal(size=(n, 8)) + signal, 5),
                               ("ssl_noise", gen.normal(size=(n, 8)), 10)):
        (root / run).mkdir()
        io.write_embeddings(root / run / "embeddings.h5", ids, matrix.astype(np.float32), views=4,
                            tiles_per_view=tiles, seed=0)
    for page in ("ablation_tiles", "ablation_augmentation", "independent_centres"):
        (root / page).mkdir()
    # two folders of plain tile features (AverageMIL's input): ``bank_signal``'s tiles carry the label, ``bank_flat``'s
    # do not
    coords = np.stack(np.meshgrid(np.arange(6), np.arange(1)), -1).reshape(-1, 2).astype(np.int64) * 224
    for bank, shift in (("bank_signal", 3.0), ("bank_flat", 0.0)):
        (root / bank).mkdir()
        for i, sid in enumerate(ids):
            tiles = gen.normal(size=(len(coords), 8)) + shift * (labels[i] == "y")
            io.write_features(root / bank / f"{sid}.h5", tiles.astype(np.float32), coords, {},
                              {"patch_size_level0": 224})
    return root


def test_tiles_ablation_names_runs_by_their_T_and_writes_the_splits(run_dir):
    table = experiments.tiles_ablation(_config(), run_dir, run_dir / "ablation_tiles",
                                       runs=["ssl_good", "ssl_noise"])
    assert sorted(set(table["tiles_per_view"])) == [5, 10]
    good = table[(table["tiles_per_view"] == 5) & (table["protocol"] == "paper")]["auc_mean"].iloc[0]
    noise = table[(table["tiles_per_view"] == 10) & (table["protocol"] == "paper")]["auc_mean"].iloc[0]
    assert good > 0.9 and noise < good
    splits = experiments.split_table(run_dir, "ablation_tiles")
    assert set(splits["method"]) == {"T5", "T10"} and set(splits["protocol"]) == {"paper", "fair"}
    wide = experiments.by_task(table, "tiles_per_view")
    assert list(wide.index) == [5, 10] and ("paper", "t") in wide.columns


def test_augmentation_ablation_pairs_each_variant_with_the_full_method(run_dir):
    result = experiments.augmentation_ablation(_config(), run_dir, run_dir / "ablation_augmentation",
                                               {"full": "ssl_good", "noise": "ssl_noise"})
    assert set(result.pairs["a"]) == {"noise"} and set(result.pairs["b"]) == {"full"}
    assert (result.pairs["difference"] < 0).all()  # the variant without the label's signal is worse
    assert set(result.table["regime"]) == {"100%", "12 WSI"}
    assert result.pairs["comparison"].str.startswith("noise | t | ").all()
    shortcut = result.shortcut.set_index(["variant", "attribute"])
    assert shortcut.loc[("full", "t"), "neighbours_sharing_it"] > shortcut.loc[("full", "t"), "chance"]
    assert list(result.wide(["full", "noise"]).columns) == ["full", "noise"]
    assert set(result.embeddings) == {"full", "noise"}


def test_the_imagenet_arms_pair_with_the_random_start_and_the_averagemil_controls_tell_encoder_from_ssl(run_dir):
    """The ImageNet arm is set against the MoCo arm of the same aggregator start (random_init), and says what else
    differs; AverageMIL on each bank is probed on the same splits and paired as the controls (each difference the
    mean of the per-split differences of the page's own table)."""
    variants = {"full": "ssl_good", "random_init": "ssl_good", "imagenet": "ssl_noise"}
    baselines = {"averagemil_moco": "bank_signal", "averagemil_imagenet": "bank_flat"}
    result = experiments.augmentation_ablation(_config(), run_dir, run_dir / "ablation_augmentation", variants,
                                               baselines=baselines)
    pairs = result.pairs.drop_duplicates("a").set_index("a")
    assert pairs.loc["imagenet", "b"] == "random_init" and pairs.loc["random_init", "b"] == "full"
    assert pairs.loc["imagenet", "also_differs"] == experiments.FEATURE_DIMS and "1280-d" in experiments.FEATURE_DIMS
    assert pairs.loc["random_init", "also_differs"] == ""
    assert {"averagemil_moco", "averagemil_imagenet"} <= set(result.splits["method"])
    assert {"averagemil_moco", "averagemil_imagenet"} <= set(result.wide(variants).columns)
    controls = result.controls
    assert [(c.a, c.b) for c in experiments.CONTROLS] == list(dict.fromkeys(zip(controls["a"], controls["b"])))
    encoder = controls[controls["a"] == "averagemil_imagenet"]
    assert (encoder["difference"] < -0.2).all()  # the flat bank's AverageMIL is below the signal bank's
    split = result.splits.set_index(["method", "protocol", "task", "budget", "split"])["auc"].sort_index()
    for row in controls.itertuples():
        direct = (split.loc[row.a, row.protocol, row.task, row.budget]
                  - split.loc[row.b, row.protocol, row.task, row.budget]).mean()
        assert row.difference == pytest.approx(direct, abs=1e-9)
    assert controls["comparison"].str.startswith("averagemil_imagenet - averagemil_moco | t | ").any()
    said = experiments.controls_finding(controls)
    assert said.startswith("Encoder or SSL, under the fair protocol: tile encoder (AverageMIL)")
    assert experiments.controls_finding(pd.DataFrame()) == "No AverageMIL control was probed."


def test_an_imagenet_arm_against_full_says_it_differs_in_two_factors():
    both = experiments.variant_contrast("imagenet", {"full": "a", "imagenet": "b"})
    assert both.b == "full" and experiments.AGGREGATOR_START in both.also and experiments.FEATURE_DIMS in both.also
    assert experiments.variant_contrast("ns", {"full": "a", "ns": "b"}) == experiments.Contrast("ns", "full", "ns")


def test_independent_centres_probes_only_the_probe_centres(run_dir):
    result = experiments.independent_centres(_config(), run_dir, run_dir / "independent_centres",
                                             {"full": "ssl_good", "independent": "ssl_noise"}, train_size=0)
    manifest = pd.read_csv(run_dir / "cohort" / "manifest.csv")
    probed = manifest[manifest["center"].isin(result.probe_centres)]
    assert result.n_probe_slides == len(probed) < len(manifest)
    assert set(result.table["regime"]) == {"100%"}  # train_size 0: no tiny training set
    assert "never saw them" in result.describe()


def test_resources_reads_the_runner_record(tmp_path):
    (tmp_path / "runner.json").write_text(json.dumps({
        "a": {"status": "ok", "notebook": "n", "seconds": 60.0, "peak_memory_mb": 10.0, "finished": "t"},
        "b": {"status": "failed", "notebook": "n", "seconds": 5.0, "peak_memory_mb": 1.0, "finished": "t"},
        "resources": {"status": "ok", "notebook": "r", "seconds": 1.0, "peak_memory_mb": 1.0, "finished": "t"}}))
    frame, said = experiments.resources(tmp_path, "demo")
    assert list(frame["name"]) == ["a"] and said.startswith("profile demo: 1 executions, 1.0 minutes in all")


def test_deepmil_finding_states_each_task_at_full_labels():
    few = pd.DataFrame({"auc_a": [0.9], "auc_b": [0.6], "verdict": ["deepmil better"]})
    versus = pd.DataFrame({"task": ["t", "t"], "budget": ["full", "25p"], "difference": [-0.05, 0.1],
                           "ci_low": [-0.1, 0.0], "ci_high": [0.0, 0.2], "verdict": ["undecided"] * 2})
    said = experiments.deepmil_finding(few, versus)
    assert said.startswith("few-tile check: DeepMIL 0.900 against AverageMIL 0.600 (deepmil better)")
    assert "t -0.050 [-0.100, +0.000] (undecided)" in said and "+0.100" not in said


def test_results_selects_claims_by_artefact_and_protocol():
    claims = pd.DataFrame({"artefact": ["Table 2", "Fig. 3A", "Fig. 3C", "Table 2", "Speed"],
                           "protocol": ["paper", "paper", "fair", "fair", "fair"],
                           "verdict": ["consistent", "undecided", "opposite", "not testable here", "consistent"],
                           "corrected_verdict": ["undecided", "undecided", "opposite", "not testable here",
                                                 "consistent"],
                           "counted": [True, True, True, False, True], "ci_low": 0.0, "ci_high": 0.1,
                           "variance_sources": "splits (Nadeau-Bengio corrected)", "run": 0.05})
    result = results.Results(pd.DataFrame(), claims, pd.DataFrame(), pd.DataFrame())
    assert len(result.of("Fig. 3")) == 2 and len(result.of("Table 2")) == 2
    verdicts = result.verdicts().set_index(["protocol", "verdicts"])
    assert verdicts.loc[("paper", "raw"), "agree"] == 1 and verdicts.loc[("paper", "holm"), "agree"] == 0
    assert verdicts.loc[("paper", "holm"), "undecided"] == 2
    assert verdicts.loc[("fair", "raw"), "disagree"] == 1 and verdicts.loc[("fair", "raw"), "counted"] == 2
    assert verdicts.loc[("fair", "raw"), "not testable here"] == 1 and verdicts.loc[("fair", "raw"), "total"] == 3
    said = result.sentence("fair")
    assert "of the 2 comparisons that can be tested here, 1 agree" in said and "1 are not testable" in said
    assert "After Holm's correction across the page: 1 agree" in said
    assert list(result.table().columns) == [c for c in results.CLAIM_COLUMNS if c in claims]
    assert {"ci_low", "ci_high", "variance_sources", "verdict", "corrected_verdict", "counted"} <= set(
        results.CLAIM_COLUMNS)


def test_each_arm_is_its_training_run():
    assert results.arm_run("Table 2", "gigassl", 5) == "ssl_full" and results.arm_run("Table 2", "deepmil", 5) is None
    assert results.arm_run("Fig. 2", "gigassl@20", 5) == "ssl_full"
    assert results.arm_run("Fig. 3A", "T5", 5) == "ssl_ref" and results.arm_run("Fig. 3A", "T2", 5) == "ssl_T2"
    assert results.arm_run("Fig. 3B", "R50", 5) == "ssl_full"
    last = {"attention": "9"}
    assert results.arm_run("Fig. 3C", "attention@9", 5, last) == "ssl_attention"
    assert results.arm_run("Fig. 3C", "attention@1", 5, last) is None  # diagnosed at the last epoch only
    assert results.arm_run("Table 3", "ns", 5) == "ssl_ns" and results.arm_run("Table 4", "independent", 5) == \
        "ssl_independent_centres"


def test_the_pool_study_reports_both_regimes_with_their_steps_and_passes(run_dir, tmp_path):
    import shutil

    root = tmp_path / "run"
    shutil.copytree(run_dir / "cohort", root / "cohort")
    shutil.copytree(run_dir / "bank_flat", root / "bank_flat")
    # ssl_ref: 180 steps on the 40 labelled slides; the pools at the same steps (U) and at the same epochs (E)
    for name, source, steps in (("ssl_ref", "ssl_noise", 180), ("ssl_pool20", "ssl_noise", 180),
                                ("ssl_pool10", "ssl_noise", 180), ("ssl_epochs20", "ssl_good", 270)):
        shutil.copytree(run_dir / source, root / name)
        pd.DataFrame({"epoch": 1, "step": np.arange(1, steps + 1), "loss": 0.0}).to_csv(root / name / "steps.csv")
    config = _config()  # batch size 4 (the smoke profile)
    page = experiments.unlabelled_pool(config, root, tmp_path, bank="bank_flat")
    summary = page.summary[page.summary["protocol"] == "paper"].set_index(["regime", "method"])
    assert set(page.summary["regime"].dropna()) == {"same steps", "same epochs"}
    assert summary.loc[("same steps", "gigassl_U20"), "passes"] == round(180 * 4 / 60, 1)
    assert summary.loc[("same epochs", "gigassl_E20"), "steps"] == 270
    assert summary.loc[("same epochs", "gigassl_E20"), "passes"] == round(270 * 4 / 60, 1)
    # the run without pool is the first point of both regimes
    assert summary.loc[("same epochs", "gigassl_U0"), "pool"] == 0 == summary.loc[("same steps", "gigassl_U0"), "pool"]
    gain = page.gain[page.gain["protocol"] == "paper"]
    assert set(zip(gain["regime"], gain["a"], gain["b"])) == {
        ("same steps", "gigassl_U20", "gigassl_U0"), ("same steps", "gigassl_U20", "averagemil"),
        ("same epochs", "gigassl_E20", "gigassl_U0"), ("same epochs", "gigassl_E20", "averagemil")}
    # the label-carrying run (E20) beats the one without pool
    assert float(gain[(gain["a"] == "gigassl_E20") & (gain["b"] == "gigassl_U0")]["difference"].iloc[0]) > 0.2
    from gigassl.book.figures import pool_curves

    figs = pool_curves(page.summary)
    assert set(figs) == {"paper", "fair"} and all(len(f.axes) == 2 for f in figs.values())
