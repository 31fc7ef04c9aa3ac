"""Few-shot probes: draws from the labels only (identical for every representation), K per class, one slide per
patient, the classifiers against direct computations, balanced accuracy, the tidy table."""

from collections import Counter

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from gigassl.errors import ConfigError, ManifestError
from gigassl.evaluation.fewshot import (COLUMNS, PrototypeClassifier, fewshot_draws, fewshot_runs,
                                        make_classifier)
from gigassl.evaluation.labels import load_labels
from gigassl.evaluation.metrics import balanced_accuracy


def table(n_cases=40, classes=("a", "b", "c"), two_slide=0.4, seed=0):
    g = np.random.default_rng(seed)
    rows = []
    for case in range(n_cases):
        label = classes[case % len(classes)]
        for _ in range(2 if g.random() < two_slide else 1):
            rows.append((f"s{len(rows):03d}", f"p{case:03d}", label, f"c{case % 4}"))
    return pd.DataFrame(rows, columns=["slide_id", "case_id", "y", "center"])


def embeddings(frame, dim=8, signal=2.0, seed=0):
    g = np.random.default_rng(seed)
    means = {c: g.normal(size=dim) * signal for c in sorted(frame["y"].unique())}
    return list(frame["slide_id"]), np.stack([means[y] + g.normal(size=dim) for y in frame["y"]])


def test_draws_k_per_class_one_per_patient_disjoint_patients_and_reproducible():
    frame = table()
    labels = load_labels(frame, "y")
    draws = fewshot_draws(labels, "y", ks=(1, 4, 8), n_draws=5, seed=3)
    assert [d.budget for d in draws] == ["K=1"] * 5 + ["K=4"] * 5 + ["K=8"] * 5
    label = dict(zip(labels.slide_id, labels.label))
    case = dict(zip(labels.slide_id, labels.case_id))
    for d in draws:
        k = int(d.budget[2:])
        assert Counter(label[s] for s in d.train_ids) == {c: k for c in "abc"}
        assert len({case[s] for s in d.train_ids}) == len(d.train_ids)  # one slide per patient
        drawn = {case[s] for s in d.train_ids}
        assert sorted(d.test_ids) == sorted(s for s in labels.slide_id if case[s] not in drawn)
    assert fewshot_draws(labels, "y", ks=(1, 4, 8), n_draws=5, seed=3) == draws
    assert fewshot_draws(labels, "y", ks=(4,), n_draws=2, seed=3) == draws[5:7]  # (seed, K, draw) only
    assert fewshot_draws(labels, "y", ks=(4,), n_draws=5, seed=4) != draws[5:10]
    assert len({d.train_ids for d in draws[5:10]}) == 5  # the draws differ


def test_draws_never_reuse_a_patient_holding_slides_of_two_classes():
    frame = pd.DataFrame({"slide_id": [f"s{i}" for i in range(10)],
                          "case_id": ["p0", "p0", "p1", "p2", "p3", "p0", "p4", "p5", "p6", "p7"],
                          "y": ["a"] * 5 + ["b"] * 5})  # p0 holds slides of a and of b
    labels = load_labels(frame, "y")
    case = dict(zip(labels.slide_id, labels.case_id))
    for d in fewshot_draws(labels, "y", ks=(2,), n_draws=30):
        drawn = [case[s] for s in d.train_ids]
        assert len(set(drawn)) == 4 and not {case[s] for s in d.test_ids} & set(drawn)
    labels = load_labels(frame.assign(case_id=["p0", "p0", "p1", "p2", "p1", "p0", "p4", "p5", "p4", "p5"]), "y")
    with pytest.raises(ManifestError, match="patient.s. left after the other classes"):
        fewshot_draws(labels, "y", ks=(2,), n_draws=30)  # b: p0, p4, p5; once a draws p0, b has 2 left


def test_draws_refuse_a_k_the_classes_cannot_afford():
    labels = load_labels(table(n_cases=12), "y")
    with pytest.raises(ManifestError, match="K <= 3"):
        fewshot_draws(labels, "y", ks=(1, 4))
    with pytest.raises(ConfigError):
        fewshot_draws(labels, "y", ks=(0,))


def test_runs_use_identical_draws_for_every_representation():
    frame = table()
    ids, x = embeddings(frame)
    shuffled = np.random.default_rng(1).permutation(len(ids))  # another row order: same slides, same draws
    named = {"a": (ids, x), "b": ([ids[i] for i in shuffled], x[shuffled]), "noise": (ids, np.random.default_rng(2)
                                                                                     .normal(size=x.shape))}
    out = fewshot_runs(named, frame, "y", ks=(1, 2), n_draws=3, classifiers=("prototype", "knn"))
    assert list(out.columns[:7]) == list(COLUMNS)
    assert len(out) == 3 * 2 * 3 * 2 * 2  # methods x K x draws x classifiers x metrics
    key = ["evaluation", "task", "setting", "metric", "draw"]
    a, b = out[out.method == "a"].set_index(key), out[out.method == "b"].set_index(key)
    assert np.allclose(a["value"], b.loc[a.index, "value"])  # row order of a representation does not matter
    assert set(out.setting) == {"prototype:K=1", "prototype:K=2", "knn:K=1", "knn:K=2"}
    mean = out.groupby(["method", "metric"])["value"].mean()
    assert mean["a", "auroc"] > 0.9 and abs(mean["noise", "auroc"] - 0.5) < 0.2


def test_logistic_row_equals_the_probe_fitted_directly():
    frame = table(classes=("a", "b"))
    ids, x = embeddings(frame, signal=0.5)
    out = fewshot_runs({"m": (ids, x)}, frame, "y", ks=(4,), n_draws=2, classifiers=("logistic",), seed=5)
    labels = load_labels(frame, "y")
    draw = fewshot_draws(labels, "y", ks=(4,), n_draws=2, seed=5)[1]
    row = {s: i for i, s in enumerate(ids)}
    label = dict(zip(labels.slide_id, labels.label))
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import normalize

    tr, te = [row[s] for s in draw.train_ids], [row[s] for s in draw.test_ids]
    model = LogisticRegression(C=10, class_weight="balanced", max_iter=1000).fit(
        normalize(x[tr]), [label[s] for s in draw.train_ids])
    y_test = np.array([label[s] for s in draw.test_ids])
    expected = roc_auc_score(y_test == "b", model.predict_proba(normalize(x[te]))[:, 1])
    got = out[(out.draw == 1) & (out.metric == "auroc")]["value"].item()
    assert abs(got - expected) < 1e-6


def test_prototype_classifier_is_the_nearest_normalised_class_mean():
    g = np.random.default_rng(0)
    X, y = g.normal(size=(30, 5)), np.array(list("abc") * 10)
    test = g.normal(size=(12, 5))
    model = PrototypeClassifier(temperature=0.5).fit(X, y)
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    protos = []
    for c in "abc":  # direct: mean of unit rows, then unit length; cosine
        m = unit[y == c].mean(0)
        protos.append(m / np.linalg.norm(m))
    cos = (test / np.linalg.norm(test, axis=1, keepdims=True)) @ np.array(protos).T
    assert np.allclose(model.cosines(test), cos)
    assert list(model.predict(test)) == list(np.array(list("abc"))[cos.argmax(1)])
    soft = np.exp(cos / 0.5) / np.exp(cos / 0.5).sum(1, keepdims=True)
    assert np.allclose(model.predict_proba(test), soft)
    with pytest.raises(ConfigError, match="temperature"):
        PrototypeClassifier(temperature=0).fit(X, y)


@parametrize_with_checks([PrototypeClassifier()])
def test_prototype_classifier_is_a_sklearn_estimator(estimator, check):
    check(estimator)


def test_knn_k_capped_at_the_training_size_and_cosine():
    assert make_classifier("knn", 3).n_neighbors == 3 and make_classifier("knn", 100).n_neighbors == 20
    knn = make_classifier("knn", 4).fit(np.array([[1.0, 0], [2, 0.1], [0, 1], [0.1, 3]]), list("aabb"))
    assert list(knn.predict(np.array([[10.0, 0.5], [0.2, 5]]))) == ["a", "b"]  # direction, not length
    with pytest.raises(ConfigError, match="few-shot classifier"):
        make_classifier("svm", 3)


def test_balanced_accuracy_against_sklearn_and_by_hand():
    y = np.array(list("aaaabbc"))
    p = np.array(list("aabbbba"))
    assert balanced_accuracy(y, p) == pytest.approx((2 / 4 + 2 / 2 + 0 / 1) / 3)
    g = np.random.default_rng(0)
    for _ in range(5):
        y, p = g.choice(list("abcd"), 50), g.choice(list("abcd"), 50)
        assert balanced_accuracy(y, p) == pytest.approx(balanced_accuracy_score(y, p))


def test_a_representation_missing_a_labelled_slide_is_refused():
    frame = table()
    ids, x = embeddings(frame)
    with pytest.raises(ManifestError, match="no embedding of 1 labelled"):
        fewshot_runs({"m": (ids[1:], x[1:])}, frame, "y", ks=(1,), n_draws=1)


def test_a_k_the_smallest_class_cannot_afford_is_left_out_with_a_warning():
    import warnings as _warnings

    from gigassl.evaluation.fewshot import affordable_ks, fewshot_runs

    frame = pd.DataFrame({"slide_id": [f"s{i}" for i in range(14)], "case_id": [f"p{i}" for i in range(14)],
                          "t": ["a"] * 10 + ["b"] * 4})  # class b: 4 patients, so K <= 3
    assert affordable_ks(frame, "t", (1, 2, 4, 8)) == ((1, 2), (4, 8))
    g = np.random.default_rng(0)
    named = {"x": (list(frame["slide_id"]), g.normal(size=(14, 3)))}
    with pytest.warns(UserWarning, match=r"K=\[4, 8\] left out"):
        runs = fewshot_runs(named, frame, "t", ks=(1, 2, 4, 8), n_draws=2, classifiers=("prototype",))
    assert sorted(runs["k"].unique()) == [1, 2]
    with _warnings.catch_warnings():
        _warnings.simplefilter("error")  # every K affordable: no warning
        fewshot_runs(named, frame, "t", ks=(1, 2), n_draws=2, classifiers=("prototype",))
    with pytest.raises(ManifestError, match="use K <= 3"):
        fewshot_runs(named, frame, "t", ks=(4, 8), n_draws=2, classifiers=("prototype",))
