"""Every HDF5 file gigassl reads or writes: tile coordinates, banks, slide embeddings.

This is the only module that imports h5py. Writers go through a temporary name and a rename
(:func:`gigassl.files.atomic_path`), so a file that exists is complete.

Layouts
-------
- Tile coordinates (``<coords dir>/<slide_id>.h5``): dataset ``coords`` (N, 2) int64, level-0 top-left (x, y),
  chunks (1, 2), resizable, as TRIDENT writes it; attributes on ``coords``: gigassl's ``patch_size``,
  ``patch_size_level0``, ``target_mpp``, ``level0_mpp``, ``level0_width``, ``level0_height``, ``name`` and
  TRIDENT's ``level0_magnification``, ``target_magnification``, ``overlap``. Read as well: TRIDENT's
  ``patches/<slide>_patches.h5`` and CLAM's ``patches/<slide>.h5`` (``patch_level``, ``downsample``; the legacy
  ``create_patches.py`` bag with ``imgs``), see :func:`read_coords` and :func:`coords_file`.
- Bank (``<bank dir>/<slide_id>.h5``, Sec. 3.2): ``features`` (A, N, F) float16, ``coords`` (A, N, 2) int64,
  ``plain_features`` (M, F) float16, ``plain_coords`` (M, 2) int64; file attributes: encoder, weights_sha256,
  tile_px, target_mpp, patch_size_level0, augmentation_mode, seed, version, ...
- Tile features made by TRIDENT (``features_<encoder>/<slide>.h5``) or CLAM (``h5_files/<slide>.h5``):
  ``features`` (M, F), ``coords`` (M, 2), read as plain features (no augmented draws), see :func:`read_features`.
- Slide embeddings (one file): ``ids`` (S,) strings, ``embeddings`` (S, D) float32; attributes:
  checkpoint_sha256, views, tiles_per_view, seed, version. Also written and read as CSV, parquet, or TRIDENT's
  per-slide ``slide_features_<model>/<slide>.h5`` (:func:`write_embeddings`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from . import validate
from .errors import DataError, GigasslError, ManifestError
from .files import atomic_path
from .errors import listing

COORDS_FIX = "Tile the slide again (gigassl tile, TRIDENT or CLAM) into a new folder."
FEATURES_FIX = ("Extract this slide's features again (TRIDENT, CLAM or gigassl bank) into a new folder, or move the "
                "file out of the folder to leave the slide out.")
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
    validate.existing_file(path, f"{what} file", "run the stage that writes it first.")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        text = str(err).lower()
        if "truncated file" in text:  # HDF5 records the size it was written with: a copy or a write cut short
            raise GigasslError(
                f"{what} file {path} is truncated ({err}): a copy or a write that did not finish. Copy it again, "
                "or run the tool that wrote it again into a new folder."
            ) from None
        if "unable to lock file" in text or "errno = 11" in text:  # HDF5 file locking: a writer has it open
            raise GigasslError(
                f"{what} file {path} is open for writing in another process (HDF5 file lock: {err}). Wait for that "
                "process to finish; on a file system without locks (some NFS mounts) set HDF5_USE_FILE_LOCKING=FALSE."
            ) from None
        raise GigasslError(
            f"{what} file {path} is not a readable HDF5 file ({err}): it is truncated or another kind of file. "
            "Expected the HDF5 output of gigassl, TRIDENT or CLAM; check where it came from (copy it again, or run "
            "the tool that wrote it again into a new folder)."
        ) from None


# ------------------------------------------------------------------------------- the field's layouts
# Where each tool puts a slide's files, relative to the folder a user points at (first match wins):
# gigassl (<dir>/<slide>.h5), TRIDENT (<coords dir>/patches/<slide>_patches.h5, features_<encoder>/<slide>.h5),
# CLAM (<save dir>/patches/<slide>.h5, <feat dir>/h5_files/<slide>.h5).
COORDS_PATTERNS = ("{}.h5", "{}_patches.h5", "patches/{}.h5", "patches/{}_patches.h5")
FEATURES_PATTERNS = ("{}.h5", "h5_files/{}.h5")
# TRIDENT's magnification of a level-0 MPP (WSI._fetch_magnification): the first bin whose upper bound exceeds it
MAGNIFICATION_BINS = ((0.16, 80), (0.2, 60), (0.3, 40), (0.6, 20), (1.2, 10), (2.4, 5))


def magnification(mpp: float) -> float:
    """The objective magnification TRIDENT assigns to a microns-per-pixel value (0.5 -> 20, 1.0 -> 10);
    beyond its bins, 10 / mpp."""
    for bound, mag in MAGNIFICATION_BINS:
        if mpp < bound:
            return mag
    return 10.0 / float(mpp)


def _find(folder: str | os.PathLike, slide_id: str, patterns) -> Path | None:
    folder = Path(folder)
    for pattern in patterns:
        path = folder / pattern.format(slide_id)
        if path.is_file():
            return path
    return None


def coords_file(coords_dir: str | os.PathLike, slide_id: str) -> Path | None:
    """The tile-coordinates file of ``slide_id`` in a folder written by gigassl, TRIDENT or CLAM (None if none)."""
    return _find(coords_dir, slide_id, COORDS_PATTERNS)


def features_file(features_dir: str | os.PathLike, slide_id: str) -> Path | None:
    """The bank or tile-features file of ``slide_id`` in a gigassl bank, TRIDENT or CLAM folder (None if none)."""
    return _find(features_dir, slide_id, FEATURES_PATTERNS)


def feature_files(folder: str | os.PathLike) -> dict[str, Path]:
    """{slide_id: file} of every bank / tile-features file of a folder (gigassl, TRIDENT ``features_<enc>/``, or a
    CLAM features folder holding ``h5_files/``), sorted by slide id."""
    folder = Path(folder)
    files = sorted(folder.glob("*.h5")) or sorted((folder / "h5_files").glob("*.h5"))
    return {p.stem: p for p in files}


def _level0_tile(path, attrs: dict, shape_px: int | None = None) -> tuple[int, int]:
    """(tile px, level-0 px of a tile) from the attributes of gigassl, TRIDENT or CLAM coordinates."""
    px, level0 = _recorded_tile(path, attrs, shape_px)
    if not (np.isfinite(px) and np.isfinite(level0) and px > 0 and level0 > 0):
        raise GigasslError(f"{path}: the recorded tile size is {px} px ({level0} level-0 px); expected positive "
                           f"numbers. {COORDS_FIX}")
    return int(px), int(round(level0))


def _recorded_tile(path, attrs: dict, shape_px: int | None = None) -> tuple[float, float]:
    px = attrs.get("patch_size", shape_px)
    if "patch_size_level0" in attrs and px is not None:
        return float(px), float(attrs["patch_size_level0"])
    if {"level0_magnification", "target_magnification"} <= set(attrs) and px is not None:  # older TRIDENT
        return float(px), float(px) * float(attrs["level0_magnification"]) / float(attrs["target_magnification"])
    if "downsample" in attrs and px is not None:  # CLAM: patch_size pixels at patch_level, of that downsample
        return float(px), float(px) * float(np.ravel(attrs["downsample"])[0])
    raise GigasslError(
        f"{path}: the tile size is not recorded (attributes {sorted(attrs) or 'none'}); expected patch_size with "
        "patch_size_level0 (gigassl, TRIDENT), level0_magnification and target_magnification (TRIDENT), or "
        "patch_level and downsample (CLAM's create_patches_fp.py). Tile the slides with `gigassl tile`, or "
        "TRIDENT / CLAM, again.")


def read_coords(path: str | os.PathLike) -> tuple[np.ndarray, dict]:
    """Read (coords (N, 2) int64 level-0 top-left (x, y), attributes) from the coordinates of gigassl, TRIDENT or
    CLAM (``create_patches_fp.py``; the legacy ``create_patches.py`` bag, whose ``coords`` are in pixels of its
    ``patch_level``, is converted to level 0).

    The attributes are the file's, plus ``patch_size`` (tile px) and ``patch_size_level0`` (its level-0 extent)
    whatever the layout, and ``layout`` (gigassl, trident or clam).
    """
    with _open(path, "Coordinates") as fh:
        if "coords" not in fh:
            raise GigasslError(f"{path} has no 'coords' dataset (it has {sorted(fh) or 'nothing'}); expected the "
                               "tile coordinates of gigassl tile, TRIDENT or CLAM.")
        dset = fh["coords"]
        attrs = _attrs_dict(dset.attrs)
        coords = validate.coords(dset[()], f"The 'coords' dataset of {path}", COORDS_FIX)
        if not attrs and "imgs" in fh:  # legacy CLAM bag: coords at patch_level, the geometry on `imgs`
            legacy = _attrs_dict(fh["imgs"].attrs)
            down = np.ravel(legacy.get("downsample", [1.0, 1.0])).astype(np.float64)
            coords = np.rint(coords * down[:2]).astype(np.int64)
            attrs = {**legacy, "patch_size": int(fh["imgs"].shape[1]), "layout": "clam"}
    px, level0 = _level0_tile(path, attrs)
    layout = attrs.get("layout") or ("gigassl" if "target_mpp" in attrs else "trident"
                                     if "target_magnification" in attrs else "clam")
    return coords, {**attrs, "patch_size": px, "patch_size_level0": level0, "layout": layout}


def write_coords(path: str | os.PathLike, coords: np.ndarray, **attrs) -> None:
    """Write tile coordinates (N, 2) int64 level-0 (x, y) with ``attrs`` on the ``coords`` dataset, as TRIDENT
    lays them out (chunks (1, 2), resizable), adding TRIDENT's ``level0_magnification``, ``target_magnification``
    and ``overlap`` (0) when ``level0_mpp`` and ``target_mpp`` are given, so that TRIDENT reads them."""
    coords = validate.coords(coords, f"The tile coordinates written to {path}")
    if "level0_mpp" in attrs and "target_mpp" in attrs:
        attrs = {"level0_magnification": magnification(float(attrs["level0_mpp"])),
                 "target_magnification": magnification(float(attrs["target_mpp"])), "overlap": 0, **attrs}
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", track_order=True) as fh:
            dset = fh.create_dataset("coords", data=coords, chunks=(1, 2) if len(coords) else None,
                                     maxshape=(None, 2), track_times=False)
            for key, value in attrs.items():
                dset.attrs[key] = _attr(value)


def grid_step(coords: np.ndarray) -> int | None:
    """The step of a regular tile grid: the smallest positive gap between distinct x or y coordinates (None for
    fewer than two distinct positions). CLAM's features record no tile size; this is its level-0 extent when tiles
    do not overlap."""
    gaps = [np.diff(np.unique(np.asarray(coords)[:, axis])) for axis in (0, 1)] if len(coords) else []
    gaps = np.concatenate(gaps) if gaps else np.empty(0)
    gaps = gaps[gaps > 0]
    return int(gaps.min()) if len(gaps) else None


def write_features(path: str | os.PathLike, features: np.ndarray, coords: np.ndarray, feature_attrs: dict,
                   coord_attrs: dict) -> None:
    """Write one slide's tile features as TRIDENT writes them (``features_<encoder>/<slide>.h5``, trident/IO.py
    ``save_h5``), atomically: ``features`` (M, F) float32 with ``feature_attrs`` (TRIDENT: ``name``, ``savetodir``,
    ``encoder``) and ``coords`` (M, 2) int64 level-0 (x, y) with ``coord_attrs`` (TRIDENT copies its tiling's:
    ``patch_size``, ``patch_size_level0``, ``level0_magnification``, ``target_magnification``, ``overlap``, ...), both
    chunked by row and resizable. Read back by :func:`read_features`."""
    features = validate.features(features, f"The tile features written to {path}")
    coords = validate.coords(coords, f"The tile coordinates written to {path}")
    validate.same_tile_count(features, coords, str(path))
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", track_order=True) as fh:
            for name, data, attrs in (("features", features, feature_attrs), ("coords", coords, coord_attrs)):
                dset = fh.create_dataset(name, data=data, chunks=(1,) + data.shape[1:] if len(data) else None,
                                         maxshape=(None,) + data.shape[1:], track_times=False)
                for key, value in attrs.items():
                    dset.attrs[key] = _attr(value)


def read_features(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, dict]:
    """Tile features of TRIDENT (``features_<encoder>/<slide>.h5``) or CLAM (``h5_files/<slide>.h5``), current or
    legacy: (features (M, F) float32, coords (M, 2) int64 level-0, attributes).

    The attributes gather those of ``features`` (TRIDENT: ``encoder``, ``name``), of ``coords`` (TRIDENT copies its
    coordinates' attributes; CLAM writes none) and ``patch_size_level0`` (recorded, or else the grid step of the
    coordinates, with ``patch_size_level0_source``); ``encoder`` is ``external`` when not recorded. An empty slide
    (TRIDENT writes features of shape (0,) or (0, F)) gives M = 0.
    """
    with _open(path, "Tile features") as fh:
        if "features" not in fh or "coords" not in fh:
            raise GigasslError(f"{path} has datasets {sorted(fh) or 'none'}; expected 'features' (M, F) and 'coords' "
                               "(M, 2) as TRIDENT and CLAM write tile features (or a gigassl bank).")
        feats = validate.numeric(fh["features"][()], f"The 'features' dataset of {path}", FEATURES_FIX)
        coords = validate.coords(fh["coords"][()], f"The 'coords' dataset of {path}", FEATURES_FIX)
        attrs = {**_attrs_dict(fh.attrs), **_attrs_dict(fh["features"].attrs)}
        attrs.update({k: v for k, v in _attrs_dict(fh["coords"].attrs).items() if k not in attrs})
    if feats.ndim == 3 and feats.shape[0] == 1:  # (1, M, F): some exporters keep a batch axis
        feats = feats[0]
    if feats.size == 0:
        feats = feats.reshape(0, feats.shape[-1] if feats.ndim == 2 else 0)
    feats = validate.features(feats, f"The 'features' dataset of {path}", FEATURES_FIX)
    validate.same_tile_count(feats, coords, str(path), FEATURES_FIX)
    if attrs.get("encoder") in (None, "", "None"):
        attrs["encoder"] = "external"
    try:
        attrs["patch_size_level0"] = _level0_tile(path, attrs)[1]
    except GigasslError:
        step = grid_step(coords)
        if step is not None:
            attrs.update(patch_size_level0=step, patch_size_level0_source="the grid step of the coordinates")
    attrs["feature_dim"] = int(feats.shape[1])
    return feats, coords, attrs


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
    """Write a bank (features stored as float16) atomically.

    Raises:
        DataError: a feature is NaN or infinite once stored as float16 (an encoder's NaN, or a value beyond
            float16's 65504): nothing is written.
    """
    slide = f"slide {bank.attrs['slide_id']}" if bank.attrs.get("slide_id") else Path(path).name
    fix = (f"Check the tile encoder ({bank.attrs.get('encoder', 'unknown')}): its outputs must be finite and within "
           "float16's range (|x| < 65504).")
    with np.errstate(over="ignore"):  # a value beyond float16's range becomes inf: refused below, by name
        plain, feats = np.asarray(bank.plain_features, np.float16), bank.features
        feats = None if feats is None else np.asarray(feats, np.float16)
    validate.finite(plain, f"The plain tile features of {slide}", fix, "tile")
    plain_coords = validate.coords(bank.plain_coords, f"The plain tile coordinates of {slide}")
    if feats is not None:
        validate.finite(feats, f"The augmented tile features of {slide}", fix, "augmentation draw")
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", track_order=True) as fh:
            if feats is not None:
                fh.create_dataset("features", data=feats, track_times=False)
                fh.create_dataset("coords", data=np.asarray(bank.coords, np.int64), track_times=False)
            fh.create_dataset("plain_features", data=plain, track_times=False)
            fh.create_dataset("plain_coords", data=plain_coords, track_times=False)
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
            fix = "Run `gigassl bank` for this slide again (delete its file first) or move it out of the folder."
            plain = validate.features(fh["plain_features"][()], f"The 'plain_features' of the bank {path}", fix)
            plain_coords = validate.coords(fh["plain_coords"][()], f"The 'plain_coords' of the bank {path}", fix)
            validate.same_tile_count(plain, plain_coords, f"The bank {path}", fix)
            feats = coords = None
            if augmented and "features" in fh:
                what = f"The augmented 'features' of the bank {path}"
                feats = validate.finite(validate.numeric(fh["features"][()], what, fix), what, fix,
                                        "augmentation draw")
                coords = validate.numeric(fh["coords"][()], f"The augmented 'coords' of the bank {path}", fix)
                if feats.ndim != 3 or feats.shape[2] != plain.shape[1] or coords.shape != feats.shape[:2] + (2,):
                    raise DataError(
                        f"The bank {path} has augmented features of shape {feats.shape} and coords of shape "
                        f"{coords.shape}; expected (A, N, {plain.shape[1]}) and (A, N, 2). {fix}")
                coords = coords.astype(np.int64, copy=False)
            return Bank(feats, coords, plain, plain_coords, attrs)
    plain, plain_coords, attrs = read_features(path)  # TRIDENT / CLAM tile features (or a clear error)
    return Bank(None, None, plain, plain_coords, attrs)


def read_bank_attrs(path: str | os.PathLike) -> dict:
    """File attributes of a bank, plus ``shape`` of its augmented features (or None)."""
    with _open(path, "Bank") as fh:
        attrs = _attrs_dict(fh.attrs)
        attrs["shape"] = tuple(fh["features"].shape) if "plain_features" in fh and "features" in fh else None
        return attrs


# ----------------------------------------------------------------------------------------------- embeddings
EMBEDDING_FORMATS = ("h5", "csv", "parquet", "trident")
EMBEDDINGS_FIX = ("Embed the slides again (gigassl embed) with a checkpoint of a training that did not diverge, or "
                  "leave the listed slides out.")


def embeddings_format(path: str | os.PathLike, fmt: str | None = None) -> str:
    """The format of a slide-embeddings path: ``fmt`` if given, else from the suffix (``.h5``/``.hdf5``, ``.csv``,
    ``.parquet``; no suffix: a TRIDENT ``slide_features_<model>/`` folder of ``<slide>.h5``)."""
    if fmt is not None:
        if fmt not in EMBEDDING_FORMATS:
            raise ManifestError(f"Embeddings format {fmt!r} is not one of {', '.join(EMBEDDING_FORMATS)}.")
        return fmt
    suffix = Path(path).suffix.lower()
    known = {".h5": "h5", ".hdf5": "h5", ".csv": "csv", ".parquet": "parquet", "": "trident"}
    if suffix not in known:
        raise ManifestError(f"Cannot tell the format of {path} from its suffix {suffix!r}: use .h5, .csv, .parquet, "
                            "or a folder name without suffix (TRIDENT's per-slide layout).")
    return known[suffix]


def write_embeddings(path: str | os.PathLike, ids, embeddings: np.ndarray, fmt: str | None = None,
                     coords: dict | None = None, **attrs) -> None:
    """Write slide embeddings ``ids`` (S,) and ``embeddings`` (S, D) float32 with their attributes, in the format
    of :func:`embeddings_format`:

    - ``h5``: datasets ``ids`` and ``embeddings``, file attributes;
    - ``csv``: columns ``slide_id``, ``f0`` ... ``f{D-1}``; the attributes in ``<path>.json``;
    - ``parquet``: the same columns, the attributes as JSON in the schema metadata (key ``gigassl``);
    - ``trident``: a folder of ``<slide_id>.h5`` as TRIDENT's slide encoders write them: ``features`` (D,) float32
      with the attributes (and ``name``, ``encoder`` = ``gigassl``), and ``coords`` (M, 2) when ``coords``
      ({slide_id: (M, 2)}) is given.
    """
    import json

    ids = [str(i) for i in ids]
    embeddings = validate.embeddings(ids, embeddings, f"The slide embeddings to write to {path}",
                                     "Nothing was written; check the checkpoint (a diverged training) and the inputs.")
    kind = embeddings_format(path, fmt)
    plain = {k: _attr(v) for k, v in attrs.items()}
    if kind == "h5":
        with atomic_path(path) as tmp:
            with h5py.File(tmp, "w", track_order=True) as fh:
                fh.create_dataset("ids", data=np.array(ids, dtype=h5py.string_dtype()), track_times=False)
                fh.create_dataset("embeddings", data=embeddings, track_times=False)
                for key, value in plain.items():
                    fh.attrs[key] = value
        return
    if kind == "trident":
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        for sid, row in zip(ids, embeddings):
            with atomic_path(folder / f"{sid}.h5") as tmp:
                with h5py.File(tmp, "w", track_order=True) as fh:
                    dset = fh.create_dataset("features", data=row, chunks=(1,), maxshape=(None,), track_times=False)
                    for key, value in {"name": sid, "savetodir": str(folder), "encoder": "gigassl", **plain}.items():
                        dset.attrs[key] = value
                    if coords is not None and sid in coords:
                        fh.create_dataset("coords", data=validate.coords(coords[sid], f"The coordinates of {sid}"),
                                          track_times=False)
        return
    import pandas as pd

    frame = pd.DataFrame(embeddings, columns=[f"f{j}" for j in range(embeddings.shape[1])])
    frame.insert(0, "slide_id", ids)
    meta = json.dumps(plain, default=str)
    with atomic_path(path) as tmp:
        if kind == "csv":
            frame.to_csv(tmp, index=False)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(frame, preserve_index=False)
            pq.write_table(table.replace_schema_metadata({**(table.schema.metadata or {}), b"gigassl": meta.encode()}),
                           tmp)
    if kind == "csv":
        with atomic_path(f"{path}.json") as tmp:
            Path(tmp).write_text(meta + "\n")


def written_by_gigassl(path: str | os.PathLike, fmt: str | None = None) -> bool:
    """Whether the existing slide-embeddings output ``path`` was written by gigassl (:func:`write_embeddings`), so
    that embedding again may replace it: an HDF5 file of ``ids`` and ``embeddings`` only, a CSV whose header is
    ``slide_id,f0,...``, a parquet file with gigassl's metadata, a folder whose every ``.h5`` is a gigassl
    per-slide embedding."""
    path, kind = Path(path), embeddings_format(path, fmt)
    try:
        if kind == "trident":
            return path.is_dir() and all(_gigassl_slide_embedding(f) for f in path.glob("*.h5"))
        if not path.is_file():
            return False
        if kind == "h5":
            with _open(path, "Embeddings") as fh:
                return set(fh) == {"ids", "embeddings"}
        if kind == "csv":
            with open(path) as handle:
                header = handle.readline().strip()
            return header == "slide_id" or header.startswith("slide_id,f0")
        import pyarrow.parquet as pq

        return b"gigassl" in (pq.read_schema(path).metadata or {})
    except (GigasslError, OSError, ValueError):  # unreadable: not a file gigassl wrote
        return False


def _gigassl_slide_embedding(path: Path) -> bool:
    with _open(path, "Slide embedding") as fh:
        return "features" in fh and _attrs_dict(fh["features"].attrs).get("encoder") == "gigassl"


def read_embeddings(path: str | os.PathLike, ids_path: str | os.PathLike | None = None):
    """Read slide embeddings as (ids list, (S, D) float32 array, attributes).

    Accepts every format of :func:`write_embeddings` (HDF5, CSV, parquet, a TRIDENT ``slide_features`` folder), or
    a ``.npy`` matrix with its ids in ``ids_path`` (the layout of the authors' released TCGA embeddings:
    ``embeddings.npy`` + ``ids.npy``).
    """
    import json

    path = Path(path)
    if path.suffix == ".npy":
        if ids_path is None:
            raise ManifestError(f"{path} is a bare matrix; give its slide ids with --ids IDS.npy.")
        matrix = np.load(validate.existing_file(path, "Embeddings file", "give the .npy matrix of embeddings."))
        ids = [str(i) for i in np.load(validate.existing_file(ids_path, "Ids file", "give the .npy of slide ids."),
                                       allow_pickle=True)]
        if matrix.ndim == 2 and len(ids) != matrix.shape[0]:
            raise ManifestError(f"{ids_path} holds {len(ids)} ids but {path} has {matrix.shape[0]} rows.")
        return ids, validate.embeddings(ids, matrix, f"The embeddings of {path}", EMBEDDINGS_FIX), {}
    if path.is_dir():
        files = sorted(path.glob("*.h5"))
        if not files or any(_is_tile_features(f) for f in files[:5]):
            raise ManifestError(
                f"{path} is a folder of {'tile features or banks' if files else 'no .h5 file'}, not slide embeddings: "
                "give the file written by `gigassl embed` (.h5, .csv, .parquet) or a folder of per-slide embeddings "
                "(TRIDENT's slide_features_<model>/, one `features` vector per slide). To probe tile features, use "
                "--method averagemil|deepmil --bank DIR.")
        ids, rows, attrs = [], [], {}
        for f in files:
            with _open(f, "Slide embedding") as fh:
                if "features" not in fh or fh["features"].ndim != 1:
                    raise ManifestError(f"{f} holds no `features` vector (D,); expected TRIDENT's per-slide layout.")
                rows.append(validate.numeric(fh["features"][()], f"The `features` of {f}", EMBEDDINGS_FIX))
                attrs = {k: v for k, v in _attrs_dict(fh["features"].attrs).items() if k not in ("name", "savetodir")}
                ids.append(f.stem)
        sizes = {len(r) for r in rows}
        if len(sizes) > 1:
            odd = [i for i, r in zip(ids, rows) if len(r) != len(rows[0])]
            raise DataError(f"The slide embeddings of {path} differ in length ({sorted(sizes)}): {ids[0]} has "
                            f"{len(rows[0])} values, {listing(odd)} another number; expected one model's "
                            "embeddings. Move the other model's files to their own folder.")
        return ids, validate.embeddings(ids, np.stack(rows), f"The slide embeddings of {path}", EMBEDDINGS_FIX), attrs
    kind = embeddings_format(path)
    if kind in ("csv", "parquet"):
        import pandas as pd

        validate.existing_file(path, "Embeddings file", "run `gigassl embed` first.")
        frame = pd.read_csv(path, dtype={"slide_id": str}) if kind == "csv" else pd.read_parquet(path)
        if "slide_id" not in frame.columns:
            raise ManifestError(f"{path} has no `slide_id` column; expected slide_id, f0, f1, ... (gigassl embed).")
        text = [c for c in frame.columns if c != "slide_id" and not pd.api.types.is_numeric_dtype(frame[c])]
        if text:
            raise DataError(f"{path}: columns {listing(text)} are not numbers; expected slide_id, then one "
                            f"numeric column per dimension (f0, f1, ...). {EMBEDDINGS_FIX}")
        if kind == "csv":
            sidecar = Path(f"{path}.json")
            attrs = json.loads(sidecar.read_text()) if sidecar.exists() else {}
        else:
            import pyarrow.parquet as pq

            attrs = json.loads((pq.read_schema(path).metadata or {}).get(b"gigassl", b"{}"))
        ids = frame["slide_id"].astype(str).tolist()
        return ids, validate.embeddings(ids, frame.drop(columns="slide_id").to_numpy(np.float32),
                                        f"The slide embeddings of {path}", EMBEDDINGS_FIX), attrs
    with _open(path, "Embeddings") as fh:
        if "embeddings" not in fh or "ids" not in fh:
            what = "a bank or tile-features file" if "features" in fh or "plain_features" in fh else "not embeddings"
            raise GigasslError(f"{path} lacks 'ids' or 'embeddings' ({what}); give the file written by "
                               "`gigassl embed`.")
        ids = [i.decode() if isinstance(i, bytes) else str(i) for i in fh["ids"][()]]
        return ids, validate.embeddings(ids, fh["embeddings"][()], f"The slide embeddings of {path}",
                                        EMBEDDINGS_FIX), _attrs_dict(fh.attrs)


def _is_tile_features(path: Path) -> bool:
    with _open(path, "The") as fh:
        return "plain_features" in fh or ("features" in fh and fh["features"].ndim == 2)
