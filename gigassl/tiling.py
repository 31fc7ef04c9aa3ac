"""Tissue detection and tiling of whole slide images (``gigassl tile``; Sec. 4.1, "non-overlapping tiles at 10x").

For each slide: a thumbnail is read, tissue is found by Otsu thresholding of the saturation (with a floor so that a
blank slide has no tissue), pen marks (green, saturated blue, near-black ink) are excluded and small objects removed;
a grid of non-overlapping tiles of ``tile_px`` pixels at ``target_mpp`` is laid over the slide, and the tiles with at
least ``min_tissue`` tissue are kept. Output per slide (TRIDENT-compatible, see :mod:`gigassl.io`):
``<out>/<slide_id>.h5`` (``coords``) and ``<out>/thumbnails/<slide_id>.png`` with the tile grid drawn on it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from . import io
from .batch import BatchReport, run_batch
from .config import TileConfig
from .errors import SlideError, suggest
from .manifest import read_manifest
from .provenance import check_folder
from .slides import open_slide, slide_mpp
from .files import atomic_path

MIN_SATURATION = 0.06  # saturation floor of tissue (0-1); glass and white background stay below it


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of values in [0, 1]: class 0 is ``values <= threshold``.

    The threshold maximises the between-class variance; on a plateau of maxima (an empty gap between the two
    modes), the middle of the plateau is taken.
    """
    hist, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    hist = hist.astype(np.float64)
    centers = (edges[:-1] + edges[1:]) / 2
    weight0 = np.cumsum(hist)
    weight1 = weight0[-1] - weight0
    mean0 = np.cumsum(hist * centers) / np.maximum(weight0, 1)
    mean1 = ((hist * centers).sum() - np.cumsum(hist * centers)) / np.maximum(weight1, 1)
    between = weight0 * weight1 * (mean0 - mean1) ** 2
    best = np.flatnonzero(between >= between.max() * (1 - 1e-12))
    return float(edges[(best[0] + best[-1]) // 2 + 1])


def _saturation(x: np.ndarray) -> np.ndarray:
    """HSV saturation (H, W) of an RGB image (H, W, 3) in [0, 1]; 0 on black."""
    vmax, vmin = x.max(axis=2), x.min(axis=2)
    return np.where(vmax > 0, (vmax - vmin) / np.maximum(vmax, 1e-6), 0.0)


def tissue_mask(rgb: np.ndarray, min_object_fraction: float = 0.0005) -> np.ndarray:
    """Boolean tissue mask of an RGB thumbnail (H, W, 3) uint8.

    Saturation above max(Otsu, MIN_SATURATION); pen ink removed (green ink, saturated blue ink with little red,
    near-black ink); H&E's pink-purple hues are kept;
    closed, holes filled, objects smaller than ``min_object_fraction`` of the image removed.
    """
    return tissue_layers(rgb, min_object_fraction)["tissue"]


def tissue_layers(rgb: np.ndarray, min_object_fraction: float = 0.0005) -> dict[str, np.ndarray]:
    """The steps of :func:`tissue_mask`, each a boolean (H, W) mask: ``saturated`` (saturation above the threshold:
    not glass), ``pen`` (ink and near-black pixels, removed) and ``tissue`` (the final mask)."""
    x = rgb.astype(np.float32) / 255.0
    vmax = x.max(axis=2)
    saturation = _saturation(x)
    threshold = max(otsu_threshold(saturation.ravel()), MIN_SATURATION)
    saturated = saturation > threshold
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    green_pen = (g > r + 0.08) & (g > b)
    blue_pen = (b > 0.55) & (r < 0.3) & (b > g + 0.2)
    pen = green_pen | blue_pen | (vmax < 0.2)
    mask = saturated & ~pen
    mask = ndimage.binary_closing(mask, structure=np.ones((3, 3)), iterations=2)
    mask = ndimage.binary_fill_holes(mask)
    labels, count = ndimage.label(mask)
    if count:
        sizes = ndimage.sum(mask, labels, index=np.arange(1, count + 1))
        keep = np.zeros(count + 1, bool)
        keep[1:] = sizes >= min_object_fraction * mask.size
        mask = keep[labels]
    return {"saturated": saturated, "pen": pen, "tissue": mask}


@dataclass(frozen=True)
class Grid:
    """A tile grid: level-0 top-left coordinates (N, 2) and the geometry shared by all tiles."""

    coords: np.ndarray
    patch_size_level0: int
    level0_mpp: float
    width: int
    height: int


def tile_grid(mask: np.ndarray, width: int, height: int, level0_mpp: float, config: TileConfig) -> Grid:
    """Non-overlapping tiles of ``config.tile_px`` px at ``config.target_mpp`` with enough tissue in ``mask``.

    ``mask`` is a tissue mask of the whole slide at any scale (its shape gives the scale).
    """
    size0 = int(round(config.tile_px * config.target_mpp / level0_mpp))
    if size0 < 1:
        raise SlideError(f"Tiles of {config.tile_px} px at {config.target_mpp} um/px are smaller than one level-0 "
                         f"pixel of a {level0_mpp} um/px slide; raise --target-mpp.")
    nx, ny = width // size0, height // size0
    if nx == 0 or ny == 0:
        return Grid(np.empty((0, 2), np.int64), size0, level0_mpp, width, height)
    sy, sx = mask.shape[0] / height, mask.shape[1] / width
    integral = np.pad(mask.astype(np.float64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    xs = np.arange(nx) * size0
    ys = np.arange(ny) * size0
    x0 = np.clip(np.floor(xs * sx).astype(int), 0, mask.shape[1] - 1)
    x1 = np.clip(np.ceil((xs + size0) * sx).astype(int), x0 + 1, mask.shape[1])
    y0 = np.clip(np.floor(ys * sy).astype(int), 0, mask.shape[0] - 1)
    y1 = np.clip(np.ceil((ys + size0) * sy).astype(int), y0 + 1, mask.shape[0])
    Y0, X0 = np.meshgrid(y0, x0, indexing="ij")
    Y1, X1 = np.meshgrid(y1, x1, indexing="ij")
    area = (Y1 - Y0) * (X1 - X0)
    tissue = (integral[Y1, X1] - integral[Y0, X1] - integral[Y1, X0] + integral[Y0, X0]) / area
    iy, ix = np.nonzero(tissue >= config.min_tissue)
    coords = np.stack([xs[ix], ys[iy]], axis=1).astype(np.int64)
    return Grid(coords, size0, level0_mpp, width, height)


def draw_grid(thumbnail: Image.Image, grid: Grid, color=(0, 160, 0)) -> Image.Image:
    """The thumbnail with each tile of ``grid`` outlined."""
    img = thumbnail.convert("RGB").copy()
    draw = ImageDraw.Draw(img)
    sx, sy = img.width / grid.width, img.height / grid.height
    for x, y in grid.coords:
        draw.rectangle([x * sx, y * sy, (x + grid.patch_size_level0) * sx - 1, (y + grid.patch_size_level0) * sy - 1],
                       outline=color)
    return img


def tile_slide(path: str | os.PathLike, config: TileConfig, mpp: float | None = None) -> tuple[Grid, Image.Image]:
    """Detect tissue and lay the tile grid on one slide; returns the grid and the thumbnail with the grid drawn.

    Raises:
        SlideError: unreadable slide, no MPP, or no tissue tile.
    """
    slide = open_slide(path)
    try:
        level0_mpp = slide_mpp(slide, path, override=mpp if mpp is not None else (config.mpp if config.force_mpp else None),
                               fallback=config.mpp)
        width, height = slide.dimensions
        try:
            thumb = slide.get_thumbnail((config.thumbnail_px, config.thumbnail_px)).convert("RGB")
        except Exception as err:  # noqa: BLE001 - OpenSlide and PIL raise various errors on corrupt data
            raise SlideError(f"Slide {path} could not be read ({type(err).__name__}: {err}); the file is probably "
                             "truncated or corrupt: copy it again from its source.") from None
    finally:
        slide.close()
    rgb = np.asarray(thumb)
    mask = tissue_mask(rgb)
    grid = tile_grid(mask, width, height, level0_mpp, config)
    if len(grid.coords) == 0:
        raise SlideError(_no_tile_reason(path, rgb, mask, grid, config))
    return grid, draw_grid(thumb, grid)


def _no_tile_reason(path, rgb: np.ndarray, mask: np.ndarray, grid: Grid, config: TileConfig) -> str:
    """Why a slide has no tile, from what was measured: too small, no background to find tissue against, no
    tissue at all, or tissue too scattered for ``min_tissue``."""
    what = f"Slide {path}: no tile of {config.tile_px} px at {config.target_mpp} um/px"
    if grid.width < grid.patch_size_level0 or grid.height < grid.patch_size_level0:
        return suggest(f"{what}: the slide ({grid.width} x {grid.height} level-0 px) is smaller than one tile "
                       f"({grid.patch_size_level0} level-0 px).",
                       "Lower --tile-px or --target-mpp, or leave the slide out of the manifest.")
    background = float(np.mean(_saturation(rgb.astype(np.float32) / 255.0) < MIN_SATURATION))
    if background < 0.01:
        return suggest(f"{what}: the thumbnail has no background (glass) to tell tissue from; "
                       f"{1 - background:.0%} of it is stained, e.g. an image cropped inside the tissue.",
                       "Tile every position with --min-tissue 0, or check the slide in a viewer.")
    if not mask.any():
        return suggest(f"{what}: no tissue was found ({background:.0%} of the thumbnail is unstained background; "
                       "the slide looks blank).", "Check the slide in a viewer, or remove it from the manifest.")
    return suggest(f"{what} has >= {config.min_tissue:.0%} tissue (tissue covers {mask.mean():.1%} of the "
                   "thumbnail, in pieces smaller than a tile).",
                   "Lower --min-tissue or --tile-px, or check the slide in a viewer.")


def _tile_one(slide_id: str, tmp: Path, path: str, mpp: float | None, config: TileConfig, out_dir: Path) -> None:
    grid, picture = tile_slide(path, config, mpp)
    with atomic_path(out_dir / "thumbnails" / f"{slide_id}.png") as png:
        picture.save(png, format="PNG")
    io.write_coords(
        tmp, grid.coords, patch_size=config.tile_px, patch_size_level0=grid.patch_size_level0,
        target_mpp=config.target_mpp, level0_mpp=grid.level0_mpp, level0_width=grid.width,
        level0_height=grid.height, name=slide_id,
    )


def tile_cohort(manifest: str | os.PathLike, out_dir: str | os.PathLike, config: TileConfig,
                progress: bool = True) -> BatchReport:
    """Tile every slide of a manifest into ``out_dir`` (resumable; failures in ``out_dir/failures.csv``).

    An ``mpp`` column in the manifest overrides the slides' MPP row by row; ``config.mpp`` is used for the slides
    that record none (:func:`gigassl.slides.recorded_mpp`), or for all with ``config.force_mpp``.
    """
    frame = read_manifest(manifest)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    check_folder(out_dir, "tiles", dataclasses.asdict(config))
    items, jobs = [], {}
    for row in frame.itertuples(index=False):
        row_mpp = getattr(row, "mpp", None)
        row_mpp = None if row_mpp is None or (isinstance(row_mpp, float) and np.isnan(row_mpp)) else float(row_mpp)
        items.append((row.slide_id, out_dir / f"{row.slide_id}.h5"))
        jobs[row.slide_id] = (row.path, config.mpp if config.mpp is not None else row_mpp)
    work = partial(_dispatch, jobs=jobs, config=config, out_dir=out_dir)
    return run_batch(items, work, out_dir, desc="tiling", progress=progress, workers=config.workers)


def _dispatch(slide_id: str, tmp: Path, jobs: dict, config: TileConfig, out_dir: Path) -> None:
    path, mpp = jobs[slide_id]
    _tile_one(slide_id, tmp, path, mpp, config, out_dir)
