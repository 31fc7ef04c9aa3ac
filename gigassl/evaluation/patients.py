"""Patient-level evaluation (issue #26 item 3): a case with several slides gets one prediction.

The paper evaluates slides (Sec. 4.2); a clinical label belongs to a patient, and TCGA and the book's cohort hold
patients with two slides. Splits are by patient already (:func:`gigassl.evaluation.splits.make_splits` keeps a
case's slides on one side); here the metrics are per patient too, with the patient's label the majority of its
slides' (ties: the first in sorted order, the splits' stratum), and three ways to fuse a patient's slides:

- ``late:mean_embedding``: the mean of the patient's slide embeddings, then the probe trained and tested on patients;
- ``late:mean_probability``: the probe trained on slides, its class probabilities averaged over a test patient's
  slides;
- ``early:views_across_slides`` (Giga-SSL only): one embedding per patient whose views draw their tiles across all
  of the patient's slides (:func:`gigassl.embed.embed_cases`), passed as ``early``.

:func:`patient_runs` returns the tidy table of the shared evaluation contract.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from ..config import ProbeConfig, refused
from ..errors import ManifestError, format_ids, suggest
from .fewshot import COLUMNS, select_rows
from .labels import task_table
from .metrics import classification_scores
from .probe import LinearProbe
from .splits import make_splits

FUSIONS = ("mean_embedding", "mean_probability")
EARLY = "early:views_across_slides"


def case_labels(labels) -> pd.Series:
    """The label of each case: the majority of its slides' labels, ties to the first in sorted order (the stratum
    of :func:`gigassl.evaluation.splits.make_splits`). Returns a Series indexed by case_id (sorted)."""
    out = {}
    for case, group in labels.groupby("case_id", sort=True):
        counts = Counter(group["label"].astype(str))
        top = max(counts.values())
        out[case] = min(c for c, n in counts.items() if n == top)
    return pd.Series(out, name="label", dtype=object)


def case_means(matrix: np.ndarray, case_ids) -> tuple[list[str], np.ndarray]:
    """The mean of each case's rows (late fusion by mean embedding). Shape: (S, D), (S,) -> sorted case ids, (C, D)."""
    cases = np.asarray(case_ids).astype(str)
    names = sorted(set(cases.tolist()))
    return names, np.stack([np.asarray(matrix, np.float64)[cases == c].mean(axis=0) for c in names])


def patient_runs(named: dict, labels, task: str, *, fusions=FUSIONS, early: dict | None = None,
                 n_splits: int = 10, test_fraction: float = 0.25, preprocessing="l2",
                 config: ProbeConfig | None = None, seed: int = 0) -> pd.DataFrame:
    """Patient-level AUROC and balanced accuracy of every representation, on the same splits by patient.

    Args:
        named: {representation name: (slide ids, (S, D) slide embeddings)}, covering the labelled slides.
        labels: the label frame (:func:`gigassl.evaluation.labels.task_table`).
        fusions: late fusions among :data:`FUSIONS`.
        early: {representation name: (case ids, (C, D) case embeddings)} from :func:`gigassl.embed.embed_cases`
            (early fusion of Giga-SSL), covering the labelled cases; scored on the same splits.
        n_splits, test_fraction, seed: the splits (:func:`gigassl.evaluation.splits.make_splits`, the paper's
            repeated case-grouped splits). preprocessing: the probe's (``"l2"`` Giga-SSL, ``"standard"``
            AverageMIL), or {name: preprocessing}. config: C and max_iter of the probe (the paper's).

    Returns: the tidy table (:data:`gigassl.evaluation.fewshot.COLUMNS` + ``n_train, n_test``, counted in
        patients), ``evaluation="patients"``, ``setting`` ``late:<fusion>`` or ``early:views_across_slides``,
        ``draw`` the split index, metrics ``auroc`` and ``balanced_accuracy`` over the test patients.
    """
    for fusion in fusions:
        if fusion not in FUSIONS:
            raise refused("patient fusion", fusion, "one of " + ", ".join(FUSIONS), "")
    config = config or ProbeConfig()
    frame = task_table(labels, task)
    splits = make_splits(frame, n_splits, test_fraction, seed)
    case_of = dict(zip(frame["slide_id"], frame["case_id"].astype(str)))
    label_of_case = case_labels(frame)
    slide_label = dict(zip(frame["slide_id"], frame["label"].astype(str)))
    rows = []

    def record(method, setting, draw, scores, n_train, n_test):
        for metric, value in scores.items():
            rows.append({"method": method, "evaluation": "patients", "task": task, "setting": setting, "draw": draw,
                         "metric": metric, "value": value, "n_train": n_train, "n_test": n_test})

    def probe(method):
        prep = preprocessing.get(method, "l2") if isinstance(preprocessing, dict) else preprocessing
        return LinearProbe(C=config.C, max_iter=config.max_iter, preprocessing=prep)

    def case_level(method, setting, names, vectors):
        """Train and test a probe on case vectors (rows following ``names``) over every split."""
        position = {c: i for i, c in enumerate(names)}
        for draw, split in enumerate(splits):
            train = sorted({case_of[s] for s in split.train_ids})
            test = sorted({case_of[s] for s in split.test_ids})
            model = probe(method).fit(vectors[[position[c] for c in train]], label_of_case[train].to_numpy(str))
            y = label_of_case[test].to_numpy(str)
            scores = classification_scores(y, model.predict_proba(vectors[[position[c] for c in test]]),
                                           model.classes_, f"{method}/{task}/patients/{setting}/{split.name}")
            record(method, setting, draw, scores, len(train), len(test))

    for method, (ids, matrix) in named.items():
        x = select_rows(ids, matrix, list(frame["slide_id"]), method)
        if "mean_embedding" in fusions:
            case_level(method, "late:mean_embedding", *case_means(x, frame["case_id"]))
        if "mean_probability" in fusions:
            index = {s: i for i, s in enumerate(frame["slide_id"])}
            for draw, split in enumerate(splits):
                model = probe(method).fit(x[[index[s] for s in split.train_ids]],
                                          [slide_label[s] for s in split.train_ids])
                proba = model.predict_proba(x[[index[s] for s in split.test_ids]])
                test_cases = np.array([case_of[s] for s in split.test_ids])
                names = sorted(set(test_cases.tolist()))
                fused = np.stack([proba[test_cases == c].mean(axis=0) for c in names])
                scores = classification_scores(label_of_case[names].to_numpy(str), fused, model.classes_,
                                               f"{method}/{task}/patients/late:mean_probability/{split.name}")
                record(method, "late:mean_probability", draw, scores,
                       len({case_of[s] for s in split.train_ids}), len(names))
    for method, (case_ids, matrix) in (early or {}).items():
        case_ids = [str(c) for c in case_ids]
        missing = sorted(set(label_of_case.index) - set(case_ids))
        if missing:
            raise ManifestError(suggest(
                f"The early-fusion embeddings {method!r} lack {len(missing)} labelled case(s) ({format_ids(missing)}).",
                "embed every labelled case (gigassl.embed.embed_cases with the label table's case_id)"))
        case_level(method, EARLY, case_ids, np.asarray(matrix, np.float64))
    return pd.DataFrame(rows, columns=[*COLUMNS, "n_train", "n_test"])
