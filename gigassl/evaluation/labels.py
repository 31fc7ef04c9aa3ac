"""Label tables of the evaluation protocol (Sec. 4.2): reading and validating ``slide_id, case_id, <task>`` tables.

A label table is a CSV (or a DataFrame) with one row a slide: ``slide_id``, optionally ``case_id`` (the patient,
which keeps a patient's slides on one side of a split) and one column per task (a manifest of ``gigassl synth``
holds three, the table of :mod:`gigassl.evaluation.tcga` one). :func:`load_labels` reads one task of it into the frame the
splits (:mod:`gigassl.evaluation.splits`), the probe and the baselines use; :func:`normalize_id` matches ids that tools write
differently (``X.svs`` vs ``X``).
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd

from .. import validate
from ..errors import ManifestError
from ..errors import format_ids

ID_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".vms", ".bif", ".h5", ".pt", ".npy")


def normalize_id(slide_id) -> str:
    """A slide id without folder, without a slide/feature file extension (.svs, .h5, ...), case-folded.

    Used to match ids written differently by different tools (e.g. ``X.svs`` vs ``X``), never to merge two
    distinct slides: callers check that the normalised ids are still unique.
    """
    name = str(slide_id).strip().replace("\\", "/").rsplit("/", 1)[-1]
    lowered = name.lower()
    for suffix in ID_SUFFIXES:
        if lowered.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name.casefold()



def load_labels(labels, task: str) -> pd.DataFrame:
    """Read a label table as a frame with columns ``slide_id``, ``case_id``, ``label`` (str), ``case_source``
    (``case_id``, or ``slide_id`` where the table gave no case), one row a slide.

    Args:
        labels: a CSV path or a DataFrame with ``slide_id``, the ``task`` column and optionally ``case_id``
            (a manifest, or the label table of :mod:`gigassl.evaluation.tcga`). Slides with no value for ``task`` are
            dropped (a manifest may hold several tasks); a missing ``case_id`` is the slide's own id.
        task: the label column.

    Raises:
        ManifestError: file missing or unreadable, no such column, repeated slide_id, fewer than two classes.
    """
    where = "the label table"
    if isinstance(labels, (str, os.PathLike)):
        where = str(labels)
        validate.existing_file(labels, "Label table", f"give a CSV with slide_id, case_id, {task}.", ManifestError)
        try:
            labels = pd.read_csv(labels, dtype={"slide_id": str, "case_id": str})
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise ManifestError(f"Label table {where} is not a readable CSV file: {err}") from None
    frame = pd.DataFrame(labels)
    for column in ("slide_id", task):
        if column not in frame.columns:
            raise ManifestError(
                f"{where} has no column {column!r}; it has {list(frame.columns)}. "
                f"A label table needs slide_id, case_id (optional) and the task column; pass --task COLUMN."
            )
    frame = frame[frame[task].notna()]
    values = frame[task]
    if pd.api.types.is_float_dtype(values) and np.all(np.mod(values.to_numpy(), 1) == 0):
        values = values.astype(np.int64)  # 0.0/1.0 read from a column with blanks -> "0"/"1"
    out = pd.DataFrame({
        "slide_id": [str(v).strip() for v in frame["slide_id"]],
        "label": np.array([str(v).strip() for v in values], dtype=object),
    }, index=frame.index)
    if "case_id" not in frame.columns:
        warnings.warn(f"{where} has no case_id column: each slide counts as its own case, so two slides of one "
                      "patient can land on both sides of a split. Add case_id (the patient) to group them.",
                      stacklevel=2)
    case = frame["case_id"] if "case_id" in frame.columns else pd.Series(np.nan, index=frame.index)
    out["case_id"] = [str(v).strip() for v in case.where(case.notna(), frame["slide_id"])]
    out["case_source"] = np.where(case.notna(), "case_id", "slide_id")  # where each row's case comes from
    repeated = out["slide_id"][out["slide_id"].duplicated()].unique()
    if len(repeated):
        raise ManifestError(f"{where}: slide_id repeated ({format_ids(repeated)}). Give each slide one row.")
    if out["label"].nunique() < 2:
        raise ManifestError(
            f"{where}: task {task!r} has {out['label'].nunique()} class(es) ({sorted(out['label'].unique())}); "
            "a classification needs at least two."
        )
    return out[["slide_id", "case_id", "label", "case_source"]].reset_index(drop=True)


def task_table(labels, task: str) -> pd.DataFrame:
    """The label frame of ``task`` that the evaluations share, with the slides' ``center`` kept where known.

    ``labels``: a frame :func:`load_labels` already returned (columns ``slide_id``, ``case_id``, ``label``, and
    optionally ``center``), returned as is; or a manifest / label table (path or frame) with the ``task`` column,
    read by :func:`load_labels` and given the table's ``center`` column when it has one.

    Raises:
        ManifestError: as :func:`load_labels`.
    """
    if isinstance(labels, pd.DataFrame) and "label" in labels.columns and task not in labels.columns:
        missing = [c for c in ("slide_id", "case_id") if c not in labels.columns]
        if missing:
            raise ManifestError(f"The label frame lacks column(s) {missing}; it has {list(labels.columns)}. "
                                "Pass the frame load_labels returns, or the manifest with the task column.")
        return labels.reset_index(drop=True)
    out = load_labels(labels, task)  # a path is checked and read here first
    frame = pd.read_csv(labels, dtype={"slide_id": str, "case_id": str}) \
        if isinstance(labels, (str, os.PathLike)) else pd.DataFrame(labels)
    if "center" in frame.columns:
        centre_of = dict(zip(frame["slide_id"].astype(str).str.strip(), frame["center"]))
        out["center"] = [None if pd.isna(centre_of.get(s)) else str(centre_of.get(s)) for s in out["slide_id"]]
    return out
