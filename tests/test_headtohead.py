"""gigassl evaluate: any slide embeddings head to head on identical splits (issue #26 item 5), on files in the layouts
users have: gigassl's .h5, CSV, parquet, a .npy with its ids, and TRIDENT's slide_features_<encoder>/ folder
(tests/layouts.py writes it as TRIDENT does)."""

import sys
import warnings

import numpy as np
import pandas as pd
import pytest

from gigassl import cli
from gigassl.config import EvaluateConfig, ProbeConfig
from gigassl.errors import ConfigError, ManifestError
from gigassl.evaluation import compare, headtohead
from gigassl.evaluation.labels import load_labels
from gigassl.evaluation.metrics import auc_score
from gigassl.evaluation.probe import LinearProbe
from gigassl.evaluation.splits import make_splits, read_splits
from gigassl.io import write_embeddings
from tests.layouts import trident_coords, trident_slide_features

N_SLIDES, DIM = 40, 8
FAST = EvaluateConfig(n_splits=4, test_fraction=0.3, protocol="paper", n_bootstrap=200)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """40 slides of 34 patients (6 with two slides) in 4 centres, a binary task; two representations of the same
    slides: ``signal`` (the label along one direction, plus noise) and ``other`` (a weaker signal)."""
    root = tmp_path_factory.mktemp("headtohead")
    g = np.random.default_rng(7)
    slides = [f"TCGA-{i:02d}-slide" for i in range(N_SLIDES)]
    cases = [f"case{i if i < 34 else i - 34:02d}" for i in range(N_SLIDES)]  # slides 34..39: second of cases 0..5
    label_of_case = {c: int(g.integers(2)) for c in sorted(set(cases))}
    labels = pd.DataFrame({"slide_id": slides, "case_id": cases, "center": [f"c{i % 4}" for i in range(N_SLIDES)],
                           "subtype": [("LUAD", "LUSC")[label_of_case[c]] for c in cases]})
    y = (labels["subtype"] == "LUSC").to_numpy(float)
    signal = (g.normal(size=(N_SLIDES, DIM)) + np.outer(2 * y - 1, np.eye(DIM)[0]) * 1.5).astype(np.float32)
    other = (g.normal(size=(N_SLIDES, DIM)) + np.outer(2 * y - 1, np.eye(DIM)[1]) * 0.5).astype(np.float32)
    labels.to_csv(root / "labels.csv", index=False)
    write_embeddings(root / "gigassl.h5", slides, signal)
    write_embeddings(root / "gigassl.csv", slides, signal)
    write_embeddings(root / "gigassl.parquet", slides, signal)
    np.save(root / "gigassl.npy", signal)
    np.save(root / "ids.npy", np.array(slides))
    job = root / "trident"
    for sid, row in zip(slides, other):
        coords = trident_coords(job, sid, g.integers(0, 4000, size=(5, 2)), 512, 40, 20)
        trident_slide_features(coords, "titan", row)
    titan = job / "20x_512px_0px_overlap" / "slide_features_titan"
    return {"root": root, "labels": labels, "signal": signal, "other": other, "slides": slides, "titan": titan}


def _paths(c):
    root = c["root"]
    return {"h5": root / "gigassl.h5", "csv": root / "gigassl.csv", "parquet": root / "gigassl.parquet",
            "npy": root / "gigassl.npy", "titan": c["titan"]}


def test_the_trident_fixture_has_trident_slide_features_layout(cohort):
    import h5py

    files = sorted(cohort["titan"].glob("*.h5"))
    assert len(files) == N_SLIDES and cohort["titan"].name == "slide_features_titan"
    with h5py.File(files[0], "r") as fh:
        assert fh["features"].shape == (DIM,) and fh["features"].dtype == np.float32
        assert fh["features"].attrs["name"] == files[0].stem and fh["coords"].shape == (5, 2)


def test_every_format_is_scored_on_identical_splits_and_equal_sets_differ_by_exactly_zero(cohort, tmp_path):
    result = headtohead.evaluate(_paths(cohort), cohort["labels"], "subtype", ids={"npy": cohort["root"] / "ids.npy"},
                                 evaluations=("random_splits",), config=FAST, out=tmp_path)
    runs = result.runs
    assert list(runs.columns[:7]) == list(compare.RUN_COLUMNS)
    assert list(dict.fromkeys(runs["method"])) == ["h5", "csv", "parquet", "npy", "titan"]
    # the splits: one per draw, the same for every set, and those of make_splits on the labels and the seed
    per_draw = runs.groupby("draw")["split_digest"].nunique()
    assert (per_draw == 1).all() and len(per_draw) == FAST.n_splits
    expected = make_splits(load_labels(cohort["labels"], "subtype"), FAST.n_splits, FAST.test_fraction, FAST.seed)
    assert runs[runs["method"] == "titan"]["split_digest"].tolist() == [headtohead.split_digest(s) for s in expected]
    written = read_splits(tmp_path / "splits")
    assert [(s.train_ids, s.test_ids) for s in written] == [(s.train_ids, s.test_ids) for s in expected]
    # the four files of one matrix: every difference exactly 0, no set better
    pairs = result.pairs
    same = pairs[pairs["a"].isin(["h5", "csv", "parquet"]) & pairs["b"].isin(["csv", "parquet", "npy"])]
    assert len(same) == 6 and (same["difference"] == 0).all() and (same["difference_std"] == 0).all()
    assert (same["verdict"] == compare.UNDECIDED).all() and (same["ci_low"] == 0).all()
    assert set(pairs["interval"]) == {compare.VARIANCE_SOURCES["corrected"]}
    # the weaker representation differs, with the sign of its mean AUCs
    versus = pairs[(pairs["a"] == "h5") & (pairs["b"] == "titan")].iloc[0]
    assert versus["difference"] == pytest.approx(versus["mean_a"] - versus["mean_b"]) and versus["difference"] > 0.1
    for name in ("runs", "pairs", "coverage"):
        assert (tmp_path / f"{name}.csv").is_file()
    assert pd.read_csv(tmp_path / "runs.csv").shape == runs.shape


def test_a_split_value_is_the_auc_of_the_probe_fitted_directly(cohort):
    named = {"signal": (cohort["slides"], cohort["signal"])}
    runs = headtohead.random_splits_runs(named, cohort["labels"], "subtype", n_splits=2, test_fraction=0.3,
                                         protocol="paper", seed=3)
    frame = load_labels(cohort["labels"], "subtype")
    row = {s: i for i, s in enumerate(cohort["slides"])}
    label = dict(zip(frame["slide_id"], frame["label"]))
    for split, value in zip(make_splits(frame, 2, 0.3, 3), runs["value"]):
        train, test = [row[s] for s in split.train_ids], [row[s] for s in split.test_ids]
        probe = LinearProbe(C=ProbeConfig().C, preprocessing="l2").fit(cohort["signal"][train],
                                                                       [label[s] for s in split.train_ids])
        expected = auc_score([label[s] for s in split.test_ids], probe.predict_proba(cohort["signal"][test]),
                             probe.classes_)
        assert value == pytest.approx(expected, abs=1e-9)


def test_a_set_lacking_slides_is_evaluated_on_the_shared_slides_with_a_warning(cohort):
    keep = cohort["slides"][3:]
    named = {"full": (cohort["slides"], cohort["signal"]), "short": (keep, cohort["other"][3:])}
    with pytest.warns(UserWarning, match=r"short \(given\) lacks 3 of the 40"):
        restricted, labels, coverage = headtohead.shared_slides(named, cohort["labels"])
    assert restricted["full"][0] == keep and restricted["short"][0] == keep and list(labels["slide_id"]) == keep
    np.testing.assert_array_equal(restricted["full"][1], cohort["signal"][3:])
    assert coverage.set_index("name")["n_lacking"].to_dict() == {"full": 0, "short": 3}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = headtohead.evaluate(named, cohort["labels"], "subtype", evaluations=("random_splits",), config=FAST)
    sizes = result.runs["n_train"] + result.runs["n_test"]
    assert (sizes == N_SLIDES - 3).all()


def test_a_set_sharing_no_labelled_slide_is_refused_naming_its_file(cohort):
    named = {"good": (cohort["slides"], cohort["signal"]),
             "renamed": ([f"{s}.svs.h5x" for s in cohort["slides"]], cohort["other"])}
    with pytest.raises(ManifestError, match=r"'renamed' \(other.csv\) shares no slide with the label table"):
        headtohead.shared_slides(named, cohort["labels"], files={"renamed": "other.csv"})


def test_an_evaluation_the_labels_do_not_allow_is_refused(cohort):
    named = {"a": (cohort["slides"], cohort["signal"])}
    with pytest.raises(ConfigError, match="--time and --event"):
        headtohead.evaluate(named, cohort["labels"], "subtype", evaluations=("survival",), config=FAST)
    with pytest.raises(ConfigError, match="`center` column"):
        headtohead.evaluate(named, cohort["labels"].drop(columns="center"), "subtype",
                            evaluations=("unseen_centres",), config=FAST)
    assert headtohead.applicable(cohort["labels"]) == ("random_splits", "few_shot", "retrieval", "patients",
                                                       "unseen_centres")
    assert headtohead.applicable(cohort["labels"], "t", "e")[-1] == "survival"


def test_parse_named_refuses_malformed_and_repeated_names():
    assert headtohead.parse_named(["a=x.h5", "b = y/"]) == {"a": "x.h5", "b": "y/"}
    for bad in (["x.h5"], ["=x.h5"], ["a="], ["a=x", "a=y"]):
        with pytest.raises(ConfigError, match="NAME=PATH|given twice"):
            headtohead.parse_named(bad)


def _runs(values_a, values_b, metric="auroc", evaluation="random_splits", sizes=True):
    rows = []
    for method, values in (("a", values_a), ("b", values_b)):
        for draw, value in enumerate(values):
            rows.append({"method": method, "evaluation": evaluation, "task": "t", "setting": "s", "draw": draw,
                         "metric": metric, "value": value, **({"n_train": 30, "n_test": 10} if sizes else {})})
    return pd.DataFrame(rows)


def test_paired_runs_use_the_corrected_interval_over_random_splits_and_the_bootstrap_elsewhere():
    a = np.array([0.80, 0.82, 0.85, 0.79, 0.84])
    b = a - np.array([0.05, 0.03, 0.06, 0.04, 0.05])
    row = compare.paired_runs(_runs(a, b), "a", "b").iloc[0]
    low, high = compare.corrected_interval(a - b, 10 / 30)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high)) and row["verdict"] == "a better"
    row = compare.paired_runs(_runs(a, b, evaluation="few_shot"), "a", "b", n_bootstrap=500).iloc[0]
    assert row["interval"] == compare.VARIANCE_SOURCES["bootstrap"]
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(compare.paired_interval(
        a - b, 500, seed=int(compare.rng(0, compare.zlib.crc32(b"a/b/few_shot/t/s/auroc")).integers(2**31))))
    # a metric where lower is better: the same differences make b the better one
    row = compare.paired_runs(_runs(a, b, metric="integrated_brier"), "a", "b").iloc[0]
    assert row["verdict"] == "b better" and not row["higher_is_better"]
    # no n_train/n_test: the ratio given, else the bootstrap
    row = compare.paired_runs(_runs(a, b, sizes=False), "a", "b", test_train_ratio=10 / 30).iloc[0]
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high))
    assert compare.paired_runs(_runs(a, b, sizes=False), "a", "b").iloc[0]["interval"] == \
        compare.VARIANCE_SOURCES["bootstrap"]
    one = compare.paired_runs(_runs(a[:1], b[:1]), "a", "b").iloc[0]
    assert np.isnan(one["ci_low"]) and one["verdict"] == compare.UNDECIDED and one["interval"] == "none (one draw)"


def test_head_to_head_pairs_every_two_sets_in_order():
    table = pd.concat([_runs([0.8, 0.9], [0.7, 0.6]), _runs([0.5, 0.5], [0.4, 0.4]).replace({"a": "c", "b": "d"})])
    pairs = compare.head_to_head(table)
    assert list(zip(pairs["a"], pairs["b"])) == [("a", "b"), ("a", "c"), ("a", "d"), ("b", "c"), ("b", "d"),
                                                 ("c", "d")]
    with pytest.raises(ConfigError, match="lacks the column"):
        compare.head_to_head(table.drop(columns="draw"))


def test_the_cli_evaluations_are_the_modules():
    assert cli.EVALUATIONS == headtohead.EVALUATIONS


def test_gigassl_evaluate_end_to_end(cohort, tmp_path, capsys):
    root, out = cohort["root"], tmp_path / "out"
    argv = ["evaluate", "--profile", "smoke", "--embeddings", f"gigassl={root / 'gigassl.h5'}",
            f"titan={cohort['titan']}", f"npy={root / 'gigassl.npy'}", "--ids", f"npy={root / 'ids.npy'}",
            "--labels", str(root / "labels.csv"), "--task", "subtype", "--evaluations", "random_splits",
            "--protocol", "paper", "--out", str(out)]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "gigassl" in text and "titan" in text and "wrote" in text
    runs = pd.read_csv(out / "runs.csv")
    assert set(runs["method"]) == {"gigassl", "titan", "npy"} and runs["draw"].nunique() == 3  # the smoke profile
    pairs = pd.read_csv(out / "pairs.csv")
    assert len(pairs) == 3 and pairs.set_index(["a", "b"]).loc[("gigassl", "npy"), "difference"] == 0
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert (out / headtohead.FIGURE).stat().st_size > 1000


@pytest.mark.parametrize("embeddings, message", [
    (["gigassl.h5"], "is not NAME=PATH"), (["=gigassl.h5"], "is not NAME=PATH"),
    (["a=gigassl.h5", "a=gigassl.csv"], "given twice"),
])
def test_gigassl_evaluate_exits_2_on_a_bad_name_path(cohort, tmp_path, capsys, embeddings, message):
    root = cohort["root"]
    argv = ["evaluate", "--embeddings", *[e.replace("gigassl.", f"{root}/gigassl.") for e in embeddings],
            "--labels", str(root / "labels.csv"), "--task", "subtype", "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not (tmp_path / "out").exists()


def test_no_figure_without_matplotlib_names_the_extra(cohort, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    runs = _runs([0.8, 0.9], [0.7, 0.6])
    assert headtohead.figure(runs, tmp_path / "f.png") is None and not (tmp_path / "f.png").exists()
    assert 'pip install "gigassl[book]"' in capsys.readouterr().out


@pytest.fixture(scope="module")
def survival_labels(cohort, tmp_path_factory):
    g = np.random.default_rng(3)
    # follow-up capped at 40 months (about 10 slides at the cap), so that every split's training part reaches the
    # largest test time (Uno's censoring estimate is fitted on the training part)
    labels = cohort["labels"].assign(months=np.minimum(g.exponential(30, N_SLIDES).round(1) + 0.5, 40.0),
                                     death=g.integers(0, 2, N_SLIDES))
    path = tmp_path_factory.mktemp("survival") / "labels.csv"
    labels.to_csv(path, index=False)
    return path


def test_every_evaluation_scores_two_copies_of_one_set_identically(cohort, survival_labels):
    """Draws made from the labels and the seed only: a copy of a set gets every value of the original, in every
    evaluation this version has (a draw that depended on the representation would make the copies differ)."""
    named = {"a": (cohort["slides"], cohort["signal"]), "copy": (list(cohort["slides"]), cohort["signal"].copy()),
             "b": (cohort["slides"], cohort["other"])}
    config = EvaluateConfig(n_splits=3, test_fraction=0.3, shots=(1, 2), draws=3, n_bootstrap=100)
    result = headtohead.evaluate(named, survival_labels, "subtype", config=config, time="months", event="death")
    assert set(result.runs["evaluation"]) == set(headtohead.available())
    copies = result.pairs[(result.pairs["a"] == "a") & (result.pairs["b"] == "copy")]
    assert len(copies) == len(result.pairs) / 3 and (copies["difference"].fillna(0) == 0).all()
    assert (copies["verdict"] == compare.UNDECIDED).all()
    assert result.pairs[result.pairs["b"] == "b"]["difference"].abs().max() > 0.05


def test_gigassl_probe_time_event_runs_the_survival_probe_on_one_file(cohort, survival_labels, tmp_path, capsys):
    out = tmp_path / "survival.csv"
    argv = ["probe", "--profile", "smoke", "--embeddings", str(cohort["root"] / "gigassl.h5"), "--labels",
            str(survival_labels), "--time", "months", "--event", "death", "--out", str(out)]
    assert cli.main(argv) == 0
    runs = pd.read_csv(out)
    assert set(runs["evaluation"]) == {"survival"} and runs["draw"].nunique() == 3 and "c_index" in set(runs["metric"])
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv[:-6] + ["--time", "months"])
    assert exit_.value.code == 2 and "--event" in capsys.readouterr().err
