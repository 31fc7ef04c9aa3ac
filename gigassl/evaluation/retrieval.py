"""Slide retrieval with slide embeddings (issue #26 item 2): the field's leave-one-patient-out top-k accuracy and
the precision at k.

- :func:`lopo_neighbours`: for each query slide, the slides of OTHER patients ranked by cosine similarity (a
  patient's other slides would be retrieved for their shared patient, not their label).
- :func:`lopo_retrieval`: per query and k, the majority vote of the k nearest labels (top-k accuracy as the field
  reports it, e.g. the slide-retrieval benchmarks of UNI and RetCCL) and the precision at k (the share of the k
  neighbours that share the query's label).
- :func:`retrieval_runs`: every representation, the tidy table of the shared evaluation contract.
- :func:`precision_at_k`: the book's label-agnostic precision at k (each slide's k nearest other slides,
  :func:`gigassl.evaluation.diagnostics.neighbour_agreement`) per representation and attribute, against chance.

No training, no draw: the results depend on the embeddings only (``draw`` is 0).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..config import refused
from .diagnostics import label_agreement_chance, neighbour_agreement
from .fewshot import COLUMNS, select_rows
from .labels import task_table

KS = (1, 3, 5)  # top-k of slide retrieval (issue #26; the field's top-1/3/5)
PREPROCESSINGS = ("none", "l2", "standard")


def _prepared(matrix: np.ndarray, preprocessing: str) -> np.ndarray:
    """Rows scaled to unit length after an optional standard scaling over all slides (no label involved)."""
    if preprocessing not in PREPROCESSINGS:
        raise refused("retrieval preprocessing", preprocessing, "one of " + ", ".join(PREPROCESSINGS),
                      "AverageMIL embeddings are standard-scaled as its probe sees them: 'standard'.")
    x = np.asarray(matrix, np.float64)
    if preprocessing == "standard":
        x = (x - x.mean(axis=0)) / np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def lopo_neighbours(matrix: np.ndarray, case_ids, k: int, preprocessing: str = "none") -> np.ndarray:
    """The ``k`` nearest slides of each slide (cosine, nearest first; equal similarities in row order) among the
    slides of other patients.

    Shape: matrix (S, D), case_ids (S,) -> (S, k) row indices; -1 where fewer than k slides of other patients exist.
    """
    x = _prepared(matrix, preprocessing)
    cases = np.asarray(case_ids).astype(str)
    sim = x @ x.T
    sim[cases[:, None] == cases[None, :]] = -np.inf  # the query itself and its patient's other slides
    order = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    valid = np.take_along_axis(sim, order, axis=1) > -np.inf
    return np.where(valid, order, -1)


def majority_vote(labels) -> object:
    """The most frequent of ``labels`` (nearest first); a tie goes to the tied label whose first vote is nearest."""
    labels = list(labels)
    counts = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    top = max(counts.values())
    return next(label for label in labels if counts[label] == top)


def lopo_retrieval(ids, matrix, labels, task: str, ks=KS, preprocessing: str = "none") -> pd.DataFrame:
    """Leave-one-patient-out retrieval of the labelled slides: one row per (query, k).

    Each labelled slide queries the other patients' labelled slides (cosine); ``vote`` is the majority label of its
    k nearest (:func:`majority_vote`: ties to the label met first), ``correct`` whether it is the query's label,
    ``precision`` the share of the k that carry the query's label.

    Args:
        ids, matrix: the representation's slide ids and (S, D) embeddings (covering the labelled slides).
        labels: the label frame (:func:`gigassl.evaluation.labels.task_table`). preprocessing: see :data:`PREPROCESSINGS`.

    Returns: columns ``slide_id, case_id, label, k, vote, correct, precision``.
    """
    frame = task_table(labels, task)
    x = select_rows(ids, matrix, list(frame["slide_id"]), "retrieval")
    y = frame["label"].astype(str).to_numpy()
    ks = [int(k) for k in ks]
    if not ks or min(ks) < 1:
        raise refused("retrieval ks", tuple(ks), "integers >= 1", "e.g. ks=(1, 3, 5).")
    near = lopo_neighbours(x, frame["case_id"].to_numpy(), max(ks), preprocessing)
    rows = []
    for q in range(len(frame)):
        for k in ks:
            found = [i for i in near[q, :k] if i >= 0]
            votes = y[found]
            vote = majority_vote(votes) if len(votes) else None
            rows.append({"slide_id": frame["slide_id"][q], "case_id": frame["case_id"][q], "label": y[q], "k": k,
                         "vote": vote, "correct": bool(vote == y[q]),
                         "precision": float(np.mean(votes == y[q])) if len(votes) else float("nan")})
    return pd.DataFrame(rows)


def retrieval_runs(named: dict, labels, task: str, *, ks=KS, preprocessing="none", seed: int = 0) -> pd.DataFrame:
    """Leave-one-patient-out retrieval of every representation on the same labelled slides.

    Args:
        named: {representation name: (slide ids, (S, D) matrix)}. preprocessing: one of :data:`PREPROCESSINGS`,
            or {representation name: one of them} (default ``"none"``: cosine of the embeddings as they are).
        seed: unused (retrieval draws nothing); accepted for the shared signature.

    Returns: the tidy table (:data:`gigassl.evaluation.fewshot.COLUMNS` + ``k, n_queries``),
        ``evaluation="retrieval"``, ``setting`` ``"top-<k>"``, ``draw`` 0, metrics ``accuracy`` (majority vote of the
        k nearest equals the query's label), ``balanced_accuracy`` (the same, averaged per class) and
        ``precision`` (mean share of the k nearest with the query's label).
    """
    rows = []
    for method, (ids, matrix) in named.items():
        prep = preprocessing.get(method, "none") if isinstance(preprocessing, dict) else preprocessing
        table = lopo_retrieval(ids, matrix, labels, task, ks, prep)
        for k, part in table.groupby("k", sort=True):
            per_class = part.groupby("label")["correct"].mean()
            values = {"accuracy": float(part["correct"].mean()), "balanced_accuracy": float(per_class.mean()),
                      "precision": float(part["precision"].mean())}
            for metric, value in values.items():
                rows.append({"method": method, "evaluation": "retrieval", "task": task, "setting": f"top-{k}",
                             "draw": 0, "metric": metric, "value": value, "k": int(k), "n_queries": len(part)})
    return pd.DataFrame(rows, columns=[*COLUMNS, "k", "n_queries"])


def precision_at_k(named: dict, frame: pd.DataFrame, attributes, ks=(1, 5, 10)) -> pd.DataFrame:
    """Precision at k of slide retrieval by each attribute (a task, the centre): for each representation, attribute
    and k, the mean share of a slide's k nearest other slides (cosine; any patient) sharing its value
    (:func:`gigassl.evaluation.diagnostics.neighbour_agreement`, over the slides where the attribute is known),
    beside its chance level (:func:`gigassl.evaluation.diagnostics.label_agreement_chance`).

    Args:
        named: {representation name: (S, D) matrix, rows following ``frame``}. frame: one row a slide, with the
            ``attributes`` columns.

    Returns: columns ``representation, attribute, k, precision, chance``.
    """
    rows = []
    for representation, matrix in named.items():
        for attribute in attributes:
            labelled = frame[attribute].notna().to_numpy()
            for k in ks:
                rows.append({"representation": representation, "attribute": attribute, "k": int(k),
                             "precision": neighbour_agreement(matrix[labelled], frame[attribute][labelled], k=k),
                             "chance": label_agreement_chance(frame[attribute][labelled], k=k)})
    return pd.DataFrame(rows)
