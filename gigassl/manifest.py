"""Cohort manifests: one row per slide (``slide_id, path, case_id, center``, then one column per task).

``path`` may be relative to the manifest's folder. An optional ``mpp`` column overrides the slides' own MPP.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import ManifestError
from .errors import format_ids

REQUIRED = ("slide_id", "path")
META_COLUMNS = ("slide_id", "path", "case_id", "center", "mpp")
SAFE_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")  # a slide_id names files: no separators, no leading dot


def read_manifest(path: str | os.PathLike, required: tuple[str, ...] = REQUIRED) -> pd.DataFrame:
    """Read and validate a manifest; ``path`` values become absolute.

    Raises:
        ManifestError: missing file or column, empty table, a slide_id that is empty, repeated (case-insensitively)
            or unusable as a file name, an empty path, an mpp that is not a positive number. The error names the
            lines.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"Manifest {path} does not exist. Create it (gigassl synth writes one) or fix the path.")
    try:
        frame = pd.read_csv(path, dtype={"slide_id": str, "case_id": str, "center": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ManifestError(f"Manifest {path} is not a readable CSV file: {err}") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ManifestError(
            f"Manifest {path} lacks column(s) {missing}; it has {list(frame.columns)}. "
            f"A manifest needs at least {list(required)} (slide_id, path[, case_id, center, mpp, <tasks>...])."
        )
    if frame.empty:
        raise ManifestError(f"Manifest {path} has no rows.")
    ids = frame["slide_id"]
    if ids.isna().any() or (ids.astype(str).str.strip() == "").any():
        rows = [int(i) + 2 for i in frame.index[ids.isna() | (ids.astype(str).str.strip() == "")]]
        raise ManifestError(f"Manifest {path}: empty slide_id on line(s) {rows}. Give every slide an id.")
    frame["slide_id"] = ids = ids.astype(str).str.strip()
    unsafe = [(int(i) + 2, sid) for i, sid in ids.items() if not SAFE_ID.fullmatch(sid) or sid in (".", "..")]
    if unsafe:
        raise ManifestError(
            f"Manifest {path}: slide_id(s) unusable as file names on line(s) {unsafe[:5]}"
            f"{' ...' if len(unsafe) > 5 else ''}. A slide_id names the output files: use letters, digits, '.', "
            "'_' and '-' only, not starting with '.' (no '/', '\\', '..' or spaces)."
        )
    folded = ids.str.lower()
    repeated = sorted(ids[folded.duplicated(keep=False)].unique())
    if repeated:
        raise ManifestError(
            f"Manifest {path}: slide_id repeated: {repeated} (ids that differ only in case count as the same: they "
            "name the same file on macOS and Windows). Each slide_id must be unique."
        )
    if "path" in frame.columns:
        empty = frame["path"].isna() | (frame["path"].astype(str).str.strip() == "")
        if empty.any():
            raise ManifestError(f"Manifest {path}: empty path on line(s) {[int(i) + 2 for i in frame.index[empty]]} "
                                f"(slides {format_ids(ids[empty].tolist(), 5)}). Give every slide the path of its file.")
        root = path.parent.resolve()
        frame["path"] = [str(p if Path(p).is_absolute() else root / p) for p in frame["path"].astype(str)]
    if "mpp" in frame.columns:
        mpp = pd.to_numeric(frame["mpp"], errors="coerce")
        given = frame["mpp"].notna() & (frame["mpp"].astype(str).str.strip() != "")
        bad = given & ~(mpp > 0) | given & ~np.isfinite(mpp.fillna(0))
        if bad.any():
            lines = [(int(i) + 2, frame.at[i, "mpp"]) for i in frame.index[bad]]
            raise ManifestError(f"Manifest {path}: mpp must be a positive number of microns per pixel (or empty to "
                                f"use the slide's own); got (line, value) {lines[:5]}.")
        frame["mpp"] = mpp
    if "case_id" not in frame.columns:  # each slide its own case (gigassl.evaluation.labels.load_labels warns when splitting)
        frame["case_id"] = frame["slide_id"]
    frame["case_id"] = frame["case_id"].fillna(frame["slide_id"]).astype(str)
    return frame.reset_index(drop=True)


def task_columns(frame: pd.DataFrame) -> list[str]:
    """The label columns of a manifest: every column that is not slide metadata."""
    return [c for c in frame.columns if c not in META_COLUMNS]


def labelled_ids(frame: pd.DataFrame) -> list[str]:
    """The slides with a value in at least one task column (the labelled cohort); the others form the unlabelled
    pool that only self-supervised training uses (e.g. ``U0001`` ... of the synthetic cohort)."""
    tasks = task_columns(frame)
    if not tasks:
        return frame["slide_id"].astype(str).tolist()
    return frame.loc[frame[tasks].notna().any(axis=1), "slide_id"].astype(str).tolist()


def pool_ids(frame: pd.DataFrame) -> list[str]:
    """The slides of the unlabelled pool (no value in any task column), in manifest order."""
    labelled = set(labelled_ids(frame))
    return [s for s in frame["slide_id"].astype(str) if s not in labelled]


def ssl_slide_ids(frame: pd.DataFrame, pool: int | None = None, exclude_centres=(), available=None) -> list[str]:
    """The slides an SSL run trains on: the labelled cohort plus the first ``pool`` slides of the unlabelled pool
    (None: all of it; 0: none), without the slides of ``exclude_centres`` (the independent-centre experiment).

    ``available``: the slides that can be used (e.g. those of a bank: a slide whose tiling or bank failed, listed in
    that stage's failures.csv, is left out, and the pool's first ``pool`` slides are counted among the others)."""
    keep = (lambda ids: [s for s in ids if s in set(available)]) if available is not None else (lambda ids: ids)
    chosen = set(keep(labelled_ids(frame))) | set(keep(pool_ids(frame))[: None if pool is None else int(pool)])
    if exclude_centres:
        chosen -= set(frame.loc[frame["center"].astype(str).isin(set(exclude_centres)), "slide_id"].astype(str))
    return [s for s in frame["slide_id"].astype(str) if s in chosen]


def slide_id_list(path: str | os.PathLike) -> list[str]:
    """The slide ids of a CSV: its ``slide_id`` column, or its first column (``gigassl train --slides CSV``)."""
    frame = pd.read_csv(path, dtype=str)
    column = "slide_id" if "slide_id" in frame.columns else frame.columns[0]
    return frame[column].dropna().tolist()
