import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from gigassl.evaluation.metrics import auc_score, binary_auc, bootstrap_ci


def test_auc_matches_sklearn_binary_and_multiclass():
    gen = np.random.default_rng(1)
    y2 = np.array(["neg", "pos"])[gen.integers(0, 2, 50)]
    p = gen.random(50)
    assert auc_score(y2, np.c_[1 - p, p], np.array(["neg", "pos"])) == pytest.approx(roc_auc_score(y2 == "pos", p))
    y3 = gen.integers(0, 3, 60)
    p3 = gen.dirichlet(np.ones(3), 60)
    expected = roc_auc_score(y3, p3, multi_class="ovr", average="macro")
    assert auc_score(y3, p3, np.arange(3)) == pytest.approx(expected)


def test_auc_with_a_class_missing_from_the_test_set():
    gen = np.random.default_rng(2)
    y = gen.integers(0, 2, 40)  # class 2 absent
    p = gen.dirichlet(np.ones(3), 40)
    expected = np.mean([roc_auc_score(y == c, p[:, c]) for c in (0, 1)])
    assert auc_score(y, p, np.arange(3)) == pytest.approx(expected)
    with pytest.warns(UserWarning, match="fewer than two classes"):
        assert np.isnan(auc_score(np.zeros(5, int), p[:5], np.arange(3)))
    with pytest.warns(UserWarning, match="fewer than two classes"):
        assert np.isnan(auc_score(np.ones(5, int), p[:5, :2], np.arange(2)))


def test_bootstrap_ci_is_seeded():
    values = np.array([0.8, 0.85, 0.9, 0.82, np.nan])
    low, high = bootstrap_ci(values, 500, seed=1)
    assert low <= np.nanmean(values) <= high
    assert bootstrap_ci(values, 500, seed=1) == (low, high)


def test_binary_auc_is_roc_auc_score_with_ties():


    g = np.random.default_rng(0)
    for i in range(200):
        y = g.integers(0, 2, 25).astype(bool)
        y[:2] = [True, False]
        score = g.integers(0, 4, 25) / 3 if i % 2 else g.normal(size=25)  # ties on every other draw
        assert abs(binary_auc(y, score) - roc_auc_score(y, score)) < 1e-12
