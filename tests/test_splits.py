"""Splits of the evaluation protocol: grouped, stratified, exact budgets, reproducible, leakage-safe."""

from collections import Counter

import numpy as np
import pandas as pd
import pytest

from gigassl.errors import ConfigError, ManifestError
from gigassl.evaluation.labels import load_labels
from gigassl.evaluation.splits import (Split, budget_split, case_overlap, check_ids, check_splits, make_splits,
                                       plan_splits, read_splits, validation_split, write_splits)


def cohort(n_cases=80, two_slide=0.3, classes=("a", "b", "c"), weights=(0.5, 0.3, 0.2), seed=0) -> pd.DataFrame:
    gen = np.random.default_rng(seed)
    rows = []
    for case in range(n_cases):
        label = gen.choice(classes, p=weights)
        for _ in range(2 if gen.random() < two_slide else 1):
            rows.append((f"s{len(rows):03d}", f"case{case:03d}", label))
    return load_labels(pd.DataFrame(rows, columns=["slide_id", "case_id", "y"]), "y")


def cases_of(labels, ids):
    case = dict(zip(labels.slide_id, labels.case_id))
    return {case[i] for i in ids}


def test_generated_splits_grouped_stratified_reproducible():
    labels = cohort()
    splits = make_splits(labels, n_splits=5, test_fraction=0.25, seed=3)
    label = dict(zip(labels.slide_id, labels.label))
    assert [s.name for s in splits] == [f"split_{k}" for k in range(5)]
    for s in splits:
        assert not cases_of(labels, s.train_ids) & cases_of(labels, s.test_ids)
        assert sorted(s.train_ids + s.test_ids) == sorted(labels.slide_id)
        test = Counter(label[i] for i in s.test_ids)
        total = Counter(labels.label)
        for c in total:  # every class on both sides, about a quarter of it in test
            assert 0 < test[c] < total[c]
            assert abs(test[c] / total[c] - 0.25) < 0.12
    assert make_splits(labels, 5, 0.25, seed=3) == splits
    assert make_splits(labels, 5, 0.25, seed=4) != splits
    assert make_splits(labels, 2, 0.25, seed=3) == splits[:2]  # split k depends only on (seed, k)


def test_generated_splits_errors():
    labels = cohort()
    with pytest.raises(ConfigError, match="test_fraction"):
        make_splits(labels, 3, 1.5)
    frame = pd.DataFrame({"slide_id": ["a", "b", "c"], "case_id": ["1", "2", "3"], "y": ["x", "x", "z"]})
    lonely = load_labels(frame, "y")
    with pytest.raises(ManifestError, match="single case"):
        make_splits(lonely, 1)


@pytest.mark.parametrize("size", [7, 10, 11, 25, 40])
def test_budget_exact_size_grouped_stratified(size):
    labels = cohort(two_slide=0.5)
    base = make_splits(labels, 3, 0.25, seed=0)
    label = dict(zip(labels.slide_id, labels.label))
    for k, split in enumerate(base):
        small = budget_split(split, labels, size=size, seed=0, index=k)
        assert len(small.train_ids) == size and small.budget == str(size)
        assert small.test_ids == split.test_ids
        assert set(small.train_ids) <= set(split.train_ids)
        assert set(Counter(label[i] for i in small.train_ids)) == set(Counter(label[i] for i in split.train_ids))
        kept, case = cases_of(labels, small.train_ids), dict(zip(labels.slide_id, labels.case_id))
        assert {i for i in split.train_ids if case[i] in kept} == set(small.train_ids)  # whole cases only
        assert budget_split(split, labels, size=size, seed=0, index=k) == small
    full = Counter(label[i] for i in base[0].train_ids)
    small = Counter(label[i] for i in budget_split(base[0], labels, size=40, seed=0).train_ids)
    for c in full:  # stratified: proportions follow the training split (within a two-slide case)
        assert abs(small[c] - 40 * full[c] / len(base[0].train_ids)) <= 2


def test_budget_fraction_and_errors():
    labels = cohort()
    split = make_splits(labels, 1, 0.25)[0]
    quarter = budget_split(split, labels, fraction=0.25, seed=1)
    assert len(quarter.train_ids) == round(0.25 * len(split.train_ids)) and quarter.budget == "25p"
    assert budget_split(split, labels, fraction=1.0) is split
    with pytest.raises(ConfigError, match="allowed"):
        budget_split(split, labels, size=len(split.train_ids) + 1)
    with pytest.raises(ConfigError, match="exactly one"):
        budget_split(split, labels, size=3, fraction=0.5)


def test_budget_impossible_size_is_refused():
    rows = [(f"s{i}", f"c{i // 2}", "ab"[(i // 2) % 2]) for i in range(40)]  # every case has two slides
    labels = load_labels(pd.DataFrame(rows, columns=["slide_id", "case_id", "y"]), "y")
    split = Split(tuple(labels.slide_id[:30]), tuple(labels.slide_id[30:]), "split_0")
    assert len(budget_split(split, labels, size=10).train_ids) == 10
    with pytest.raises(ManifestError, match="exactly 11"):
        budget_split(split, labels, size=11)


def test_plan_orders_budgets_and_validation_split():
    labels = cohort()
    plan = plan_splits(labels, n_splits=2, budgets=(1.0, 0.5), train_sizes=(20,), seed=0)
    assert [s.budget for s in plan] == ["full", "full", "50p", "50p", "20", "20"]
    fit, val = validation_split(labels, plan[0].train_ids, 0.2, np.random.default_rng(0))
    assert sorted(fit + val) == sorted(plan[0].train_ids) and val
    assert not cases_of(labels, fit) & cases_of(labels, val)


def test_read_splits_blank_padding_and_order(tmp_path):
    (tmp_path / "split_0.csv").write_text("train,test\nA,C\nB,\nD,\n")
    (tmp_path / "split_10.csv").write_text("train,test\nA,\n,\n")
    (tmp_path / "split_2.csv").write_text("train,test\nA, B\n,C\n")
    (tmp_path / "notes.csv").write_text("ignored\n")
    splits = read_splits(tmp_path)
    assert [s.name for s in splits] == ["split_0", "split_2", "split_10"]
    assert splits[0] == Split(("A", "B", "D"), ("C",), "split_0")
    assert splits[1].test_ids == ("B", "C") and splits[2].test_ids == ()
    out = tmp_path / "copy"
    write_splits(splits, out)
    assert read_splits(out) == splits


def test_read_splits_errors(tmp_path):
    with pytest.raises(ManifestError, match="does not exist"):
        read_splits(tmp_path / "nope")
    with pytest.raises(ManifestError, match="no split_"):
        read_splits(tmp_path)
    (tmp_path / "split_0.csv").write_text("train,val\nA,B\n")
    with pytest.raises(ManifestError, match="lacks column"):
        read_splits(tmp_path)
    (tmp_path / "split_0.csv").write_text("train,test\nA,A\n")
    with pytest.raises(ManifestError, match="both sides"):
        read_splits(tmp_path)


def test_case_overlap_refused_with_case_names_unless_allowed():
    labels = load_labels(pd.DataFrame({
        "slide_id": ["a1", "a2", "b1", "c1", "d1"], "case_id": ["A", "A", "B", "C", "D"], "y": [0, 0, 1, 1, 0],
    }), "y")
    split = Split(("a1", "b1", "d1"), ("a2", "c1"), "split_0")
    assert case_overlap(split, dict(zip(labels.slide_id, labels.case_id))) == ["A"]
    with pytest.raises(ManifestError, match="'A'") as err:
        check_splits([split], labels)
    assert "--allow-case-overlap" in str(err.value)
    assert check_splits([split], labels, allow_case_overlap=True) == [1]


def test_missing_ids_listed_with_count():
    missing = [f"ghost{i:02d}" for i in range(12)]
    split = Split(("a", *missing[:6]), ("b", *missing[6:]), "split_0")
    with pytest.raises(ManifestError) as err:
        check_ids([split], {"a", "b"}, what="the embeddings")
    text = str(err.value)
    assert "12: 'ghost00'" in text and "'ghost09' and 2 more" in text and "'ghost10'" not in text
    assert "the embeddings" in text and "remove them" in text
    with pytest.raises(ManifestError, match="differ only by case"):
        check_ids([Split(("A.svs",), (), "s")], {"a"})


def test_a_budget_too_small_for_the_classes_asks_for_a_larger_one():
    """#25: --budget 0.01 leaves fewer training slides than classes; the fix is a larger budget, not a smaller."""
    labels = load_labels(pd.DataFrame({"slide_id": [f"s{i}" for i in range(40)], "case_id": [f"c{i}" for i in range(40)],
                                       "y": ["a", "b"] * 20}), "y")
    split = make_splits(labels, n_splits=1, test_fraction=0.25)[0]
    with pytest.raises(ConfigError, match=r"asks for 0 training slides .* Choose a larger --train-size/--budget "
                                          r"\(--budget 0.067 or more"):
        budget_split(split, labels, fraction=0.01)
    with pytest.raises(ConfigError, match="Choose a smaller --train-size/--budget."):
        budget_split(split, labels, size=31)


# ------------------------------------------------------------------------------------------------ unseen centres
def centred(n_cases=60, seed=0):
    gen = np.random.default_rng(seed)
    rows = []
    for case in range(n_cases):
        label, centre = "ab"[case % 2], f"c{(case // 2) % 4}"
        for _ in range(2 if gen.random() < 0.3 else 1):
            rows.append((f"s{len(rows):03d}", f"case{case:03d}", label, centre))
    frame = pd.DataFrame(rows, columns=["slide_id", "case_id", "y", "center"])
    return frame


def test_centre_splits_hold_out_each_centre_in_turn():
    from gigassl.evaluation.labels import task_table
    from gigassl.evaluation.splits import centre_splits

    frame = centred()
    frame.loc[0, "center"] = "c1"  # case000's first slide in c1, its second (if any) stays in c0
    frame.loc[1, "case_id"] = frame.loc[0, "case_id"]  # and a patient with slides in c1 and c0 for sure
    frame.loc[1, "center"] = "c0"
    labels = task_table(frame, "y")
    splits, skipped = centre_splits(labels)
    assert [s.name for s in splits] == ["held_out:c0", "held_out:c1", "held_out:c2", "held_out:c3"] and not skipped
    centre = dict(zip(labels.slide_id, labels.center))
    for split in splits:
        name = split.name.split(":")[1]
        assert sorted(split.test_ids) == sorted(s for s in labels.slide_id if centre[s] == name)
        assert not {centre[s] for s in split.train_ids} & {name}
        assert not case_overlap(split, dict(zip(labels.slide_id, labels.case_id)))
        test_cases = set(labels.case_id[labels.slide_id.isin(split.test_ids)])
        assert sorted(split.train_ids) == sorted(s for s, c in zip(labels.slide_id, labels.case_id)
                                                 if centre[s] != name and c not in test_cases)
    assert frame.loc[0, "slide_id"] not in splits[0].train_ids  # its patient is tested on c0


def test_centre_splits_skip_a_one_class_centre_with_the_reason():
    from gigassl.evaluation.labels import task_table
    from gigassl.evaluation.splits import centre_splits

    frame = centred()
    frame.loc[frame.center == "c3", "y"] = "a"
    frame.loc[frame.index[frame.center == "c2"][0], "y"] = "a"
    frame.loc[frame.center == "c2", "y"] = ["a"] + ["b"] * (int((frame.center == "c2").sum()) - 1)
    splits, skipped = centre_splits(task_table(frame, "y"))
    assert "held_out:c3" not in [s.name for s in splits] and "fewer than two classes" in skipped["c3"]
    assert "held_out:c2" in [s.name for s in splits]
    splits, skipped = centre_splits(task_table(frame, "y"), min_per_class=2)
    assert set(skipped) == {"c2", "c3"}  # c2 holds a single slide of class a
    with pytest.raises(ConfigError, match="min_per_class"):
        centre_splits(task_table(frame, "y"), min_per_class=0)
    with pytest.raises(ManifestError, match="at least two centres"):
        centre_splits(task_table(frame.drop(columns="center"), "y"))
    with pytest.raises(ManifestError, match="at least two centres"):
        centre_splits(task_table(frame.assign(center="c0"), "y"))
