"""Running a method over planned splits: the tidy result table of every comparison (Sec. 4.2-4.3).

- :func:`evaluate_splits`: runs any method (a ``fit_predict``) over planned splits and returns the tidy table, one
  row per (method, task, budget, split) with the columns of :data:`COLUMNS`.
- :func:`run_probe`: the linear-probe protocol on one embedding (``gigassl probe``); :func:`probe_plan` its core
  on given splits; :func:`probe_runs` several representations over the same splits, tasks, budgets and protocols.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd

from .. import validate
from ..config import ProbeConfig
from ..errors import ManifestError
from .metrics import auc_score
from .probe import PROTOCOLS, TunedLinearProbe, make_probe
from .labels import load_labels
from .splits import Split, check_ids, check_splits, plan_splits
from ..errors import format_ids
from ..devices import limit_threads
from ..files import write_csv_atomic

COLUMNS = (
    "method", "protocol", "task", "budget", "split", "auc", "n_train", "n_test", "n_classes_test", "case_overlap",
    "grouped_by", "cpu_seconds", "wall_seconds", "device", "seed",
)


def evaluate_splits(plan: list[Split], labels: pd.DataFrame, fit_predict, *, method: str, task: str,
                    device: str = "cpu", allow_case_overlap: bool = False, seed: int = 0,
                    protocol: str = "paper") -> pd.DataFrame:
    """Run one method over planned splits and return the tidy table (columns :data:`COLUMNS`).

    Args:
        plan: splits from :func:`gigassl.evaluation.splits.plan_splits` (each carries its budget name).
        labels: frame from :func:`gigassl.evaluation.labels.load_labels`.
        fit_predict: ``fit_predict(split, index) -> (classes, proba[, extra])``: train on ``split.train_ids``
            and return the probabilities (n_test, n_classes) of ``split.test_ids``, optionally with a dict of
            extra columns; ``index`` is the split's position within its budget (a seed key). Its CPU time
            (``time.process_time``, all threads of the process) and wall time are recorded.
        protocol: the probe protocol's name, recorded in the column ``protocol`` (``paper``, ``fair``; the MIL
            baselines, which are no linear probe, are the same under both).

    Raises:
        ManifestError: a slide or (unless ``allow_case_overlap``) a case on both sides of a split.
    """
    overlaps = check_splits(plan, labels, allow_case_overlap)
    label_of = dict(zip(labels["slide_id"], labels["label"]))
    # "case": splits keep a case's slides together; "slide": the labels had no case_id (each slide its own case)
    grouped_by = "slide" if "case_source" in labels and (labels["case_source"] == "slide_id").all() else "case"
    seen: dict[str, int] = {}
    rows = []
    for split, overlap in zip(plan, overlaps):
        index = seen[split.budget] = seen.get(split.budget, -1) + 1
        y_test = np.array([label_of[i] for i in split.test_ids])
        cpu, wall = time.process_time(), time.perf_counter()
        classes, proba, *extra = fit_predict(split, index)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        auc = auc_score(y_test, proba, classes, where=f"{method}/{task}/{split.budget}/{split.name}")
        rows.append({
            "method": method, "protocol": protocol, "task": task, "budget": split.budget, "split": split.name,
            "auc": auc,
            "n_train": len(split.train_ids), "n_test": len(split.test_ids),
            "n_classes_test": len(set(y_test.tolist())), "case_overlap": overlap, "grouped_by": grouped_by,
            "cpu_seconds": cpu, "wall_seconds": wall, "device": device, "seed": seed, **(extra[0] if extra else {}),
        })
    columns = list(COLUMNS) + [c for c in (rows[0] if rows else {}) if c not in COLUMNS]
    return pd.DataFrame(rows, columns=columns)


def load_embeddings(embeddings, ids_path=None) -> tuple[list[str], np.ndarray]:
    """Slide embeddings as (ids, (S, D) array) from a file (:func:`gigassl.io.read_embeddings`) or a pair.

    Raises:
        ManifestError: repeated ids, or a row count that does not match the ids.
        DataError: a value that is not a number, NaN or infinite (the slides named).
    """
    if isinstance(embeddings, (str, os.PathLike)):
        from ..io import read_embeddings

        ids, matrix, _ = read_embeddings(embeddings, ids_path)
    else:
        ids, matrix = embeddings
    ids = [str(i) for i in ids]
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != len(ids):
        raise ManifestError(f"Embeddings of shape {matrix.shape} for {len(ids)} ids; expected ({len(ids)}, D).")
    validate.finite(validate.numeric(matrix, "The slide embeddings"), "The slide embeddings",
                    "Embed the listed slides again, or leave them out of the labels.", "slide", names=ids)
    if len(set(ids)) != len(ids):
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        raise ManifestError(f"Embedding ids repeated, {format_ids(repeated)}; each slide once.")
    return ids, matrix


def probe_fit_predict(ids, matrix: np.ndarray, labels: pd.DataFrame, probe):
    """A ``fit_predict`` for :func:`evaluate_splits`: a fresh clone of ``probe`` (a :class:`LinearProbe` or a
    :class:`TunedLinearProbe`) fitted on the training rows of ``matrix`` (looked up by slide id) and applied to the
    test rows. A TunedLinearProbe gets the training slides' cases as inner-CV groups and its choice is returned as
    the extra columns ``preprocessing`` and ``C``; the test rows are read only after the fit."""
    from sklearn.base import clone

    row = {sid: i for i, sid in enumerate(ids)}
    frame = labels.set_index("slide_id").reindex(list(ids))
    y = np.asarray(frame["label"].to_numpy(), dtype=object)
    cases = np.asarray(frame["case_id"].to_numpy(), dtype=object)

    def fit_predict(split: Split, index: int):
        train = np.fromiter((row[i] for i in split.train_ids), int, len(split.train_ids))
        test = np.fromiter((row[i] for i in split.test_ids), int, len(split.test_ids))
        fitted = clone(probe)
        if isinstance(fitted, TunedLinearProbe):
            fitted.fit(matrix[train], y[train].astype(str), groups=cases[train].astype(str))
            extra = dict(fitted.best_params_)
        else:
            fitted.fit(matrix[train], y[train].astype(str))
            extra = {"preprocessing": fitted.preprocessing, "C": float(fitted.C)}
        return fitted.classes_, fitted.predict_proba(matrix[test]), extra

    return fit_predict


def resolve_budgets(budgets, train_sizes, config: ProbeConfig) -> tuple[tuple, tuple]:
    """The budgets of a run: those given, or the config's (fractions and sizes) when neither is given."""
    if budgets is None and train_sizes is None:
        return tuple(config.budgets), tuple(config.train_sizes)
    return tuple(budgets or ()), tuple(train_sizes or ())


def probe_plan(embeddings, labels: pd.DataFrame, plan: list[Split], *, task: str, preprocessing: str = "l2",
               method: str = "gigassl", config: ProbeConfig = ProbeConfig(), allow_case_overlap: bool = False,
               n_threads: int | None = 1, protocol: str = "paper") -> pd.DataFrame:
    """The linear probe over planned splits (each with its budget): the fast core of :func:`run_probe`.

    Args:
        embeddings: (ids, (S, D) matrix); labels: frame from :func:`gigassl.evaluation.labels.load_labels`.
        n_threads: BLAS/OpenMP threads for the whole run (1: fewest CPU-seconds; None: library default).
        protocol: ``paper`` (``preprocessing`` and C = ``config.C``) or ``fair`` (see :func:`make_probe`).

    Raises:
        ManifestError: split ids absent from the embeddings (listed), or leakage (see :func:`evaluate_splits`).
    """
    ids, matrix = load_embeddings(embeddings)
    check_ids(plan, set(ids), what="the embeddings")
    probe = make_probe(protocol, preprocessing, config, n_threads)
    fit_predict = probe_fit_predict(ids, matrix, labels, probe)
    with limit_threads(n_threads, "blas"):
        return evaluate_splits(plan, labels, fit_predict, method=method, task=task, device="cpu",
                        allow_case_overlap=allow_case_overlap, seed=config.seed, protocol=protocol)


def run_probe(embeddings, labels, task: str, *, ids_path=None, splits=None, n_splits: int | None = None,
              budgets=None, train_sizes=None, allow_case_overlap: bool = False, preprocessing: str = "l2",
              method: str = "gigassl", config: ProbeConfig = ProbeConfig(), protocol: str = "paper",
              out=None) -> pd.DataFrame:
    """The linear-probe protocol (Sec. 4.2): ``gigassl probe --embeddings FILE --labels CSV --task COLUMN``.

    Args:
        embeddings: an embeddings file (HDF5 of ``gigassl embed``, or ``.npy`` with ``ids_path``) or (ids, matrix).
        labels: a manifest / label CSV path or frame (``slide_id``, ``case_id``, ``task``).
        splits: a folder of ``split_<k>.csv`` (``--splits DIR``), a list of base :class:`Split`, or None to
            generate ``n_splits`` (default ``config.n_splits``) case-grouped stratified splits (``--n-splits K``).
        budgets, train_sizes: fractions (``--budget F``) and exact sizes (``--train-size N``) applied to each
            training split; both None: ``config.budgets`` and ``config.train_sizes``.
        allow_case_overlap: accept splits with a case on both sides (``--allow-case-overlap``); the number of
            such cases is recorded per split (column ``case_overlap``).
        preprocessing: see :class:`LinearProbe`; ``"standard"`` for average embeddings.
        protocol: ``paper`` (the paper's probe, with ``preprocessing``) or ``fair`` (:class:`TunedLinearProbe`).
        out: write the table there (CSV, atomically).

    Returns: the tidy table (:data:`COLUMNS`), one row per budget and split.
    """
    ids, matrix = load_embeddings(embeddings, ids_path)
    frame = load_labels(labels, task)
    fractions, sizes = resolve_budgets(budgets, train_sizes, config)
    n_splits = config.n_splits if n_splits is None else n_splits
    plan = plan_splits(frame, splits=splits, n_splits=n_splits, test_fraction=config.test_fraction,
                       budgets=fractions, train_sizes=sizes, seed=config.seed)
    table = probe_plan((ids, matrix), frame, plan, task=task, preprocessing=preprocessing, method=method,
                       config=config, allow_case_overlap=allow_case_overlap, protocol=protocol)
    if out is not None:
        write_csv_atomic(table, out)
    return table


def probe_runs(named: dict, labels, tasks, *, budgets=None, train_sizes=None, protocols=PROTOCOLS,
               config: ProbeConfig = ProbeConfig(), n_splits: int | None = None) -> pd.DataFrame:
    """Probe several representations over the same splits, tasks, budgets and protocols: one tidy table.

    Args:
        named: ``{method: (embeddings, paper_preprocessing)}``, embeddings as for :func:`run_probe` (a file or
            (ids, matrix)), paper_preprocessing the one the paper's protocol applies to that representation (``l2``
            for Giga-SSL embeddings, ``standard`` for average embeddings).
        tasks: label columns of ``labels``. protocols: ``paper`` and/or ``fair`` (:func:`make_probe`).

    Every method sees the same split plan (keyed by ``config.seed``), so their per-split AUCs pair up
    (:func:`gigassl.evaluation.compare.paired`).
    """
    tables = []
    for method, (embeddings, preprocessing) in named.items():
        loaded = load_embeddings(embeddings)
        for task in tasks:
            for protocol in protocols:
                tables.append(run_probe(loaded, labels, task, n_splits=n_splits, budgets=budgets,
                                        train_sizes=train_sizes, preprocessing=preprocessing, method=method,
                                        config=config, protocol=protocol))
    return pd.concat(tables, ignore_index=True)


def predictions(embeddings, labels, task: str, *, preprocessing: str = "l2", method: str = "gigassl",
                config: ProbeConfig = ProbeConfig(), n_splits: int | None = None, budget: float = 1.0,
                protocol: str = "paper") -> pd.DataFrame:
    """Every test slide's predicted class probabilities on each split of the plan :func:`run_probe` uses (same
    seed, same splits, same fits): the input of ROC curves and confusion matrices (Sec. 4.3).

    Returns one row per (split, test slide): method, protocol, task, budget, split, slide_id, label, predicted,
    and one column ``p:<class>`` per class (the probability of that class). The AUC of each split's rows is the
    ``auc`` of :func:`run_probe`'s table.
    """
    ids, matrix = load_embeddings(embeddings)
    frame = load_labels(labels, task)
    plan = plan_splits(frame, n_splits=config.n_splits if n_splits is None else n_splits,
                       test_fraction=config.test_fraction, budgets=(budget,), train_sizes=(), seed=config.seed)
    check_ids(plan, set(ids), what="the embeddings")
    fit_predict = probe_fit_predict(ids, matrix, frame, make_probe(protocol, preprocessing, config))
    label_of = dict(zip(frame["slide_id"], frame["label"]))
    rows = []
    with limit_threads(1, "blas"):
        for index, split in enumerate(plan):
            classes, proba, _ = fit_predict(split, index)
            for sid, p in zip(split.test_ids, proba):
                rows.append({"method": method, "protocol": protocol, "task": task, "budget": split.budget,
                             "split": split.name, "slide_id": sid, "label": str(label_of[sid]),
                             "predicted": str(classes[int(np.argmax(p))]),
                             **{f"p:{c}": float(v) for c, v in zip(classes, p)}})
    return pd.DataFrame(rows)
