"""Pictures on the slides themselves: what tiling kept and left out, the tiles of each class and centre (Sec. 4.1).

One function per picture, each returning a matplotlib figure for :func:`gigassl.figures.save_figure`; they read the
slides through OpenSlide and the tile coordinates written by :func:`gigassl.tiling.tile_cohort`.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import io
from .utils import rng


def tissue_picture(slide_path: str | os.PathLike, coords_file: str | os.PathLike, thumbnail_px: int = 1024):
    """Sec. 4.1, tiling: a slide's thumbnail; what the tissue detector saw (grey: glass, below the saturation
    threshold; red: ink and near-black pixels, removed; green: the tissue mask); and the kept tiles outlined on the
    thumbnail (:func:`gigassl.tiling.tissue_layers`)."""
    from matplotlib.patches import Rectangle

    from .slides import open_slide
    from .tiling import tissue_layers

    slide = open_slide(slide_path)
    try:
        width, height = slide.dimensions
        rgb = np.asarray(slide.get_thumbnail((thumbnail_px, thumbnail_px)).convert("RGB"))
    finally:
        slide.close()
    layers = tissue_layers(rgb)
    shown = np.full(rgb.shape, 235, np.uint8)
    shown[layers["tissue"]] = (60, 170, 60)
    shown[layers["pen"] & layers["saturated"]] = (220, 40, 40)
    coords, attrs = io.read_coords(coords_file)
    size = int(attrs["patch_size_level0"])
    scale = rgb.shape[1] / width
    fig, axes = plt.subplots(1, 3, figsize=(13, 13 * rgb.shape[0] / rgb.shape[1] / 3 + 0.8))
    axes[0].imshow(rgb)
    axes[0].set_title("thumbnail", fontsize=9)
    axes[1].imshow(shown)
    axes[1].set_title(f"tissue {layers['tissue'].mean():.0%} of the thumbnail; ink removed "
                      f"{(layers['pen'] & layers['saturated']).mean():.1%}", fontsize=9)
    axes[2].imshow(rgb)
    for x, y in coords:
        axes[2].add_patch(Rectangle((x * scale, y * scale), size * scale, size * scale, fill=False, lw=0.5,
                                    edgecolor=(0, 0.55, 0)))
    axes[2].set_title(f"{len(coords)} kept tiles", fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    return fig


def _tiles_of(row, coords_dir: Path, n: int, gen: np.random.Generator) -> np.ndarray:
    from .slides import read_tiles

    coords, attrs = io.read_coords(coords_dir / f"{row.slide_id}.h5")
    picked = coords[np.sort(gen.choice(len(coords), size=min(n, len(coords)), replace=False))]
    return read_tiles(row.path, picked, int(attrs["patch_size_level0"]), int(attrs["patch_size"]))


def gallery(manifest: pd.DataFrame, coords_dir: str | os.PathLike, column: str, per_group: int = 8,
            slides_per_group: int = 2, seed: int = 0):
    """The tiles of each value of ``column`` (a task's classes, or ``center``): one row per value, ``per_group``
    tiles drawn (seeded) from ``slides_per_group`` of its slides, so that the reader sees the morphology a class
    carries, or the stain signature of a centre."""
    gen = rng(seed)
    rows = manifest[manifest[column].notna()]
    groups = sorted(rows[column].astype(str).unique())
    fig, axes = plt.subplots(len(groups), per_group, figsize=(1.1 * per_group, 1.25 * len(groups)), squeeze=False)
    for r, value in enumerate(groups):
        members = rows[rows[column].astype(str) == value]
        chosen = members.iloc[np.sort(gen.choice(len(members), size=min(slides_per_group, len(members)),
                                                 replace=False))]
        share = -(-per_group // len(chosen))
        tiles = np.concatenate([_tiles_of(row, Path(coords_dir), share, gen) for row in chosen.itertuples()])
        for c in range(per_group):
            axes[r, c].axis("off")
            if c < len(tiles):
                axes[r, c].imshow(tiles[c])
        axes[r, 0].set_title(f"{column} = {value}", fontsize=8, loc="left")
    fig.tight_layout()
    return fig


def galleries(manifest: pd.DataFrame, coords_dir: str | os.PathLike, per_group: int = 8, seed: int = 0) -> dict:
    """:func:`gallery` of every task of ``manifest`` and of its centres: ``{column: figure}``."""
    from .manifest import task_columns

    columns = [*task_columns(manifest), *(["center"] if "center" in manifest else [])]
    return {column: gallery(manifest, coords_dir, column, per_group=per_group, seed=seed) for column in columns}
