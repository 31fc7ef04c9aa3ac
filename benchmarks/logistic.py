"""Benchmark of the fair protocol's logistic regression along a path of C: the kernel-form Newton path
(:mod:`gigassl.evaluation.logistic`) against scikit-learn's solvers on the same inner cross-validation.

Data: ``--splits`` training sets of ``--train`` slides x ``--dims`` dimensions (default 100 x 512, the demo's sizes),
``--classes`` classes, random but learnable and anisotropic like slide embeddings (a shared offset plus a class
shift of 0.06 per dimension: the best inner-CV AUC is about 0.65 at 512 dims, a weak signal where the choice of C
matters, not a separable toy), preprocessed as the probe does (``--preprocessing``, default l2). Each training set
is cut into ``--folds`` stratified inner folds (default 5) and every fold's training rows are fitted along
``--n-cs`` values of C (default 10, log-spaced from 0.01 to 1000, the probe's range), class-balanced, L2 penalty,
intercept not penalised.

Methods (one BLAS thread; CPU seconds of this process summed over the training sets, which a busy machine's other
jobs do not inflate as they do wall seconds):

- ``kernel``: :func:`gigassl.evaluation.logistic.logistic_path` on the fold's Gram matrix, warm-started along C;
- ``lbfgs``: ``LogisticRegression(solver="lbfgs", warm_start=True)`` refitted along C, the probe's tol and max_iter
  (what :class:`~gigassl.evaluation.probe.LinearProbe` fits);
- ``lbfgs_tight``: the same at ``tol=1e-8`` (max_iter 10000), the tolerance the kernel's agreement asks of lbfgs;
- ``newton_cholesky``: the same with scikit-learn's primal Newton solver (a (F+1)-square system per step);
- ``logregcv``: one ``LogisticRegressionCV(Cs=..., cv=folds, refit=False)`` per training set, scikit-learn's own
  path-and-folds search (lbfgs; its time includes its ROC AUC scoring).

Agreement, against a reference fit per fold and C (``newton-cholesky`` at ``tol=1e-12``, not timed):
``<method>_coef_difference`` (largest ``max|W - W_ref| / max|W_ref|`` over folds and C; W the (k, F) weights, the
kernel's ``W = A^T X``), ``<method>_auc_difference`` (largest difference of a fold's held-out ROC AUC, all methods
scored by :func:`gigassl.evaluation.metrics.auc_score`) and ``<method>_same_best_c`` (training sets where the best
C by mean inner AUC is the reference's).

Usage: ``python benchmarks/logistic.py [--dims 16] [--classes 3] [--dry-run]``
(``--dry-run``: 2 training sets of 30 slides x 16 dims, 3 folds, 4 values of C; the test suite runs it).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from gigassl.evaluation import logistic
from gigassl.evaluation.metrics import auc_score
from gigassl.evaluation.probe import _preprocess

from _cohort import dry_run_option, machine

METHODS = ("kernel", "lbfgs", "lbfgs_tight", "newton_cholesky", "logregcv")


def training_set(gen: np.random.Generator, n: int, dims: int, classes: int, preprocessing: str):
    """(X (n, dims) preprocessed, y (n,)): an offset, Gaussian noise and a class shift (0.06 a dimension)."""
    y = gen.integers(0, classes, n)
    y[:classes] = np.arange(classes)
    X = 3.0 + gen.normal(size=(n, dims)) + 0.06 * gen.normal(size=(classes, dims))[y]
    return _preprocess(preprocessing, X, X[:1])[0], y


def kernel_fits(X, y, folds, Cs):
    """{(fold, C index): (W (k, F), b (k,), held-out probabilities)} by the kernel-form path."""
    out = {}
    for f, (train, test) in enumerate(folds):
        classes, index = np.unique(y[train], return_inverse=True)
        path = logistic.logistic_path(X[train] @ X[train].T, index, Cs, logistic.balanced_weights(y[train]),
                                      max_iter=1000)
        kernel = X[test] @ X[train].T
        for c, (A, b) in enumerate(path):
            out[(f, c)] = ((X[train].T @ A).T, b, logistic.predict_proba(kernel, A, b))
    return out


def sklearn_fits(X, y, folds, Cs, solver: str, tol: float = 1e-4, warm: bool = True, max_iter: int = 1000):
    """The same fits by scikit-learn's ``LogisticRegression(solver=solver)``, warm-started along C when ``warm``."""
    out = {}
    for f, (train, test) in enumerate(folds):
        model = LogisticRegression(solver=solver, class_weight="balanced", tol=tol, max_iter=max_iter,
                                   warm_start=warm)
        for c, C in enumerate(Cs):
            model.set_params(C=C).fit(X[train], y[train])
            out[(f, c)] = (model.coef_.copy(), model.intercept_.copy(), model.predict_proba(X[test]))
    return out


def logregcv_fits(X, y, folds, Cs):
    """The fits of one ``LogisticRegressionCV`` over the folds and Cs (refit=False; scored by roc_auc)."""
    scoring = "roc_auc" if len(np.unique(y)) == 2 else "roc_auc_ovr"
    model = LogisticRegressionCV(Cs=list(Cs), l1_ratios=(0.0,), cv=folds, scoring=scoring, solver="lbfgs", tol=1e-4,
                                 max_iter=1000, class_weight="balanced", refit=False, use_legacy_attributes=False)
    model.fit(X, y)
    out = {}
    for f, (train, test) in enumerate(folds):
        for c in range(len(Cs)):
            full = model.coefs_paths_[f, 0, c]  # (k, F + 1): the weights, then the intercept
            W, b = full[:, :-1], full[:, -1]
            scores = X[test] @ W.T + b
            if W.shape[0] == 1:
                p = 1 / (1 + np.exp(-scores))
                proba = np.hstack([1 - p, p])
            else:
                e = np.exp(scores - scores.max(1, keepdims=True))
                proba = e / e.sum(1, keepdims=True)
            out[(f, c)] = (W, b, proba)
    return out


def compare(fits: dict, reference: dict, y, folds, Cs) -> tuple[float, float, int, float]:
    """(largest relative weight difference, largest held-out AUC difference, index of the best C by mean AUC, that
    best mean AUC)."""
    coef_diff, auc_diff, mean_auc = 0.0, 0.0, np.zeros(len(Cs))
    for (f, c), (W, _, proba) in fits.items():
        W_ref, _, proba_ref = reference[(f, c)]
        coef_diff = max(coef_diff, float(np.abs(W - W_ref).max() / np.abs(W_ref).max()))
        test = folds[f][1]
        classes = np.unique(y[folds[f][0]])
        auc, auc_ref = auc_score(y[test], proba, classes), auc_score(y[test], proba_ref, classes)
        auc_diff = max(auc_diff, abs(auc - auc_ref))
        mean_auc[c] += auc / len(folds)
    return coef_diff, auc_diff, int(np.argmax(mean_auc)), float(mean_auc.max())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--splits", type=int, default=10, help="training sets (default 10)")
    parser.add_argument("--train", type=int, default=100, help="slides of a training set (default 100)")
    parser.add_argument("--dims", type=int, default=512, help="embedding dimensions (default 512)")
    parser.add_argument("--classes", type=int, default=2, help="classes (default 2)")
    parser.add_argument("--folds", type=int, default=5, help="inner folds (default 5)")
    parser.add_argument("--n-cs", type=int, default=10, help="values of C, log-spaced in [0.01, 1000] (default 10)")
    parser.add_argument("--preprocessing", default="l2", choices=("l2", "standard", "l2+standard", "none"))
    dry_run_option(parser)
    args = parser.parse_args(argv)
    if args.dry_run:
        args.splits, args.train, args.dims, args.folds, args.n_cs = 2, 30, 16, 3, 4
    Cs = np.logspace(-2, 3, args.n_cs)
    gen = np.random.default_rng(0)
    seconds = dict.fromkeys(METHODS, 0.0)
    worst = {m: [0.0, 0.0, 0] for m in METHODS}
    best_aucs = []
    runs = {
        "kernel": kernel_fits,
        "lbfgs": lambda X, y, folds, Cs: sklearn_fits(X, y, folds, Cs, "lbfgs"),
        "lbfgs_tight": lambda X, y, folds, Cs: sklearn_fits(X, y, folds, Cs, "lbfgs", tol=1e-8, max_iter=10_000),
        "newton_cholesky": lambda X, y, folds, Cs: sklearn_fits(X, y, folds, Cs, "newton-cholesky"),
        "logregcv": logregcv_fits,
    }
    print(f"machine: {machine()}")
    print(f"splits: {args.splits}  train: {args.train}  dims: {args.dims}  classes: {args.classes}  "
          f"folds: {args.folds}  Cs: {args.n_cs}  preprocessing: {args.preprocessing}")
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs at its iteration cap on the largest C
        for _ in range(args.splits):
            X, y = training_set(gen, args.train, args.dims, args.classes, args.preprocessing)
            cv = StratifiedKFold(n_splits=args.folds, shuffle=True, random_state=int(gen.integers(2**31)))
            folds = list(cv.split(X, y))
            reference = sklearn_fits(X, y, folds, Cs, "newton-cholesky", tol=1e-12, warm=False)
            _, _, best_ref, best_auc = compare(reference, reference, y, folds, Cs)
            best_aucs.append(best_auc)
            for method, run in runs.items():
                start = time.process_time()
                fits = run(X, y, folds, Cs)
                seconds[method] += time.process_time() - start
                coef_diff, auc_diff, best, _ = compare(fits, reference, y, folds, Cs)
                worst[method][0] = max(worst[method][0], coef_diff)
                worst[method][1] = max(worst[method][1], auc_diff)
                worst[method][2] += best == best_ref
    print(f"reference_best_inner_auc: {np.mean(best_aucs):.3f} (mean over the training sets)")
    for method in METHODS:
        print(f"{method}_seconds: {seconds[method]:.4f}")
    for method in METHODS:
        print(f"{method}_coef_difference: {worst[method][0]:.1e}")
        print(f"{method}_auc_difference: {worst[method][1]:.1e}")
        print(f"{method}_same_best_c: {worst[method][2]}/{args.splits}")
    print(f"lbfgs_over_kernel: {seconds['lbfgs'] / seconds['kernel']:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
