import numpy as np
import pandas as pd
import pytest

from gigassl.config import ProbeConfig
from gigassl.errors import ManifestError
from gigassl.evaluation.metrics import summarize
from gigassl.evaluation.protocol import COLUMNS, probe_runs, run_probe
from gigassl.evaluation.splits import Split, write_splits

from .test_probe import data


def cohort(n=150, d=32, seed=0):
    gen = np.random.default_rng(seed)
    case = np.repeat(np.arange(n), 1 + (gen.random(n) < 0.2))[:n]
    y = np.array(["x", "y", "z"])[gen.integers(0, 3, case.max() + 1)][case]
    ids = [f"s{i:03d}" for i in range(n)]
    labels = pd.DataFrame({"slide_id": ids, "case_id": [f"c{c}" for c in case], "task": y, "other": 1})
    X = gen.normal(size=(n, d)) + 2.0 * gen.normal(size=(3, d))[pd.factorize(y, sort=True)[0]]
    return labels, ids, X.astype(np.float32)


def test_run_probe_tidy_table(tmp_path):
    labels, ids, X = cohort()
    config = ProbeConfig(n_splits=3, budgets=(1.0, 0.5), train_sizes=(30,))
    out = tmp_path / "res" / "probe.csv"
    table = run_probe((ids, X), labels, "task", config=config, out=out)
    assert list(table.columns)[: len(COLUMNS)] == list(COLUMNS) and {"preprocessing", "C"} <= set(table.columns)
    assert len(table) == 9 and list(table.budget.unique()) == ["full", "50p", "30"]
    assert (table[table.budget == "30"].n_train == 30).all()
    assert (table.case_overlap == 0).all() and (table.device == "cpu").all() and (table.method == "gigassl").all()
    assert table.auc.min() > 0.9 and (table.cpu_seconds >= 0).all()
    pd.testing.assert_frame_equal(pd.read_csv(out, dtype={"budget": str}), table, check_dtype=False)
    again = run_probe((ids, X), labels, "task", config=config)
    np.testing.assert_array_equal(again.auc, table.auc)  # seeded
    summary = summarize(table)
    assert list(summary.budget) == ["full", "50p", "30"]
    assert {"auc_mean", "auc_std", "ci_low", "ci_high", "n_splits", "cpu_seconds"} <= set(summary.columns)
    assert ((summary.ci_low <= summary.auc_mean) & (summary.auc_mean <= summary.ci_high)).all()


def test_run_probe_missing_ids_and_overlap(tmp_path):
    labels, ids, X = cohort()
    with pytest.raises(ManifestError, match="absent from the embeddings") as err:
        run_probe((ids[:-12], X[:-12]), labels, "task", n_splits=2, budgets=(1.0,))
    assert "12:" in str(err.value) and "'s138'" in str(err.value)
    case = dict(zip(labels.slide_id, labels.case_id))
    pair = next(c for c in labels.case_id if (labels.case_id == c).sum() == 2)
    a, b = labels.slide_id[labels.case_id == pair]
    rest = [i for i in ids if case[i] != pair]
    write_splits([Split((a, *rest[:100]), (b, *rest[100:]), "split_0")], tmp_path)
    with pytest.raises(ManifestError, match=repr(pair)):
        run_probe((ids, X), labels, "task", splits=tmp_path, budgets=(1.0,))
    table = run_probe((ids, X), labels, "task", splits=tmp_path, budgets=(1.0,), allow_case_overlap=True)
    assert table.case_overlap.tolist() == [1]


def test_run_probe_test_set_lacking_classes_gives_nan_with_warning():
    labels, ids, X = cohort()
    label = dict(zip(labels.slide_id, labels.task))
    test = tuple(i for i in ids[100:] if label[i] == "x")
    split = Split(tuple(ids[:100]), test, "split_0")
    with pytest.warns(UserWarning, match="fewer than two classes"):
        table = run_probe((ids, X), labels, "task", splits=[split], budgets=(1.0,))
    assert np.isnan(table.auc[0]) and table.n_classes_test[0] == 1
    assert summarize(table).n_splits[0] == 0


def test_run_probe_from_files_and_predefined_splits_with_budget(tmp_path):
    from gigassl.io import write_embeddings
    from gigassl.evaluation.labels import load_labels
    from gigassl.evaluation.splits import make_splits

    labels, ids, X = cohort()
    write_embeddings(tmp_path / "emb.h5", ids, X)
    labels.to_csv(tmp_path / "labels.csv", index=False)
    write_splits(make_splits(load_labels(labels, "task"), 2, 0.3, seed=5), tmp_path / "splits")
    table = run_probe(tmp_path / "emb.h5", tmp_path / "labels.csv", "task", splits=tmp_path / "splits",
                      train_sizes=(40,))
    assert table.budget.tolist() == ["40", "40"] and (table.n_train == 40).all() and table.auc.notna().all()


def test_fair_protocol_never_sees_the_test_slides(monkeypatch):
    """The fair protocol's choice on a split depends on the training slides only: replacing every test slide's
    embedding by garbage changes neither the choice nor the fitted probe; and the rows given to the inner fit are
    exactly the split's training slides."""
    from gigassl.evaluation import protocol as probe_module

    labels, ids, X = cohort()
    config = ProbeConfig(n_splits=3, budgets=(1.0,), train_sizes=(), Cs=(0.1, 10.0))
    table = run_probe((ids, X), labels, "task", config=config, protocol="fair")
    assert (table.protocol == "fair").all() and table.preprocessing.notna().all()
    from gigassl.evaluation.labels import load_labels
    from gigassl.evaluation.splits import plan_splits

    plan = plan_splits(load_labels(labels, "task"), n_splits=3, test_fraction=config.test_fraction, budgets=(1.0,),
                       train_sizes=(), seed=config.seed)
    position = {s: i for i, s in enumerate(ids)}
    seen = []
    original = probe_module.TunedLinearProbe.fit

    def spy(self, X_fit, y_fit, groups=None):
        seen.append(np.asarray(X_fit).copy())
        return original(self, X_fit, y_fit, groups)

    monkeypatch.setattr(probe_module.TunedLinearProbe, "fit", spy)
    for split, row in zip(plan, table.itertuples()):
        garbage = X.copy()
        test_rows = [position[s] for s in split.test_ids]
        garbage[test_rows] = np.random.default_rng(9).normal(size=(len(test_rows), X.shape[1])) * 1e3
        again = run_probe((ids, garbage), labels, "task", splits=[split], budgets=(1.0,), config=config,
                          protocol="fair")
        assert (again.preprocessing[0], again.C[0]) == (row.preprocessing, row.C)
        train_rows = X[[position[s] for s in split.train_ids]]
        np.testing.assert_array_equal(seen[-1], train_rows)  # the inner CV got the training slides, nothing else


def test_probe_runs_pairs_methods_on_the_same_splits():


    labels, ids, X = cohort()
    config = ProbeConfig(n_splits=2, budgets=(1.0,), train_sizes=(), Cs=(1.0, 10.0))
    table = probe_runs({"a": ((ids, X), "l2"), "b": ((ids, X * 2), "standard")}, labels, ["task"], config=config)
    assert set(table.method) == {"a", "b"} and set(table.protocol) == {"paper", "fair"} and len(table) == 8
    a, b = (table[(table.method == m) & (table.protocol == "paper")] for m in "ab")
    assert a.split.tolist() == b.split.tolist() and a.n_test.tolist() == b.n_test.tolist()


def test_the_probe_table_says_how_splits_were_grouped():
    X, y = data(n=40, d=4)
    ids = [f"s{i}" for i in range(40)]
    with_cases = pd.DataFrame({"slide_id": ids, "case_id": [f"p{i // 2}" for i in range(40)], "task": y})
    config = ProbeConfig(n_splits=2, budgets=(1.0,), train_sizes=())
    assert (run_probe((ids, X), with_cases, "task", config=config).grouped_by == "case").all()
    with pytest.warns(UserWarning, match="no case_id column"):
        table = run_probe((ids, X), with_cases.drop(columns="case_id"), "task", config=config)
    assert (table.grouped_by == "slide").all()


def test_predictions_are_the_fits_of_the_probe_table():
    """The per-slide predictions come from the same splits and fits as run_probe: their AUC per split is the table's."""
    from gigassl.evaluation.metrics import auc_score
    from gigassl.evaluation.protocol import predictions

    labels, ids, X = cohort()
    config = ProbeConfig(n_splits=3, budgets=(1.0,), train_sizes=())
    table = run_probe((ids, X), labels, "task", config=config)
    rows = predictions((ids, X), labels, "task", config=config)
    classes = sorted(set(labels["task"]))
    for split, part in rows.groupby("split"):
        auc = auc_score(part["label"], part[[f"p:{c}" for c in classes]].to_numpy(), classes)
        assert auc == pytest.approx(table.set_index("split").loc[split, "auc"])
    assert set(rows["predicted"]) <= set(classes) and not rows.duplicated(["split", "slide_id"]).any()


def test_embeddings_with_nan_are_refused_naming_the_slides():
    from gigassl.errors import DataError

    labels, ids, X = cohort(n=40)
    X[[3, 17], 1] = np.nan
    with pytest.raises(DataError, match=r"embeddings: NaN or infinite values in 2 of 40 slides \(s003, s017\)"):
        run_probe((ids, X), labels, "task", n_splits=2, budgets=(1.0,))
