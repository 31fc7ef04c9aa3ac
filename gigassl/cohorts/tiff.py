"""Writing tiled JPEG pyramidal TIFFs that OpenSlide reads (the slides of ``gigassl synth`` and of the tests).

OpenSlide's generic-TIFF reader sees as pyramid levels only the pages of the main IFD chain that are tiled and
flagged as reduced images (subfiletype 1); :func:`write_pyramid_tiff` writes exactly that layout, with the
resolution tags from which OpenSlide derives the microns per pixel (``openslide.mpp-x``), and nothing that changes
from one run to the next, so equal inputs give equal bytes.
"""

from __future__ import annotations

import numpy as np
import tifffile

from ..errors import ConfigError
from ..files import atomic_path

_PER_UNIT = {"CENTIMETER": 1e4, "INCH": 25400.0}  # microns per resolution unit


def write_pyramid_tiff(path, rgb: np.ndarray, mpp: float | None, n_levels: int, tile: int = 256,
                       quality: int = 90, resolution_unit: str = "CENTIMETER") -> None:
    """Write ``rgb`` as a tiled JPEG pyramidal TIFF that OpenSlide opens with ``n_levels`` levels.

    Levels are 2x area-averaged reductions stored as pages of the main IFD chain (subfiletype 1), the only layout
    OpenSlide's generic-TIFF reader sees as levels. ``mpp`` (um/px at level 0) goes to the resolution tags in
    pixels per centimetre (``resolution_unit="INCH"``: per inch); ``None`` writes none. No date or software tag,
    so equal inputs give equal bytes. JPEG tiles are stored YCbCr 4:2:0, the TIFF convention for JPEG RGB. The
    file appears only complete (written under a temporary name, then renamed).

    Shape: rgb (H, W, 3) uint8.

    Raises:
        ConfigError: ``rgb`` not (H, W, 3) uint8, too many levels for its size, a tile edge that is not a multiple
            of 16, or ``mpp`` <= 0.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ConfigError(f"write_pyramid_tiff needs an (H, W, 3) uint8 array; got {rgb.shape} {rgb.dtype}.")
    if n_levels < 1 or min(rgb.shape[:2]) >> (n_levels - 1) < 1:
        raise ConfigError(f"n_levels={n_levels} does not fit a {rgb.shape[1]}x{rgb.shape[0]} image; use fewer.")
    if tile < 16 or tile % 16:
        raise ConfigError(f"TIFF tile edge must be a multiple of 16 (JPEG blocks); got {tile}. Use e.g. 256.")
    if mpp is not None and not mpp > 0:
        raise ConfigError(f"mpp must be > 0 (microns per pixel) or None; got {mpp}.")
    with atomic_path(path) as tmp, tifffile.TiffWriter(tmp) as tif:
        level = rgb
        for k in range(n_levels):
            per_unit = _PER_UNIT[resolution_unit]
            res = {} if mpp is None else {"resolution": (per_unit / (mpp * 2**k),) * 2, "resolutionunit": resolution_unit}
            tif.write(level, tile=(tile, tile), photometric="rgb", compression="jpeg",
                      compressionargs={"level": int(quality)}, subfiletype=1 if k else 0, metadata=None,
                      software=False, **res)
            level = halve(level)


def halve(level: np.ndarray) -> np.ndarray:
    """The next pyramid level: 2x2 area average (float32, rounded), an odd last row or column dropped.

    Shape: (H, W, 3) uint8 -> (H // 2, W // 2, 3) uint8.
    """
    height, width = level.shape[0] // 2 * 2, level.shape[1] // 2 * 2
    mean = level[:height, :width].reshape(height // 2, 2, width // 2, 2, 3).mean((1, 3), dtype=np.float32)
    return np.rint(mean).astype(np.uint8)
