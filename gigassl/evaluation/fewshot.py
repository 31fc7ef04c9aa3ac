"""Few-shot probes of slide embeddings (issue #26 item 2): K labelled slides per class, many draws.

Beyond the paper, whose smallest budget is 50 training slides (Fig. 2): the field's foundation-model benchmarks
(e.g. UNI, Chen et al., Nat. Med. 2024) report K in {1, 2, 4, 8, 16} training slides per class, over many draws,
with three classifiers of increasing simplicity:

- ``logistic``: the paper's linear probe (:class:`gigassl.evaluation.probe.LinearProbe`, C = 10, class-balanced);
- ``knn``: k nearest neighbours by cosine distance, k = min(20, n_train) (UNI's ``eval_knn`` default
  ``n_neighbors=20``), votes weighted by inverse distance (with uniform votes and k = n_train, every test slide
  would get the same probabilities);
- ``prototype``: :class:`PrototypeClassifier`, the class means of the L2-normalised embeddings, predicting by cosine
  (SimpleShot, Wang et al. 2019, without its centring; UNI's "prototype" few-shot classifier).

:func:`fewshot_draws` makes the draws from the labels and a seed only, so every representation is scored on the
same draws; :func:`fewshot_runs` returns the tidy table of the shared evaluation contract (columns
:data:`COLUMNS`), one row per (method, classifier, K, draw, metric) with metrics ``auroc``
(:func:`gigassl.evaluation.metrics.auc_score`) and ``balanced_accuracy``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import normalize
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ..config import ProbeConfig, refused
from ..errors import ManifestError, format_ids, suggest
from ..seeding import rng
from .labels import task_table
from .metrics import classification_scores
from .probe import LinearProbe
from .splits import Split

# The columns of every evaluation's tidy table (the shared contract of issue #26), before any extra column.
COLUMNS = ("method", "evaluation", "task", "setting", "draw", "metric", "value")
KS = (1, 2, 4, 8, 16)  # training slides per class (issue #26; UNI's few-shot settings)
N_DRAWS = 20  # draws per K (issue #26: at least 20, the same for every representation)
KNN_NEIGHBOURS = 20  # UNI's eval_knn default n_neighbors
CLASSIFIERS = ("logistic", "knn", "prototype")


class PrototypeClassifier(ClassifierMixin, BaseEstimator):
    """Nearest class mean by cosine: each class's prototype is the mean of its L2-normalised training rows.

    ``predict_proba`` is the softmax over classes of the cosines between a row and the prototypes, divided by
    ``temperature`` (its ranking, hence a binary AUROC, does not depend on the temperature; ``predict`` is the
    prototype of highest cosine, the first in ``classes_`` on ties).

    Attributes:
        classes_: (n_classes,) sorted labels; prototypes_: (n_classes, F), unit rows (a class mean of norm 0 stays 0).

    Shape: X (S, F) -> predict_proba (S, n_classes).
    """

    def __init__(self, temperature: float = 1.0):
        self.temperature = temperature

    def fit(self, X, y):
        """Class means of the L2-normalised rows of X (S, F) by label y (S,); returns self."""
        if not float(self.temperature) > 0:
            raise refused("PrototypeClassifier.temperature", self.temperature, "a number > 0", "e.g. 1.0.")
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        x = normalize(X)
        self.prototypes_ = normalize(np.stack([x[y == c].mean(axis=0) for c in self.classes_]))
        return self

    def cosines(self, X) -> np.ndarray:
        """Cosine of each row of X with each prototype: (S, n_classes)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return normalize(X) @ self.prototypes_.T

    def predict_proba(self, X) -> np.ndarray:
        """Softmax of cosines / temperature: (S, n_classes), columns in the order of ``classes_``."""
        z = self.cosines(X) / float(self.temperature)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        cosines = self.cosines(X)  # checks the fit first
        return self.classes_[np.argmax(cosines, axis=1)]


def make_classifier(name: str, n_train: int, preprocessing: str = "l2", config: ProbeConfig | None = None,
                    neighbours: int = KNN_NEIGHBOURS):
    """The unfitted estimator ``name`` (one of :data:`CLASSIFIERS`) for a training set of ``n_train`` slides."""
    config = config or ProbeConfig()
    if name == "logistic":
        return LinearProbe(C=config.C, max_iter=config.max_iter, preprocessing=preprocessing)
    if name == "knn":
        return KNeighborsClassifier(n_neighbors=max(1, min(int(neighbours), int(n_train))), metric="cosine",
                                    weights="distance", algorithm="brute")
    if name == "prototype":
        return PrototypeClassifier()
    raise refused("few-shot classifier", name, "one of " + ", ".join(CLASSIFIERS), "")


def select_rows(ids, matrix, wanted, method: str) -> np.ndarray:
    """The rows of ``matrix`` (S, D) of the slides ``wanted``, looked up in ``ids``: (len(wanted), D) float64.

    Raises:
        ManifestError: a wanted slide that the representation lacks (every representation must cover the labels,
            so that all are scored on the same slides).
    """
    row = {str(s): i for i, s in enumerate(ids)}
    missing = [s for s in wanted if s not in row]
    if missing:
        raise ManifestError(suggest(
            f"Representation {method!r} has no embedding of {len(missing)} labelled slide(s) "
            f"({format_ids(missing)}).",
            "embed those slides with this representation too",
            "or drop them from the label table, for every representation alike"))
    return np.asarray(matrix, dtype=np.float64)[[row[s] for s in wanted]]


def method_rows(named: dict, frame: pd.DataFrame, preprocessing="l2"):
    """For each representation of ``named`` ({method: (ids, (S, D) matrix)}): (method, its probe preprocessing,
    its rows in the order of ``frame["slide_id"]``, (len(frame), D) float64 by :func:`select_rows`).
    ``preprocessing``: one name for all, or {method: name} (``"l2"`` for a method it lacks)."""
    wanted = list(frame["slide_id"])
    for method, (ids, matrix) in named.items():
        prep = preprocessing.get(method, "l2") if isinstance(preprocessing, dict) else preprocessing
        yield method, prep, select_rows(ids, matrix, wanted, method)


def fewshot_draws(labels, task: str, ks=KS, n_draws: int = N_DRAWS, seed: int = 0) -> list[Split]:
    """Training sets of K slides per class and their test sets, ``n_draws`` per K, from the labels and seed only.

    Draw d of K comes from ``rng(seed, K, d)`` (independent of the other K and draws asked for): class by class
    (sorted), the patients holding slides of the class and not yet drawn are shuffled and one random slide of each
    of the first K is taken, so a training set never holds two slides of one patient. The test set is every
    labelled slide of the patients not drawn, so no patient is on both sides; a class therefore needs at least
    K + 1 patients (K for training, one for the test).

    Returns: :class:`gigassl.evaluation.splits.Split` objects, ``budget`` ``"K=4"``, ``name`` ``"draw_3"``, in order
    of K then draw.

    Raises:
        ConfigError: n_draws < 1 or a K < 1.
        ManifestError: a class with K patients or fewer (before or after the other classes' draws).
    """
    frame = task_table(labels, task)
    if int(n_draws) < 1 or any(int(k) < 1 for k in ks):
        raise refused("few-shot draws", {"ks": tuple(ks), "n_draws": n_draws}, "K >= 1 and n_draws >= 1",
                      "e.g. ks=(1, 2, 4, 8, 16), n_draws=20.")
    classes = sorted(frame["label"].unique())
    patients = frame.groupby("label")["case_id"].nunique()
    too_big = [int(k) for k in ks if int(k) >= patients.min()]
    if too_big:
        raise ManifestError(suggest(
            f"Few-shot K={too_big} asks for more training patients per class than task {task!r} affords: its "
            f"classes hold slides of {patients.sort_index().to_dict()} patients, and one patient of each class "
            "must remain for the test.",
            f"use K <= {int(patients.min()) - 1}"))
    slides = frame["slide_id"].to_numpy(str)
    cases = frame["case_id"].to_numpy(str)
    labels_ = frame["label"].to_numpy(str)
    draws = []
    for k in (int(k) for k in ks):
        for d in range(int(n_draws)):
            g = rng(seed, k, d)
            drawn_cases: set[str] = set()
            train: list[str] = []
            for c in classes:
                mine = np.flatnonzero(labels_ == c)
                fresh = sorted({cases[i] for i in mine} - drawn_cases)
                if len(fresh) <= k:  # patients with slides of several classes, drawn for another class
                    raise ManifestError(suggest(
                        f"Few-shot draw {d} of K={k}: class {c!r} has {len(fresh)} patient(s) left after the other "
                        "classes were drawn (some patients hold slides of several classes); K + 1 are needed.",
                        "use a smaller K", "or add patients of that class"))
                chosen = []
                for case in (fresh[j] for j in g.permutation(len(fresh))[:k]):
                    options = mine[cases[mine] == case]
                    chosen.append(int(options[g.integers(len(options))]))
                drawn_cases.update(cases[i] for i in chosen)
                train += [slides[i] for i in chosen]
            test = [s for s, case in zip(slides, cases) if case not in drawn_cases]
            draws.append(Split(tuple(train), tuple(test), f"draw_{d}", f"K={k}"))
    return draws


def affordable_ks(labels, task: str, ks=KS) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(the K of ``ks`` the task affords, those it does not): a class needs K + 1 patients (K to train, one to test),
    so K must be below the smallest class's number of patients (:func:`fewshot_draws`)."""
    frame = task_table(labels, task)
    fewest = int(frame.groupby("label")["case_id"].nunique().min())
    return tuple(int(k) for k in ks if int(k) < fewest), tuple(int(k) for k in ks if int(k) >= fewest)


def fewshot_runs(named: dict, labels, task: str, *, ks=KS, n_draws: int = N_DRAWS, classifiers=CLASSIFIERS,
                 preprocessing="l2", neighbours: int = KNN_NEIGHBOURS, config: ProbeConfig | None = None,
                 seed: int = 0) -> pd.DataFrame:
    """Few-shot scores of every representation on the same draws (:func:`fewshot_draws`).

    Args:
        named: {representation name: (slide ids, (S, D) matrix)}, each covering the labelled slides.
        labels: the label frame (:func:`gigassl.evaluation.labels.task_table`).
        classifiers: a subset of :data:`CLASSIFIERS`. preprocessing: the logistic probe's (the paper's: ``"l2"``
            for Giga-SSL, ``"standard"`` for AverageMIL), one string or {representation name: string}.
        neighbours: the kNN's k (capped at the number of training slides). config: C and max_iter of the probe.

    A K the task cannot afford (:func:`affordable_ks`) is left out with a warning, so the curve stops where the
    smallest class runs out of patients; when no K is affordable the draws are refused.

    Returns: the tidy table (:data:`COLUMNS` + ``classifier, k, n_train, n_test``), ``evaluation="few_shot"``,
        ``setting`` ``"<classifier>:K=<k>"``, ``draw`` the draw index, metrics ``auroc`` and ``balanced_accuracy``.
    """
    for name in classifiers:
        if name not in CLASSIFIERS:
            raise refused("few-shot classifier", name, "one of " + ", ".join(CLASSIFIERS), "")
    frame = task_table(labels, task)
    kept, dropped = affordable_ks(frame, task, ks)
    if dropped and kept:  # the curve stops where the smallest class runs out of patients (none kept: refused below)
        warnings.warn(f"Few-shot on {task!r}: K={list(dropped)} left out, its smallest class has too few patients "
                      f"(a class needs K + 1); the curve stops at K={max(kept)}.", stacklevel=2)
        ks = kept
    draws = fewshot_draws(frame, task, ks, n_draws, seed)
    label_of = dict(zip(frame["slide_id"], frame["label"].astype(str)))
    rows = []
    index = {s: i for i, s in enumerate(frame["slide_id"])}
    for method, prep, x in method_rows(named, frame, preprocessing):
        for split in draws:
            train = [index[s] for s in split.train_ids]
            test = [index[s] for s in split.test_ids]
            y_train = np.array([label_of[s] for s in split.train_ids])
            y_test = np.array([label_of[s] for s in split.test_ids])
            k = int(split.budget[2:])
            for name in classifiers:
                model = clone(make_classifier(name, len(train), prep, config, neighbours)).fit(x[train], y_train)
                where = f"{method}/{task}/few_shot/{name}/{split.budget}/{split.name}"
                scores = classification_scores(y_test, model.predict_proba(x[test]), model.classes_, where)
                for metric, value in scores.items():
                    rows.append({"method": method, "evaluation": "few_shot", "task": task,
                                 "setting": f"{name}:{split.budget}", "draw": int(split.name[5:]), "metric": metric,
                                 "value": value, "classifier": name, "k": k, "n_train": len(train),
                                 "n_test": len(test)})
    return pd.DataFrame(rows, columns=[*COLUMNS, "classifier", "k", "n_train", "n_test"])
