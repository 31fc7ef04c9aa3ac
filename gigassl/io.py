"""Every HDF5 file gigassl reads or writes: tile coordinates, banks, slide embeddings.

This is the only module that imports h5py. Writers go through a temporary name and a rename
(:func:`gigassl.utils.atomic_path`), so a file that exists is complete.

Layouts
-------
- Tile coordinates (``<coords dir>/<slide_id>.h5``, TRIDENT-compatible): dataset ``coords`` (N, 2) int64,
  level-0 top-left (x, y); attributes on ``coords``: ``patch_size``, ``patch_size_level0``, ``target_mpp``,
  ``level0_mpp``, ``level0_width``, ``level0_height``, ``name``.
- Bank (``<bank dir>/<slide_id>.h5``, Sec. 3.2): ``features`` (A, N, F) float16, ``coords`` (A, N, 2) int64,
  ``plain_features`` (M, F) float16, ``plain_coords`` (M, 2) int64; file attributes: encoder, weights_sha256,
  tile_px, target_mpp, patch_size_level0, augmentation_mode, seed, version, ...
- Tile features made by TRIDENT or CLAM (``features`` (M, F) or (1, M, F), ``coords`` (M, 2)) are read as
  plain features (no augmented draws).
- Slide embeddings (one file): ``ids`` (S,) strings, ``embeddings`` (S, D) float32; attributes:
  checkpoint_sha256, views, tiles_per_view, seed, version.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from .errors import GigasslError, ManifestError
from .utils import atomic_path

COORD_ATTRS = ("patch_size", "patch_size_level0", "target_mpp", "level0_mpp", "level0_width", "level0_height", "name")


def _attr(value):
    """h5py-friendly attribute value (None becomes an empty string)."""
    if value is None:
        return ""
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return value


def _attrs_dict(attrs) -> dict:
    out = {}
    for key, value in attrs.items():
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out


def _open(path: str | os.PathLike, what: str) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise GigasslError(f"{what} file {path} does not exist; run the stage that writes it first.") from None
    except OSError as err:
        if "lock" in str(err).lower():  # HDF5 file locking: another process has it open for writing
            raise GigasslError(
                f"{what} file {path} is open for writing in another process (HDF5 file lock: {err}). Wait for that "
                "process to finish; on a file system without locks (some NFS mounts) set HDF5_USE_FILE_LOCKING=FALSE."
            ) from None
        raise GigasslError(
            f"{what} file {path} is not a readable HDF5 file ({err}): it is truncated or not HDF5. Delete it and run "
            "the stage that writes it again."
        ) from None


# ---------------------------------------------------------------------------------------------- coordinates
def write_coords(path: str | os.PathLike, coords: np.ndarray, **attrs) -> None:
    """Write tile coordinates (N, 2) int64 level-0 (x, y) with the TRIDENT attributes in ``attrs``."""
    coords = np.asarray(coords, dtype=np.int64).reshape(-1, 2)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", track_order=True) as fh:
            dset = fh.create_dataset("coords", data=coords, track_times=False)
            for key, value in attrs.items():
                dset.attrs[key] = _attr(value)


def read_coords(path: str | os.PathLike) -> tuple[np.ndarray, dict]:
    """Read (coords (N, 2) int64, attributes) from a coordinates file (gigassl or TRIDENT)."""
    with _open(path, "Coordinates") as fh:
        if "coords" not in fh:
            raise GigasslError(f"{path} has no 'coords' dataset; is it a tiling output of gigassl or TRIDENT?")
        dset = fh["coords"]
        return np.asarray(dset[()], dtype=np.int64).reshape(-1, 2), _attrs_dict(dset.attrs)


# ---------------------------------------------------------------------------------------------------- banks
@dataclass
class Bank:
    """The augmented and plain tile embeddings of one slide.

    Shapes: ``features`` (A, N, F), ``coords`` (A, N, 2), ``plain_features`` (M, F), ``plain_coords`` (M, 2).
    ``features``/``coords`` are ``None`` for tile features imported from TRIDENT or CLAM.
    """

    features: np.ndarray | None
    coords: np.ndarray | None
    plain_features: np.ndarray
    plain_coords: np.ndarray
    attrs: dict


def write_bank(path: str | os.PathLike, bank: Bank) -> None:
    """Write a bank (features stored as float16) atomically."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", track_order=True) as fh:
            if bank.features is not None:
                fh.create_dataset("features", data=np.asarray(bank.features, np.float16), track_times=False)
                fh.create_dataset("coords", data=np.asarray(bank.coords, np.int64), track_times=False)
            fh.create_dataset("plain_features", data=np.asarray(bank.plain_features, np.float16), track_times=False)
            fh.create_dataset("plain_coords", data=np.asarray(bank.plain_coords, np.int64), track_times=False)
            for key, value in bank.attrs.items():
                fh.attrs[key] = _attr(value)


def read_bank(path: str | os.PathLike, augmented: bool = True) -> Bank:
    """Read a gigassl bank, or a TRIDENT/CLAM features file as plain features.

    Args:
        augmented: also load the augmented draws (``features``, ``coords``); False reads only the plain part.
    """
    with _open(path, "Bank") as fh:
        attrs = _attrs_dict(fh.attrs)
        if "plain_features" in fh:
            plain = np.asarray(fh["plain_features"][()], np.float32)
            plain_coords = np.asarray(fh["plain_coords"][()], np.int64)
            feats = coords = None
            if augmented and "features" in fh:
                feats = np.asarray(fh["features"][()])
                coords = np.asarray(fh["coords"][()], np.int64)
            return Bank(feats, coords, plain, plain_coords, attrs)
        if "features" in fh and "coords" in fh:  # TRIDENT / CLAM tile features
            plain = np.asarray(fh["features"][()], np.float32)
            if plain.ndim == 3 and plain.shape[0] == 1:
                plain = plain[0]
            plain_coords = np.asarray(fh["coords"][()], np.int64).reshape(-1, 2)
            attrs.update({f"coords_{k}": v for k, v in _attrs_dict(fh["coords"].attrs).items()})
            if "patch_size_level0" in fh["coords"].attrs:
                attrs.setdefault("patch_size_level0", int(fh["coords"].attrs["patch_size_level0"]))
            attrs.setdefault("encoder", "external")
            if plain.ndim != 2 or plain.shape[0] != plain_coords.shape[0]:
                raise GigasslError(
                    f"{path}: 'features' has shape {plain.shape} but 'coords' {plain_coords.shape}; "
                    "expected features (M, F) and coords (M, 2) as TRIDENT and CLAM write them."
                )
            return Bank(None, None, plain, plain_coords, attrs)
    raise GigasslError(
        f"{path} is neither a gigassl bank (plain_features) nor a TRIDENT/CLAM features file "
        "(features + coords). Run `gigassl bank` to create one."
    )


def read_bank_attrs(path: str | os.PathLike) -> dict:
    """File attributes of a bank, plus ``shape`` of its augmented features (or None)."""
    with _open(path, "Bank") as fh:
        attrs = _attrs_dict(fh.attrs)
        attrs["shape"] = tuple(fh["features"].shape) if "plain_features" in fh and "features" in fh else None
        return attrs


# ----------------------------------------------------------------------------------------------- embeddings
def write_embeddings(path: str | os.PathLike, ids, embeddings: np.ndarray, **attrs) -> None:
    """Write slide embeddings: ``ids`` (S,) and ``embeddings`` (S, D) float32, with attributes."""
    ids = [str(i) for i in ids]
    embeddings = np.asarray(embeddings, np.float32)
    if embeddings.shape[0] != len(ids):
        raise ValueError(f"{len(ids)} ids but {embeddings.shape[0]} embedding rows")
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", track_order=True) as fh:
            fh.create_dataset("ids", data=np.array(ids, dtype=h5py.string_dtype()), track_times=False)
            fh.create_dataset("embeddings", data=embeddings, track_times=False)
            for key, value in attrs.items():
                fh.attrs[key] = _attr(value)


def read_embeddings(path: str | os.PathLike, ids_path: str | os.PathLike | None = None):
    """Read slide embeddings as (ids list, (S, D) float32 array, attributes).

    Accepts gigassl's HDF5 file, or a ``.npy`` matrix with its ids in ``ids_path`` (the layout of the
    authors' released TCGA embeddings: ``embeddings.npy`` + ``ids.npy``).
    """
    path = Path(path)
    if path.suffix == ".npy":
        if ids_path is None:
            raise ManifestError(f"{path} is a bare matrix; give its slide ids with --ids IDS.npy.")
        matrix = np.load(path).astype(np.float32)
        ids = [str(i) for i in np.load(ids_path, allow_pickle=True)]
        if len(ids) != matrix.shape[0]:
            raise ManifestError(f"{ids_path} holds {len(ids)} ids but {path} has {matrix.shape[0]} rows.")
        return ids, matrix, {}
    with _open(path, "Embeddings") as fh:
        if "embeddings" not in fh or "ids" not in fh:
            raise GigasslError(f"{path} lacks 'ids' or 'embeddings'; write it with `gigassl embed`.")
        ids = [i.decode() if isinstance(i, bytes) else str(i) for i in fh["ids"][()]]
        return ids, np.asarray(fh["embeddings"][()], np.float32), _attrs_dict(fh.attrs)
