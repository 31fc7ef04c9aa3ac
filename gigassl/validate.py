"""The checks of data where it enters gigassl and before a stage writes it: one place for every reader and writer.

Readers (:mod:`gigassl.io` for tile coordinates, tile features, banks and slide embeddings;
:meth:`gigassl.embed.GigaSSLEmbedder.transform` and :func:`gigassl.evaluation.protocol.load_embeddings` for arrays given in
memory) check what a file or a caller gives against what its format promises: the shape, the dtype, finite values.
Writers check that what they write is finite (a bank after its float16 cast, slide embeddings, a checkpoint's
weights and loss). A failed check raises :class:`gigassl.errors.DataError` naming the file or slide, what was
found, what was expected and the fix; a batch lists it as that slide's failure.

None of these functions changes a value: they return the array given, cast only to the dtype its format promises.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import ConfigError, DataError, GigasslError
from .errors import listing


def numeric(array, what: str, fix: str = "") -> np.ndarray:
    """``array`` as a NumPy array of integers or floats (bool, complex, strings and objects refused)."""
    a = np.asarray(array)
    if a.dtype.kind not in "iuf":
        raise DataError(f"{what} has dtype {a.dtype}; expected numbers (integers or floats). {fix}".rstrip())
    return a


def finite(array, what: str, fix: str = "", unit: str = "row", names=None):
    """``array`` unchanged when every value is finite; else DataError naming how many ``unit`` s (first axis)
    hold NaN or infinity and which (their ``names`` when given, e.g. slide ids, else their positions)."""
    a = np.asarray(array)
    if a.dtype.kind != "f" or not a.size or np.isfinite(a).all():
        return array
    bad = np.flatnonzero(~np.isfinite(a.reshape(len(a), -1)).all(axis=1)) if a.ndim else np.zeros(1, int)
    which = [names[i] for i in bad] if names is not None else bad.tolist()
    count = f"{len(bad)} of {len(a)} {unit}s" if a.ndim else "its value"
    raise DataError(f"{what}: NaN or infinite values in {count} ({listing(which)}); expected finite numbers. "
                    f"{fix}".rstrip())


def coords(array, what: str, fix: str = "") -> np.ndarray:
    """Tile coordinates as (M, 2) int64: one level-0 (x, y) per tile. An empty array (TRIDENT's slide without
    tissue) gives (0, 2); any other shape, non-integral or non-finite values are refused (never reshaped)."""
    a = numeric(array, what, fix)
    if a.size == 0:
        return np.empty((0, 2), np.int64)
    if a.ndim != 2 or a.shape[1] != 2:
        raise DataError(f"{what} has shape {a.shape}; expected (M, 2), one level-0 (x, y) per tile. {fix}".rstrip())
    if a.dtype.kind == "f":
        finite(a, what, fix, "tile")
        if not np.array_equal(a, np.round(a)):
            raise DataError(f"{what} holds non-integral coordinates (e.g. {a[a != np.round(a)][0]}); expected "
                            f"level-0 pixel positions. {fix}".rstrip())
    return a.astype(np.int64, copy=False)


def features(array, what: str, fix: str = "", dim: int | None = None) -> np.ndarray:
    """Tile features as finite (M, F) float32 (F = ``dim`` when given)."""
    a = numeric(array, what, fix)
    if a.ndim != 2 or (dim is not None and a.shape[1] != dim):
        expected = f"(M, {dim})" if dim is not None else "(M, F)"
        raise DataError(f"{what} has shape {a.shape}; expected {expected}, one feature vector per tile. "
                        f"{fix}".rstrip())
    return finite(a.astype(np.float32, copy=False), what, fix, "tile")


def same_tile_count(feats: np.ndarray, tile_coords: np.ndarray, what: str, fix: str = "") -> None:
    """Refuse features and coordinates of different tile counts."""
    if len(feats) != len(tile_coords):
        raise DataError(f"{what}: features of {len(feats)} tiles (shape {feats.shape}) but coordinates of "
                        f"{len(tile_coords)} (shape {tile_coords.shape}); expected one (x, y) per feature "
                        f"vector. {fix}".rstrip())


def embeddings(ids, matrix, what: str, fix: str = "") -> np.ndarray:
    """Slide embeddings as finite (S, D) float32 with one row per id (the rows with NaN named by slide id)."""
    ids = list(ids)
    a = numeric(matrix, what, fix)
    if a.ndim != 2 or a.shape[0] != len(ids):
        raise DataError(f"{what} has shape {a.shape} for {len(ids)} slide ids; expected ({len(ids)}, D). "
                        f"{fix}".rstrip())
    return finite(a.astype(np.float32, copy=False), what, fix, "slide", names=ids)


def finite_state(state: dict, what: str, fix: str = "") -> None:
    """Refuse a state dict (a model's weights) holding a NaN or infinite value, naming the tensors."""
    import torch

    bad = [name for name, value in state.items()
           if torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all())]
    if bad:
        raise DataError(f"{what}: {len(bad)} weight tensors hold NaN or infinite values ({listing(bad)}). "
                        f"{fix}".rstrip())


def existing_file(path: str | os.PathLike, what: str, missing: str, error=GigasslError) -> Path:
    """``path`` when it is a non-empty file; else ``error`` saying what is true: it does not exist
    (``missing``: the fix), it is a folder (the files in it named), or it is empty."""
    path = Path(path)
    if path.is_dir():
        inside = sorted(p.name for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        holds = f"it holds {listing(inside)}" if inside else "it holds no file"
        raise error(f"{what} {path} is a folder, not a file ({holds}); give the path of the file itself.")
    if not path.exists():
        raise error(f"{what} {path} does not exist; {missing}")
    if path.stat().st_size == 0:
        raise error(f"{what} {path} is empty (0 bytes): a copy or a write that did not finish. Copy it again, or "
                    "run the tool that wrote it again.")
    return path


def refuse_overwrite(path: str | os.PathLike, ours: Callable[[Path], bool], what: str, overwrite: bool = False,
                     option: str = "--out") -> None:
    """Refuse to replace an existing ``path`` that ``ours(path)`` does not recognise as ``what`` (a file
    gigassl wrote), unless ``overwrite``."""
    path = Path(path)
    if overwrite or not path.exists() or ours(path):
        return
    kind = "folder" if path.is_dir() else "file"
    raise ConfigError(f"{option} {path} is an existing {kind} that is not {what}: gigassl does not overwrite what it "
                      f"did not write. Choose another {option}, or pass --overwrite to replace it.")
