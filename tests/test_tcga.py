"""The authors' TCGA protocol: packaged tables and splits, id mapping, an end-to-end run on the released ids."""

import numpy as np
import pytest

from gigassl.errors import ConfigError, ManifestError
from gigassl.evaluation.splits import check_splits
from gigassl.evaluation.tcga import (TASKS, match_ids, released_ids, run_tcga, run_tcga_baseline, tcga_budgets,
                                     tcga_labels, tcga_protocol)


def test_released_ids_have_the_tables_format():
    released = released_ids()
    assert len(released) == 11642 and len(set(released)) == len(released)
    assert not any(i.lower().endswith((".svs", ".h5", ".npy")) for i in released)
    known = set(released)
    for task in TASKS:
        table = tcga_labels(task)
        assert list(table.columns) == ["slide_id", "case_id", task]
        assert set(table.slide_id) <= known  # every labelled slide has a released embedding, ids verbatim
        assert (table.slide_id.str[:12] == table.case_id).all()


def test_budgets_and_packaged_splits():
    assert tcga_budgets("brca") == ["full", "25p", "100", "50"]
    assert tcga_budgets("tnbc") == ["full", "25p", "250", "100", "50"]
    labels, plan, dropped = tcga_protocol("brca", budgets=["full", "50"])
    assert [s.budget for s in plan] == ["full"] * 10 + ["50"] * 10
    assert (len(plan[0].train_ids), len(plan[0].test_ids)) == (943, 98)  # blank padding of the test column dropped
    assert all(len(s.train_ids) == 50 for s in plan[10:]) and sum(dropped.values()) == 0
    with pytest.raises(ManifestError, match="--allow-case-overlap"):  # the authors' splits share patients
        check_splits(plan, labels)
    with pytest.raises(ConfigError, match="allowed"):
        tcga_protocol("brca", budgets=["250"])
    with pytest.raises(ConfigError, match="it must be one of 'lung', 'brca'"):
        tcga_labels("colon")


def test_match_ids_tolerates_extensions_case_and_barcodes():
    wanted = released_ids()[:50]
    other = [f"/slides/{i.upper()}.svs" for i in wanted[:20]] + [i.split(".")[0] for i in wanted[20:40]]
    mapping = match_ids(other + ["unrelated"], wanted)
    assert len(mapping) == 40 and mapping[wanted[0]] == other[0] and mapping[wanted[25]] == other[25]
    assert match_ids(wanted, wanted) == {w: w for w in wanted}


def test_run_tcga_random_embeddings_end_to_end(tmp_path):
    ids = released_ids()
    matrix = np.random.default_rng(0).normal(size=(len(ids), 32)).astype(np.float32)
    np.save(tmp_path / "embeddings.npy", matrix)
    np.save(tmp_path / "ids.npy", np.array(ids))
    with pytest.warns(UserWarning, match="7 split entries|14 split entries"):
        table = run_tcga(tmp_path / "embeddings.npy", "kidney", ids_path=tmp_path / "ids.npy", n_splits=2,
                         out=tmp_path / "kidney.csv")
    assert list(table.budget.unique()) == ["full", "25p", "100", "50"] and len(table) == 8
    assert abs(table.auc.mean() - 0.5) < 0.1 and table.auc.between(0.3, 0.7).all()
    assert table.case_overlap.iloc[0] > 0  # recorded, not refused
    assert table.n_dropped.iloc[0] == 7 and (table.n_dropped.iloc[2:] == 0).all()
    assert (table.n_classes_test == 3).all() and (tmp_path / "kidney.csv").is_file()
    with pytest.raises(ManifestError, match="absent from the embeddings"):
        run_tcga((ids[300:], matrix[300:]), "brca", budgets=["full"], n_splits=1)


def test_tcga_baselines_on_a_few_slides_use_the_same_splits():
    labels, plan, _ = tcga_protocol("thrd", budgets=["50"], n_splits=1)
    used = sorted({*plan[0].train_ids, *plan[0].test_ids})
    gen = np.random.default_rng(0)
    bags = {i: gen.normal(size=(6, 8)).astype(np.float32) for i in used}
    table = run_tcga_baseline(bags, "thrd", method="averagemil", budgets=["50"], n_splits=1)
    assert table[["budget", "split", "n_train", "n_test"]].values.tolist() == [["50", "split_0", 50, 64]]
    assert table.method[0] == "averagemil" and table.task[0] == "thrd" and table.case_overlap[0] == 1
