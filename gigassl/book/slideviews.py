"""Pictures on the slides themselves: what tiling kept and left out, the tiles of each class and centre (Sec. 4.1).

One function per picture, each returning a matplotlib figure for :func:`gigassl.book.figures.save_figure`; they read the
slides through OpenSlide and the tile coordinates written by :func:`gigassl.tiling.tile_cohort`.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .. import io
from ..seeding import rng


def tissue_picture(slide_path: str | os.PathLike, coords_file: str | os.PathLike, thumbnail_px: int = 1024):
    """Sec. 4.1, tiling: a slide's thumbnail; what the tissue detector saw (grey: glass, below the saturation
    threshold; red: ink and near-black pixels, removed; green: the tissue mask); and the kept tiles outlined on the
    thumbnail (:func:`gigassl.tiling.tissue_layers`)."""
    from matplotlib.patches import Rectangle

    from ..tiling import tissue_layers

    rgb, scale = _thumbnail(slide_path, thumbnail_px)
    layers = tissue_layers(rgb)
    shown = np.full(rgb.shape, 235, np.uint8)
    shown[layers["tissue"]] = (60, 170, 60)
    shown[layers["pen"] & layers["saturated"]] = (220, 40, 40)
    coords, attrs = io.read_coords(coords_file)
    size = int(attrs["patch_size_level0"])
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
    from ..slides import read_tiles

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
    from ..manifest import task_columns

    columns = [*task_columns(manifest), *(["center"] if "center" in manifest else [])]
    return {column: gallery(manifest, coords_dir, column, per_group=per_group, seed=seed) for column in columns}


def _thumbnail(slide_path, thumbnail_px: int) -> tuple[np.ndarray, float]:
    from ..slides import open_slide

    slide = open_slide(slide_path)
    try:
        rgb = np.asarray(slide.get_thumbnail((thumbnail_px, thumbnail_px)).convert("RGB"))
        return rgb, rgb.shape[1] / slide.dimensions[0]
    finally:
        slide.close()


def _tile_values(ax, rgb: np.ndarray, scale: float, tiles: pd.DataFrame, column: str, cmap: str, centred: bool):
    """The thumbnail with each tile filled by its value of ``column`` (a colour bar beside it)."""
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle

    ax.imshow(rgb)
    size = tiles["patch_size_level0"].to_numpy() * scale
    patches = [Rectangle((x * scale, y * scale), s, s) for x, y, s in zip(tiles["x"], tiles["y"], size)]
    values = tiles[column].to_numpy()
    collection = PatchCollection(patches, cmap=cmap, alpha=0.75, linewidths=0)
    collection.set_array(values)
    if centred:
        bound = float(np.abs(values).max()) or 1.0
        collection.set_clim(-bound, bound)
    ax.add_collection(collection)
    ax.figure.colorbar(collection, ax=ax, fraction=0.035, pad=0.01)
    ax.axis("off")


def draw_heat_maps(maps, manifest: pd.DataFrame, thumbnail_px: int = 1024):
    """DeepMIL's attention and Giga-SSL's single-tile probe scores on the thumbnails of a few test slides
    (:func:`gigassl.book.analyses.heat_map_values`), each row titled with the true label and both predictions."""
    paths = manifest.set_index("slide_id")["path"]
    rows = list(maps.slides.itertuples())
    fig, axes = plt.subplots(len(rows), 3, figsize=(13, 3.6 * len(rows)), squeeze=False)
    for ax, row in zip(axes, rows):
        rgb, scale = _thumbnail(paths.loc[row.slide_id], thumbnail_px)
        tiles = maps.tiles[maps.tiles["slide_id"] == row.slide_id]
        ax[0].imshow(rgb)
        ax[0].axis("off")
        ax[0].set_title(f"{row.slide_id}: true {row.label}", fontsize=9)
        _tile_values(ax[1], rgb, scale, tiles, "attention", "magma", centred=False)
        ax[1].set_title(f"DeepMIL attention (predicts {row.deepmil})", fontsize=9)
        _tile_values(ax[2], rgb, scale, tiles, "tile_score", "coolwarm", centred=True)
        ax[2].set_title(f"Giga-SSL: probe score of each tile alone, towards {maps.positive} "
                        f"(predicts {row.gigassl})", fontsize=9)
    fig.tight_layout()
    return fig


def view_pictures(bank, slide_id: str, slide_path, config, tiles: int = 5, draws: int = 3, seed: int = 0,
                  epoch: int = 0, thumbnail_px: int = 1024):
    """Sec. 3.1 Steps 3-4 for one slide, one row per view: the T tiles of the view on the thumbnail (one
    augmentation draw of the bank, T tiles of it, as :func:`gigassl.maps.training_views` draws view 0 of ``epoch``
    with ``seed`` + row); the same tiles as a sparse map (tile coordinates divided by the map's downsampling);
    and the map after the slide-level augmentation (rotation, flips, per-axis scale). ``bank``: a
    :class:`gigassl.bankstore.PackedBank`; ``config``: the run's :class:`gigassl.config.MapConfig`."""
    from matplotlib.patches import Rectangle

    from ..maps import map_units, slide_augmentation, to_sites, view_tiles

    i = int(bank.indices([slide_id])[0])
    size = int(bank.patch_size_level0[i])
    rgb, scale = _thumbnail(slide_path, thumbnail_px)
    fig, axes = plt.subplots(draws, 3, figsize=(12, 3.3 * draws), squeeze=False)
    for row in range(draws):
        g = rng(seed + row, epoch, bank.keys[i], 0)
        _, chosen, draw = view_tiles(bank, i, tiles, g)
        chosen = np.asarray(chosen)
        what = "plain tiles" if draw is None else f"draw {draw} of {bank.features.shape[1]}"
        units = map_units(chosen, config.downsample, size)
        before = to_sites(units)
        after = to_sites(slide_augmentation(units, config, g))
        ax = axes[row]
        ax[0].imshow(rgb)
        for x, y in chosen:
            ax[0].add_patch(Rectangle((x * scale, y * scale), size * scale, size * scale, fill=False, lw=1.5,
                                      edgecolor="#d62728"))
        ax[0].axis("off")
        ax[0].set_title(f"view {row + 1}: {tiles} tiles ({what})", fontsize=9)
        for a, sites, title in ((ax[1], before, "sparse map"), (ax[2], after, "after the slide augmentation")):
            for x, y in sites:
                a.add_patch(Rectangle((x, y), 1, 1, color="#1f77b4"))
            a.set_xlim(-1, max(int(sites[:, 0].max()) + 2, 4))
            a.set_ylim(max(int(sites[:, 1].max()) + 2, 4), -1)
            a.set_aspect("equal")
            a.set_title(f"{title}: {len(np.unique(sites, axis=0))} occupied sites", fontsize=9)
    fig.tight_layout()
    return fig


def run_views(run_dir, train: str = "ssl_full", bank: str = "bank_moco_shared", slide_id: str | None = None,
              draws: int = 3, thumbnail_px: int = 1024):
    """:func:`view_pictures` of a training run: its bank, its T, its map settings and seed (from its checkpoint),
    for ``slide_id`` (None: the first labelled slide of the bank)."""
    from ..bankstore import PackedBank
    from ..config import MapConfig
    from ..checkpoints import load_checkpoint_file

    state = load_checkpoint_file(Path(run_dir) / train / "checkpoint.pt", ("gigassl",))
    packed = PackedBank(Path(run_dir) / bank)
    from .stages import cohort_manifest

    paths = cohort_manifest(run_dir).set_index("slide_id")["path"]
    slide_id = slide_id or next(s for s in packed.ids if s in paths.index)
    return view_pictures(packed, slide_id, paths.loc[slide_id], MapConfig(**state["config"]["maps"]),
                         tiles=int(state["config"]["tiles_per_view"]), draws=draws, seed=int(state["config"]["seed"]),
                         thumbnail_px=thumbnail_px)
