"""Leave-one-patient-out retrieval: the query's patient is never retrieved, the majority vote and its tie rule
against a direct loop, the tidy table, and the book's precision at k moved unchanged."""

import numpy as np
import pandas as pd
import pytest

from gigassl.errors import ConfigError
from gigassl.evaluation.fewshot import COLUMNS
from gigassl.evaluation.labels import load_labels
from gigassl.evaluation.retrieval import (lopo_neighbours, lopo_retrieval, majority_vote, precision_at_k,
                                         retrieval_runs)


def cohort(n_cases=30, seed=0):
    g = np.random.default_rng(seed)
    rows = []
    for case in range(n_cases):
        label = "abc"[case % 3]
        for _ in range(1 + int(g.random() < 0.5)):
            rows.append((f"s{len(rows):03d}", f"p{case:02d}", label))
    frame = pd.DataFrame(rows, columns=["slide_id", "case_id", "y"])
    x = g.normal(size=(len(frame), 6)) + np.array([{"a": 1.0, "b": -1.0, "c": 0.0}[y] for y in frame.y])[:, None]
    return frame, list(frame.slide_id), x


def test_the_query_patient_is_never_retrieved():
    frame, ids, x = cohort()
    cases = frame.case_id.to_numpy()
    # a patient's slides nearly identical: a retrieval that did not leave the patient out would find them first
    same = {c: np.random.default_rng(len(c)).normal(size=6) for c in cases}
    x = x + 10 * np.stack([same[c] for c in cases])
    near = lopo_neighbours(x, cases, k=len(frame))
    for q, row in enumerate(near):
        found = row[row >= 0]
        assert cases[q] not in set(cases[found])
        assert len(found) == (cases != cases[q]).sum()  # and every other patient's slide is there
    assert (near[:, :1] >= 0).all()


def direct(x, labels, cases, k):
    """Top-k majority vote by a loop: other patients' slides by decreasing cosine (row order on ties), the most
    frequent label, a tie to the label seen first."""
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    out = []
    for q in range(len(x)):
        others = [i for i in range(len(x)) if cases[i] != cases[q]]
        others.sort(key=lambda i: (-(unit[q] @ unit[i]), i))
        votes = [labels[i] for i in others[:k]]
        best = max(votes.count(v) for v in votes)
        out.append(next(v for v in votes if votes.count(v) == best) == labels[q])
    return np.mean(out)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_top_k_accuracy_equals_a_direct_loop(k):
    frame, ids, x = cohort()
    table = lopo_retrieval(ids, x, frame, "y", ks=(k,))
    assert table["correct"].mean() == pytest.approx(direct(x, list(frame.y), list(frame.case_id), k))
    out = retrieval_runs({"m": (ids, x)}, frame, "y", ks=(k,))
    assert out.set_index("metric")["value"]["accuracy"] == pytest.approx(table["correct"].mean())


def test_majority_vote_tie_goes_to_the_nearest():
    assert majority_vote(["b", "a", "a", "b", "c"]) == "b"
    assert majority_vote(["c", "a", "a"]) == "a"
    assert majority_vote(["c", "a", "b"]) == "c"


def test_runs_tidy_and_invariant_to_row_order_and_length():
    frame, ids, x = cohort()
    perm = np.random.default_rng(3).permutation(len(ids))
    scaled = x * np.random.default_rng(4).uniform(0.5, 3, size=(len(x), 1))  # cosine ignores row lengths
    out = retrieval_runs({"a": (ids, x), "b": ([ids[i] for i in perm], scaled[perm])}, frame, "y")
    assert list(out.columns[:7]) == list(COLUMNS)
    assert set(out.setting) == {"top-1", "top-3", "top-5"} and set(out.draw) == {0}
    assert set(out.metric) == {"accuracy", "balanced_accuracy", "precision"}
    a, b = (out[out.method == m].set_index(["setting", "metric"])["value"] for m in "ab")
    assert np.allclose(a, b.loc[a.index])
    assert a["top-5", "accuracy"] > 0.6  # the labels are in the embedding
    prec = lopo_retrieval(ids, x, frame, "y", ks=(5,))
    near = lopo_neighbours(x, frame.case_id.to_numpy(), 5)
    y = frame.y.to_numpy()
    assert np.allclose(prec["precision"], (y[near] == y[:, None]).mean(1))
    with pytest.raises(ConfigError, match="retrieval preprocessing"):
        retrieval_runs({"a": (ids, x)}, frame, "y", preprocessing="pca")


def test_standard_preprocessing_scales_columns_before_the_cosine():
    frame, ids, x = cohort()
    z = (x - x.mean(0)) / x.std(0)
    a = lopo_retrieval(ids, x, frame, "y", preprocessing="standard")
    b = lopo_retrieval(ids, z, frame, "y")
    assert (a["vote"] == b["vote"]).all()


def test_precision_at_k_is_the_books_loop():
    from gigassl.evaluation.diagnostics import label_agreement_chance, neighbour_agreement

    frame, ids, x = cohort()
    frame = frame.assign(center=[f"c{i % 4}" for i in range(len(frame))])
    frame.loc[3, "y"] = None
    named = {"m": x, "n": x[:, ::-1] ** 2}
    out = precision_at_k(named, frame, ["y", "center"], ks=(1, 5))
    rows = []
    for representation, matrix in named.items():
        for attribute in ["y", "center"]:
            labelled = frame[attribute].notna().to_numpy()
            for k in (1, 5):
                rows.append({"representation": representation, "attribute": attribute, "k": k,
                             "precision": neighbour_agreement(matrix[labelled], frame[attribute][labelled], k=k),
                             "chance": label_agreement_chance(frame[attribute][labelled], k=k)})
    pd.testing.assert_frame_equal(out, pd.DataFrame(rows))


def test_a_label_table_needs_no_slide_of_each_patient_twice():
    frame, ids, x = cohort(n_cases=4)
    labels = load_labels(frame, "y")
    table = lopo_retrieval(ids, x, labels, "y", ks=(1, 50))
    many = table[table.k == 50]
    assert (many["precision"].notna()).all()  # fewer than k candidates: those there are
