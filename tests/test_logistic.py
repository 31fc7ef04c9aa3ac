"""The kernel-form logistic regression of the fair protocol: scikit-learn's objective and optimum."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from gigassl.evaluation.logistic import balanced_weights, logistic_path, predict_proba


def data(n, d, k, seed=0):
    g = np.random.default_rng(seed)
    y = g.integers(0, k, n)
    X = g.normal(size=(n, d))
    X[:, :3] += 0.8 * y[:, None]
    return X, y, g.normal(size=(15, d))


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("n,d", [(40, 200), (30, 6)])  # more dimensions than rows (the probe's case), and fewer
def test_path_matches_sklearn_probabilities(k, n, d):
    X, y, X_new = data(n, d, k)
    Cs = (0.01, 1.0, 100.0)
    path = logistic_path(X @ X.T, y, Cs, balanced_weights(y))
    for C, (A, b) in zip(Cs, path):
        ref = LogisticRegression(C=C, class_weight="balanced", tol=1e-12, max_iter=100_000).fit(X, y)
        np.testing.assert_allclose(predict_proba(X_new @ X.T, A, b), ref.predict_proba(X_new), atol=1e-4)
        # the primal weights W = X^T A are scikit-learn's
        coef = (X.T @ A).T
        np.testing.assert_allclose(coef, ref.coef_, atol=1e-3 * max(1.0, np.abs(ref.coef_).max()))


def test_path_on_separable_rows_stays_finite():
    X = np.array([[0.0, 1.0], [0.1, 1.0], [5.0, 1.0], [5.1, 1.0]])
    y = np.array([0, 0, 1, 1])
    (A, b), = logistic_path(X @ X.T, y, (1e4,), np.ones(4))
    proba = predict_proba(X @ X.T, A, b)
    assert np.isfinite(proba).all() and (proba.argmax(1) == y).all()


def test_balanced_weights_are_sklearns():
    from sklearn.utils.class_weight import compute_sample_weight

    y = np.array(["a", "a", "a", "b", "c", "c"])
    np.testing.assert_allclose(balanced_weights(y), compute_sample_weight("balanced", y))
