"""Patient-level evaluation: case labels, late fusion by mean embedding and by mean probability against direct
computations, early-fusion case embeddings on the same splits, the tidy table."""

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import normalize

from gigassl.errors import ConfigError, ManifestError
from gigassl.evaluation.fewshot import COLUMNS
from gigassl.evaluation.labels import load_labels
from gigassl.evaluation.patients import EARLY, case_labels, case_means, patient_runs
from gigassl.evaluation.splits import make_splits


def cohort(n_cases=40, seed=0, signal=0.8):
    g = np.random.default_rng(seed)
    rows = []
    for case in range(n_cases):
        label = "ab"[case % 2]
        for _ in range(1 + int(g.random() < 0.5)):
            rows.append((f"s{len(rows):03d}", f"p{case:02d}", label))
    frame = pd.DataFrame(rows, columns=["slide_id", "case_id", "y"])
    x = g.normal(size=(len(frame), 6)) + signal * (frame.y == "b").to_numpy()[:, None]
    return frame, list(frame.slide_id), x


def direct_probe(x_train, y_train, x_test):
    model = LogisticRegression(C=10, class_weight="balanced", max_iter=1000).fit(normalize(x_train), y_train)
    return model.predict_proba(normalize(x_test))[:, 1]


def test_case_labels_majority_ties_to_the_first_sorted():
    frame = pd.DataFrame({"slide_id": list("abcdef"), "case_id": ["p", "p", "p", "q", "q", "r"],
                          "label": ["y", "x", "y", "y", "x", "z"]})
    assert case_labels(frame).to_dict() == {"p": "y", "q": "x", "r": "z"}
    names, means = case_means(np.arange(12.0).reshape(6, 2), frame.case_id)
    assert names == ["p", "q", "r"] and np.allclose(means, [[2, 3], [7, 8], [10, 11]])


@pytest.mark.parametrize("draw", [0, 1, 2])
def test_late_fusions_equal_direct_computations_per_patient(draw):
    frame, ids, x = cohort(n_cases=80, signal=0.3)
    out = patient_runs({"m": (ids, x)}, frame, "y", n_splits=3, test_fraction=0.4, seed=1)
    assert list(out.columns[:7]) == list(COLUMNS)
    assert set(out.metric) == {"auroc", "balanced_accuracy"} and set(out.draw) == {0, 1, 2}
    split = make_splits(load_labels(frame, "y"), 3, 0.4, 1)[draw]
    case = dict(zip(frame.slide_id, frame.case_id))
    label = dict(zip(frame.slide_id, frame.y))
    row = {s: i for i, s in enumerate(ids)}
    train_cases = sorted({case[s] for s in split.train_ids})
    test_cases = sorted({case[s] for s in split.test_ids})
    of_case = {c: [row[s] for s in ids if case[s] == c] for c in set(case.values())}
    y_case = {c: label[ids[of_case[c][0]]] for c in of_case}
    truth = [y_case[c] == "b" for c in test_cases]
    part = out[out.draw == draw].set_index(["setting", "metric"])
    # mean embedding per patient, then the probe on patients
    mean = {c: x[of_case[c]].mean(0) for c in of_case}
    p = direct_probe(np.stack([mean[c] for c in train_cases]), [y_case[c] for c in train_cases],
                     np.stack([mean[c] for c in test_cases]))
    assert abs(part.loc[("late:mean_embedding", "auroc"), "value"] - roc_auc_score(truth, p)) < 1e-6
    assert part.loc[("late:mean_embedding", "auroc"), "n_test"] == len(test_cases)
    assert part.loc[("late:mean_embedding", "auroc"), "n_train"] == len(train_cases)
    # the probe on slides, its probabilities averaged per patient
    p = direct_probe(x[[row[s] for s in split.train_ids]], [label[s] for s in split.train_ids],
                     x[[row[s] for s in split.test_ids]])
    fused = np.array([np.mean([p[i] for i, s in enumerate(split.test_ids) if case[s] == c]) for c in test_cases])
    assert abs(part.loc[("late:mean_probability", "auroc"), "value"] - roc_auc_score(truth, fused)) < 1e-6
    recall = [np.mean((fused > 0.5)[np.array(truth) == t] == t) for t in (False, True)]
    assert abs(part.loc[("late:mean_probability", "balanced_accuracy"), "value"] - np.mean(recall)) < 1e-9


def test_early_fusion_is_scored_on_the_same_patient_splits():
    frame, ids, x = cohort()
    names, means = case_means(x, frame.case_id)
    perm = np.random.default_rng(0).permutation(len(names))
    out = patient_runs({"m": (ids, x)}, frame, "y", n_splits=3, fusions=("mean_embedding",),
                       early={"m": ([names[i] for i in perm], means[perm])})
    late = out[out.setting == "late:mean_embedding"].set_index(["draw", "metric"])["value"]
    early = out[out.setting == EARLY].set_index(["draw", "metric"])["value"]
    assert np.allclose(late, early.loc[late.index])  # the case means given as early embeddings: the same scores
    with pytest.raises(ManifestError, match="lack 1 labelled case"):
        patient_runs({}, frame, "y", n_splits=1, early={"m": (names[1:], means[1:])})
    with pytest.raises(ConfigError, match="patient fusion"):
        patient_runs({"m": (ids, x)}, frame, "y", fusions=("max",))


def test_fusion_helps_when_each_slide_is_a_noisy_view_of_its_patient():
    g = np.random.default_rng(3)
    rows, vectors = [], []
    for case in range(80):
        label = "ab"[case % 2]
        centre = g.normal(size=4) * 0.3 + (1.0 if label == "b" else 0.0)
        for _ in range(3):
            rows.append((f"s{len(rows):03d}", f"p{case:02d}", label))
            vectors.append(centre + g.normal(size=4) * 2.0)
    frame = pd.DataFrame(rows, columns=["slide_id", "case_id", "y"])
    out = patient_runs({"m": (list(frame.slide_id), np.array(vectors))}, frame, "y", n_splits=5,
                       preprocessing="standard")
    mean = out[out.metric == "auroc"].groupby("setting")["value"].mean()
    from gigassl.evaluation.protocol import run_probe

    slide_level = run_probe((list(frame.slide_id), np.array(vectors)), frame, "y", n_splits=5, budgets=(1.0,),
                            train_sizes=(), preprocessing="standard")["auc"].mean()
    assert mean["late:mean_probability"] > slide_level + 0.03 and mean["late:mean_embedding"] > slide_level + 0.03
