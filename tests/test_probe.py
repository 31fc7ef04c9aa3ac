import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler, normalize
from sklearn.utils.estimator_checks import parametrize_with_checks

from gigassl.errors import ConfigError
from gigassl.evaluation.metrics import auc_score
from gigassl.evaluation.probe import LinearProbe, TunedLinearProbe, _preprocess


@parametrize_with_checks([
    LinearProbe(), LinearProbe(preprocessing="standard"), LinearProbe(preprocessing="none"),
    LinearProbe(preprocessing="l2+standard"),
    # a small grid: the checks test the estimator's contract, not the grid (their 300-row blobs cost the kernel-form
    # inner CV an O((3n)^3) solve per Newton step: 17 s a check with the default grid, see benchmarks/logistic.py)
    TunedLinearProbe(Cs=(0.1, 10.0), preprocessings=("l2", "standard"), inner_splits=2),
])
def test_sklearn_conformance(estimator, check):
    check(estimator)


def data(n=200, d=16, k=2, seed=0):
    gen = np.random.default_rng(seed)
    y = gen.integers(0, k, n)
    X = gen.normal(size=(n, d)) + gen.normal(size=(k, d))[y]
    return X, y


@pytest.mark.parametrize("preprocessing, transform", [
    ("l2", normalize), ("standard", lambda X: StandardScaler().fit_transform(X)), ("none", lambda X: X),
])
@pytest.mark.parametrize("k", [2, 3])
def test_probe_is_the_authors_logistic_regression(preprocessing, transform, k):
    X, y = data(k=k)
    probe = LinearProbe(preprocessing=preprocessing).fit(X, y)
    ref = LogisticRegression(C=10, class_weight="balanced", max_iter=1000).fit(transform(X), y)
    np.testing.assert_allclose(probe.coef_, ref.coef_, rtol=1e-6, atol=1e-8)
    assert list(probe.classes_) == list(ref.classes_)
    assert probe.predict_proba(X).shape == (len(X), k)
    np.testing.assert_allclose(probe.predict_proba(X).sum(axis=1), 1.0)


def test_threads_do_not_change_the_result():
    X, y = data(k=3, d=64)
    one = LinearProbe(n_threads=1).fit(X, y).predict_proba(X)
    default = LinearProbe(n_threads=None).fit(X, y).predict_proba(X)
    np.testing.assert_allclose(one, default, rtol=1e-9, atol=1e-12)


def test_probe_rejects_unknown_preprocessing():
    with pytest.raises(ConfigError, match="'minmax' is not allowed.*'l2', 'standard', 'l2\\+standard', 'none'"):
        LinearProbe(preprocessing="minmax").fit(*data())


def test_l2_then_standard_preprocessing():
    X, y = data(d=8)
    probe = LinearProbe(preprocessing="l2+standard").fit(X, y)
    ref = LogisticRegression(C=10, class_weight="balanced", max_iter=1000).fit(
        StandardScaler().fit_transform(normalize(X)), y)
    np.testing.assert_allclose(probe.coef_, ref.coef_, rtol=1e-6, atol=1e-8)


def test_tuned_probe_chooses_on_training_rows_only():


    X, y = data(n=120, d=12, k=2, seed=3)
    probe = TunedLinearProbe(Cs=(0.01, 1.0, 100.0), seed=0).fit(X, y)
    assert len(probe.cv_results_) == 9 and probe.best_params_["preprocessing"] in ("l2", "standard", "l2+standard")
    best = max(probe.cv_results_, key=lambda r: r["score"])
    assert probe.best_score_ == best["score"]
    refit = LinearProbe(**probe.best_params_).fit(X, y)
    np.testing.assert_allclose(probe.predict_proba(X), refit.predict_proba(X))
    with pytest.raises(ConfigError, match="minmax"):
        TunedLinearProbe(preprocessings=("minmax",)).fit(X, y)


def test_tuned_probe_choice_matches_sklearn_inner_fits():
    """The inner CV (solved in kernel form) scores each candidate as scikit-learn's own fits would."""
    from sklearn.model_selection import StratifiedGroupKFold



    X, y = data(n=90, d=40, k=3, seed=5)
    probe = TunedLinearProbe(Cs=(0.1, 10.0), seed=0).fit(X, y)
    folds = list(StratifiedGroupKFold(n_splits=3, shuffle=True, random_state=0).split(X, y, np.arange(len(y))))
    for row in probe.cv_results_:
        aucs = []
        for train, test in folds:
            a, b = _preprocess(row["preprocessing"], X[train], X[test])
            model = LogisticRegression(C=row["C"], class_weight="balanced", tol=1e-10, max_iter=10_000).fit(a, y[train])
            aucs.append(auc_score(y[test], model.predict_proba(b), model.classes_))
        assert abs(row["score"] - np.mean(aucs)) < 1e-3


def duplicated_cases(seed=1, n_cases=30, dims=100):
    """Each case's row three times (a little noise), random case labels, more dims than cases: an inner CV that
    splits a case puts copies of its test rows in training and memorises them."""
    g = np.random.default_rng(seed)
    y_case = g.integers(0, 2, n_cases)
    y_case[:2] = [0, 1]
    cases = np.repeat(np.arange(n_cases), 3)
    X = g.normal(size=(n_cases, dims))[cases] + 0.01 * g.normal(size=(len(cases), dims))
    return X, y_case[cases], cases


def test_tuned_probe_inner_folds_keep_a_case_together():
    X, y, cases = duplicated_cases()
    grouped = TunedLinearProbe(Cs=(1.0, 100.0)).fit(X, y, groups=cases)
    leaky = TunedLinearProbe(Cs=(1.0, 100.0)).fit(X, y)
    assert leaky.best_score_ > 0.95  # copies of the test rows in training: memorised
    assert grouped.best_score_ < 0.85  # random labels per case: near chance once cases stay whole
    with pytest.raises(ValueError, match=r"groups has shape \(89,\); it must be \(90,\)"):
        TunedLinearProbe().fit(X, y, groups=cases[:-1])


def test_tuned_probe_gets_groups_by_metadata_routing():
    """Inside cross_validate with metadata routing, the requested groups reach fit (the inner folds)."""
    import sklearn
    from sklearn.exceptions import UnsetMetadataPassedError
    from sklearn.model_selection import GroupKFold, cross_validate

    X, y, cases = duplicated_cases()
    outer = GroupKFold(n_splits=3)
    with sklearn.config_context(enable_metadata_routing=True):
        probe = TunedLinearProbe(Cs=(1.0, 100.0)).set_fit_request(groups=True)
        routed = cross_validate(probe, X, y, cv=outer, params={"groups": cases}, return_estimator=True)
        with pytest.raises(UnsetMetadataPassedError, match="set_fit_request"):
            cross_validate(TunedLinearProbe(), X, y, cv=outer, params={"groups": cases})
    for fitted, (train, _) in zip(routed["estimator"], outer.split(X, y, cases)):
        direct = TunedLinearProbe(Cs=(1.0, 100.0)).fit(X[train], y[train], groups=cases[train])
        assert fitted.cv_results_ == direct.cv_results_
        assert fitted.best_score_ < 0.95  # not the leaky, ungrouped inner CV
