"""Files laid out exactly as TRIDENT and CLAM write them (dataset names, dtypes, chunking, attributes, file names),
as read from their public code (TRIDENT: trident/IO.py ``save_h5``/``coords_to_h5``, WSI.py
``extract_tissue_coords``/``extract_patch_features``; CLAM: wsi_core/wsi_utils.py ``save_hdf5``, WholeSlideImage.py
``process_contour``, extract_features_fp.py, the legacy create_patches.py ``initialize_hdf5_bag``).

Written with h5py directly (not with gigassl), so that the readers are tested against the tools' layouts.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np


def _save_h5(path: Path, assets: dict, attributes: dict | None = None, chunk: int = 1) -> None:
    """TRIDENT's / CLAM's save_h5: resizable datasets chunked (chunk, ...) with attributes on the datasets."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as fh:
        for key, value in assets.items():
            shape = value.shape
            chunks = (chunk,) + shape[1:] if len(value) else None
            dset = fh.create_dataset(key, data=value, chunks=chunks, maxshape=(None,) + shape[1:])
            for name, attr in (attributes or {}).get(key, {}).items():
                dset.attrs[name] = "None" if attr is None else attr


def trident_coords(job_dir: Path, slide: str, coords: np.ndarray, patch_size: int, level0_mag: int, target_mag: int,
                   width: int = 1000, height: int = 1000) -> Path:
    """``<job>/<mag>x_<px>px_0px_overlap/patches/<slide>_patches.h5`` (TRIDENT coords_to_h5)."""
    folder = job_dir / f"{target_mag}x_{patch_size}px_0px_overlap"
    path = folder / "patches" / f"{slide}_patches.h5"
    attrs = {"patch_size": patch_size, "patch_size_level0": patch_size * level0_mag // target_mag,
             "level0_magnification": level0_mag, "target_magnification": target_mag, "overlap": 0, "name": slide,
             "savetodir": str(folder), "level0_width": width, "level0_height": height}
    _save_h5(path, {"coords": np.asarray(coords, np.int64).reshape(-1, 2)}, {"coords": attrs})
    return path


def trident_features(coords_path: Path, encoder: str, features: np.ndarray) -> Path:
    """``<coords dir>/features_<encoder>/<slide>.h5`` (TRIDENT extract_patch_features): features (N, D) as the encoder
    returned them, coords copied with their attributes, ``name``/``savetodir``/``encoder`` on features. An empty
    slide gets coords (0, 2) and features (0, D) (or (0,) when ``features`` is given with shape (0,))."""
    with h5py.File(coords_path, "r") as fh:
        coords, coord_attrs = fh["coords"][()], dict(fh["coords"].attrs)
    slide = coords_path.name[: -len("_patches.h5")]
    folder = coords_path.parent.parent / f"features_{encoder}"
    path = folder / f"{slide}.h5"
    _save_h5(path, {"features": np.asarray(features), "coords": coords},
             {"features": {"name": slide, "savetodir": str(folder), "encoder": encoder}, "coords": coord_attrs})
    return path


def clam_coords(save_dir: Path, slide: str, coords: np.ndarray, patch_size: int, patch_level: int,
                downsample: float, level_dim=(1000, 1000)) -> Path:
    """``<save_dir>/patches/<slide>.h5`` (CLAM create_patches_fp.py): level-0 coords, attributes of the patch level."""
    path = save_dir / "patches" / f"{slide}.h5"
    attrs = {"patch_size": patch_size, "patch_level": patch_level,
             "downsample": np.array([downsample, downsample], np.float64),
             "downsampled_level_dim": np.array(level_dim, np.int64), "level_dim": np.array(level_dim, np.int64),
             "name": slide, "save_path": str(save_dir / "patches")}
    _save_h5(path, {"coords": np.asarray(coords, np.int64).reshape(-1, 2)}, {"coords": attrs})
    return path


def clam_features(feat_dir: Path, slide: str, features: np.ndarray, coords: np.ndarray, legacy: bool = False) -> Path:
    """``<feat_dir>/h5_files/<slide>.h5`` (CLAM extract_features_fp.py): features float32 and coords int32 chunked
    by 32, no attributes; ``legacy``: the older writer (chunks of 1, coords as read, int64)."""
    path = feat_dir / "h5_files" / f"{slide}.h5"
    if legacy:
        _save_h5(path, {"features": np.asarray(features), "coords": np.asarray(coords)}, chunk=1)
    else:
        _save_h5(path, {"features": np.asarray(features, np.float32), "coords": np.asarray(coords, np.int32)},
                 chunk=32)
    return path


def clam_legacy_bag(save_dir: Path, slide: str, images: np.ndarray, coords_at_level: np.ndarray, patch_level: int,
                    downsample: float) -> Path:
    """The legacy ``create_patches.py`` bag: ``imgs`` (N, H, W, 3) uint8 with the geometry, ``coords`` int32 in pixels
    of ``patch_level`` and no attributes."""
    path = save_dir / "patches" / f"{slide}.h5"
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as fh:
        imgs = fh.create_dataset("imgs", data=images, chunks=(1,) + images.shape[1:], maxshape=(None,) + images.shape[1:])
        for key, value in {"patch_level": patch_level, "wsi_name": slide, "downsample": (downsample, downsample),
                           "level_dim": (1000, 1000), "downsampled_level_dim": (500, 500)}.items():
            imgs.attrs[key] = value
        fh.create_dataset("coords", data=np.asarray(coords_at_level, np.int32), chunks=(1, 2), maxshape=(None, 2))
    return path


def trident_slide_features(coords_path: Path, slide_encoder: str, features: np.ndarray) -> Path:
    """``<coords dir>/slide_features_<slide_encoder>/<slide>.h5`` (TRIDENT extract_slide_features): ``features`` (D,)
    float32 as the slide encoder's output squeezed, ``coords`` copied with their attributes, ``name``/``savetodir``
    on features."""
    with h5py.File(coords_path, "r") as fh:
        coords, coord_attrs = fh["coords"][()], dict(fh["coords"].attrs)
    slide = coords_path.name[: -len("_patches.h5")]
    folder = coords_path.parent.parent / f"slide_features_{slide_encoder}"
    path = folder / f"{slide}.h5"
    _save_h5(path, {"features": np.asarray(features, np.float32).reshape(-1), "coords": coords},
             {"features": {"name": slide, "savetodir": str(folder)}, "coords": coord_attrs})
    return path
