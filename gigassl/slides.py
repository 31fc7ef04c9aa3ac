"""Where tiles are read: opening slides with OpenSlide, their MPP, and the tile reader.

Any format OpenSlide reads works (Aperio SVS, Hamamatsu NDPI, MIRAX, generic tiled TIFF, ...). Every failure
is a :class:`gigassl.errors.SlideError` that names the file and the fix.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import openslide
from PIL import Image

from .errors import SlideError, suggest

RESAMPLE = Image.Resampling.BILINEAR  # antialiased when reducing


def open_slide(path: str | os.PathLike) -> openslide.OpenSlide:
    """Open a slide, turning OpenSlide's errors into messages that name the file and the fix."""
    path = Path(path)
    if not path.exists():
        raise SlideError(suggest(f"Slide {path} does not exist.", "Check the manifest's `path` column "
                                 "(relative paths are relative to the manifest's folder)."))
    try:
        return openslide.OpenSlide(str(path))
    except openslide.OpenSlideUnsupportedFormatError:
        raise SlideError(suggest(
            f"Slide {path} is not in a format OpenSlide reads, or is truncated (for TIFF: OpenSlide needs a tiled, "
            "pyramidal TIFF; striped or non-pyramidal TIFFs are rejected).",
            "Convert it, e.g. `vips tiffsave in.tif out.tiff --tile --pyramid --compression jpeg`.",
            "If it is a copy, copy it again from its source; or remove it from the manifest.",
        )) from None
    except openslide.OpenSlideError as err:
        raise SlideError(f"Slide {path} could not be opened by OpenSlide ({err}); the file may be truncated "
                         "or corrupt: copy it again from its source.") from None


def read_region_rgb(slide: openslide.OpenSlide, location: tuple[int, int], level: int, size: tuple[int, int],
                    path: str | os.PathLike = "") -> Image.Image:
    """``read_region`` composited on white (transparent pixels outside the scanned area become white)."""
    try:
        rgba = slide.read_region((int(location[0]), int(location[1])), level, (int(size[0]), int(size[1])))
    except openslide.OpenSlideError as err:
        raise SlideError(f"Slide {path} could not be read at {location}, level {level} ({err}); the file is "
                         "probably truncated or corrupt: copy it again from its source.") from None
    if rgba.getextrema()[3][0] == 255:  # fully opaque (the usual case): no compositing needed
        return rgba.convert("RGB")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


# microns per unit of TIFF's ResolutionUnit as OpenSlide reports it (tiff.ResolutionUnit)
_TIFF_UNITS = {"centimeter": 1e4, "inch": 25400.0, "3": 1e4, "2": 25400.0}
PLAUSIBLE_MPP = (0.05, 20.0)  # level-0 microns per pixel of a scanned slide (>= 0.5x ... 200x)


def recorded_mpp(properties) -> tuple[float | None, str]:
    """The level-0 MPP a slide records, read the way the field does, and where it was found.

    In order (TRIDENT's): ``openslide.mpp-x``; ``openslide.mirax.MPP``; ``aperio.MPP``; the TIFF resolution tags,
    ``tiff.XResolution`` in pixels per ``tiff.ResolutionUnit`` (centimeter: 10^4 / value, inch: 25,400 / value; no
    unit: not used). A value outside
    :data:`PLAUSIBLE_MPP` (e.g. a 72-dpi default resolution) is not used. Returns (None, what was seen) when none
    is usable.
    """
    seen = []
    for key in ("openslide.mpp-x", "openslide.mirax.MPP", "aperio.MPP"):
        raw = properties.get(key)
        if raw is not None:
            value = _positive(raw)
            if value is not None and PLAUSIBLE_MPP[0] <= value <= PLAUSIBLE_MPP[1]:
                return value, key
            seen.append(f"{key}={raw!r}")
    raw, unit = properties.get("tiff.XResolution"), str(properties.get("tiff.ResolutionUnit", "")).lower()
    if raw is not None:
        resolution = _positive(raw)
        if resolution is not None and unit in _TIFF_UNITS:
            value = _TIFF_UNITS[unit] / resolution
            if PLAUSIBLE_MPP[0] <= value <= PLAUSIBLE_MPP[1]:
                return value, f"tiff.XResolution ({raw} per {unit})"
        seen.append(f"tiff.XResolution={raw!r} per {unit or 'no unit'}")
    return None, ", ".join(seen) or "no MPP property"


def _positive(raw) -> float | None:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if value > 0 and np.isfinite(value) else None


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _given(value, what: str, path) -> float:
    if _positive(value) is None:
        raise SlideError(f"{what} {value!r} for {path} must be a positive number of microns per pixel.")
    return float(value)


def slide_mpp(slide: openslide.OpenSlide, path: str | os.PathLike = "", override: float | None = None,
              fallback: float | None = None) -> float:
    """Level-0 microns per pixel of a slide.

    ``override`` (a manifest's per-slide ``mpp``, or ``--mpp`` with ``--force-mpp``) wins; else what the slide
    records (:func:`recorded_mpp`); else ``fallback`` (``--mpp``, used only for slides that record none).

    Raises:
        SlideError: no value is given or recorded.
    """
    if not _missing(override):
        return _given(override, "MPP override", path)
    recorded, source = recorded_mpp(slide.properties)
    if recorded is not None:
        return recorded
    if not _missing(fallback):
        return _given(fallback, "--mpp", path)
    raise SlideError(suggest(
        f"Slide {path} records no usable microns-per-pixel ({source}); tiles at a target MPP need it.",
        "Pass it with `--mpp 0.25` (40x) / `--mpp 0.5` (20x): it applies to the slides that record none,",
        "or add an `mpp` column to the manifest for this slide.",
    ))


def slide_info(path: str | os.PathLike) -> dict:
    """What OpenSlide sees in a slide: vendor, levels, dimensions, downsamples, MPP, objective power."""
    slide = open_slide(path)
    try:
        props = slide.properties
        return {
            "path": str(path),
            "vendor": props.get(openslide.PROPERTY_NAME_VENDOR, "unknown"),
            "level_count": slide.level_count,
            "dimensions": [tuple(d) for d in slide.level_dimensions],
            "downsamples": [float(d) for d in slide.level_downsamples],
            "mpp": recorded_mpp(props)[0],
            "mpp_source": recorded_mpp(props)[1],
            "mpp_x": props.get(openslide.PROPERTY_NAME_MPP_X),
            "mpp_y": props.get(openslide.PROPERTY_NAME_MPP_Y),
            "objective_power": props.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER),
        }
    finally:
        slide.close()


def best_level(downsamples: list[float], downsample: float) -> int:
    """The coarsest level whose downsample does not exceed ``downsample`` (so tiles are only ever reduced)."""
    levels = [i for i, d in enumerate(downsamples) if d <= downsample * (1 + 1e-3)]
    return max(levels, key=lambda i: downsamples[i]) if levels else 0


class TileReader:
    """Reads square tiles of a slide at a target resolution.

    A tile at level-0 top-left (x, y) covers ``patch_size_level0`` level-0 pixels; it is read from the best
    pyramid level (:func:`best_level`) and resized to ``tile_px`` pixels (bilinear, antialiased).

    The OpenSlide handle is opened lazily, so a reader can be sent to DataLoader worker processes.

    Shape: ``read(coords (N, 2))`` -> uint8 (N, tile_px, tile_px, 3).
    """

    def __init__(self, path: str | os.PathLike, patch_size_level0: int, tile_px: int):
        self.path = str(path)
        self.patch_size_level0 = int(patch_size_level0)
        self.tile_px = int(tile_px)
        self._slide: openslide.OpenSlide | None = None

    def _open(self) -> openslide.OpenSlide:
        if self._slide is None:
            self._slide = open_slide(self.path)
            downsamples = list(self._slide.level_downsamples)
            self.level = best_level(downsamples, self.patch_size_level0 / self.tile_px)
            self.read_px = max(1, round(self.patch_size_level0 / downsamples[self.level]))
        return self._slide

    def read_one(self, x: int, y: int) -> np.ndarray:
        """One tile as uint8 (tile_px, tile_px, 3)."""
        slide = self._open()
        img = read_region_rgb(slide, (x, y), self.level, (self.read_px, self.read_px), self.path)
        if self.read_px != self.tile_px:
            img = img.resize((self.tile_px, self.tile_px), RESAMPLE)
        return np.asarray(img, dtype=np.uint8)

    def read(self, coords: np.ndarray) -> np.ndarray:
        """Tiles at ``coords`` (N, 2) level-0 (x, y) as uint8 (N, tile_px, tile_px, 3)."""
        coords = np.asarray(coords, dtype=np.int64).reshape(-1, 2)
        out = np.empty((len(coords), self.tile_px, self.tile_px, 3), np.uint8)
        for i, (x, y) in enumerate(coords):
            out[i] = self.read_one(int(x), int(y))
        return out

    def close(self) -> None:
        if self._slide is not None:
            self._slide.close()
            self._slide = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_slide"] = None  # OpenSlide handles do not cross process boundaries
        return state


class TileDataset:
    """A torch-style map Dataset over the tiles of one slide: item i -> uint8 (tile_px, tile_px, 3).

    Use with ``torch.utils.data.DataLoader(..., num_workers=K)``: each worker opens its own OpenSlide handle.
    """

    def __init__(self, path: str | os.PathLike, coords: np.ndarray, patch_size_level0: int, tile_px: int):
        self.reader = TileReader(path, patch_size_level0, tile_px)
        self.coords = np.asarray(coords, dtype=np.int64).reshape(-1, 2)

    def __len__(self) -> int:
        return len(self.coords)

    def __getitem__(self, index: int) -> np.ndarray:
        x, y = self.coords[index]
        return self.reader.read_one(int(x), int(y))


def read_tiles(path: str | os.PathLike, coords: np.ndarray, patch_size_level0: int, tile_px: int,
               workers: int = 0, batch_size: int = 256) -> np.ndarray:
    """All tiles at ``coords`` as uint8 (N, tile_px, tile_px, 3), read by ``workers`` processes (0: here)."""
    if workers <= 0 or len(coords) < 2 * batch_size:
        reader = TileReader(path, patch_size_level0, tile_px)
        try:
            return reader.read(coords)
        finally:
            reader.close()
    import torch

    loader = torch.utils.data.DataLoader(
        TileDataset(path, coords, patch_size_level0, tile_px), batch_size=batch_size, num_workers=workers,
        collate_fn=np.stack,
    )
    return np.concatenate(list(loader)) if len(coords) else np.empty((0, tile_px, tile_px, 3), np.uint8)
