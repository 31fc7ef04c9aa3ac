"""Benchmark of the fair protocol's inner cross-validation: the kernel-form path (gigassl.evaluation.logistic) against the same
grid fitted with scikit-learn's LogisticRegression (warm-started along C) and scored with roc_auc_score.

Data: ``--splits`` training sets of ``--train`` slides x ``--dims`` dimensions (default 90 x 512, a demo split),
``--classes`` classes (2 or 3), random but learnable and anisotropic like slide embeddings (a shared direction
plus a class shift). Grid: the demo's 3 preprocessings x 6 values of C x 3 inner folds.

Prints (``key: value`` a line): ``kernel_seconds`` and ``sklearn_seconds`` (wall, one BLAS thread, summed over the
splits), ``speedup``, ``same_choice`` (splits where both pick the same preprocessing and C) and
``max_score_difference`` (largest difference of an inner-CV score between the two).

Usage: ``python benchmarks/fair_probe.py [--classes 3] [--dry-run]``
(``--dry-run``: 2 training sets of 30 slides x 16 dims; the test suite runs it).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from gigassl.evaluation.probe import TunedLinearProbe, _preprocess

from _cohort import dry_run_option


def sklearn_grid(X, y, probe: TunedLinearProbe) -> dict:
    """The inner CV of ``probe`` done with scikit-learn fits and metrics: {(prep, C): mean AUC}."""
    folds = probe._folds(X, y, None)
    scores = {}
    for prep in probe.preprocessings:
        per_c = {float(C): [] for C in probe.Cs}
        for train, test in folds:
            a, b = _preprocess(prep, X[train], X[test])
            model = LogisticRegression(class_weight="balanced", max_iter=1000, warm_start=True)
            for C in sorted(probe.Cs):
                model.set_params(C=C).fit(a, y[train])
                p = model.predict_proba(b)
                auc = roc_auc_score(y[test], p[:, 1]) if len(model.classes_) == 2 else roc_auc_score(
                    y[test], p, multi_class="ovr", labels=model.classes_)
                per_c[float(C)].append(auc)
        scores.update({(prep, C): float(np.mean(v)) for C, v in per_c.items()})
    return scores


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--splits", type=int, default=10)
    parser.add_argument("--train", type=int, default=90)
    parser.add_argument("--dims", type=int, default=512)
    parser.add_argument("--classes", type=int, default=2)
    dry_run_option(parser)
    args = parser.parse_args(argv)
    if args.dry_run:
        args.splits, args.train, args.dims = 2, 30, 16
    g = np.random.default_rng(0)
    data = []
    for _ in range(args.splits):
        y = g.integers(0, args.classes, args.train)
        X = 3.0 + g.normal(size=(args.train, args.dims)) + 0.5 * g.normal(size=(args.classes, args.dims))[y]
        data.append((X, y))
    with threadpool_limits(1):
        start = time.perf_counter()
        fitted = [TunedLinearProbe(seed=0).fit(X, y) for X, y in data]
        kernel = time.perf_counter() - start
        start = time.perf_counter()
        reference = [sklearn_grid(X, y, TunedLinearProbe(seed=0)) for X, y in data]
        sk = time.perf_counter() - start
    same, worst = 0, 0.0
    for probe, scores in zip(fitted, reference):
        ours = {(r["preprocessing"], r["C"]): r["score"] for r in probe.cv_results_}
        worst = max(worst, max(abs(ours[k] - scores[k]) for k in scores))
        best = max(scores, key=lambda k: (scores[k], -list(scores).index(k)))
        same += best == (probe.best_params_["preprocessing"], probe.best_params_["C"])
    print(f"splits: {args.splits}  train: {args.train}  dims: {args.dims}  classes: {args.classes}")
    print(f"kernel_seconds: {kernel:.2f}")
    print(f"sklearn_seconds: {sk:.2f}")
    print(f"speedup: {sk / kernel:.1f}")
    print(f"same_choice: {same}/{args.splits}")
    print(f"max_score_difference: {worst:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
