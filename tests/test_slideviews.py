"""Pictures on the slides (gigassl.book.slideviews), drawn from a real synthetic cohort read through OpenSlide."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd

from gigassl import io
from gigassl.book import slideviews
from gigassl.manifest import read_manifest, task_columns
from gigassl.tiling import tissue_layers, tissue_mask


def test_tissue_layers_are_the_steps_of_the_mask():
    rgb = np.full((64, 64, 3), 240, np.uint8)
    rgb[8:40, 8:40] = (200, 80, 160)  # H&E-like tissue
    rgb[45:60, 45:60] = (30, 200, 40)  # green pen
    layers = tissue_layers(rgb)
    assert np.array_equal(layers["tissue"], tissue_mask(rgb))
    assert layers["tissue"][20, 20] and not layers["tissue"][50, 50] and layers["pen"][50, 50]
    assert not layers["saturated"][2, 2]  # glass


def test_tissue_picture_counts_the_kept_tiles(cohort, coords_dir):
    frame = read_manifest(cohort)
    row = frame.iloc[0]
    fig = slideviews.tissue_picture(row.path, coords_dir / f"{row.slide_id}.h5", thumbnail_px=256)
    n = len(io.read_coords(coords_dir / f"{row.slide_id}.h5")[0])
    assert fig.axes[2].get_title() == f"{n} kept tiles" and len(fig.axes[2].patches) == n


def test_galleries_one_row_per_class_and_centre(cohort, coords_dir):
    frame = read_manifest(cohort)
    figs = slideviews.galleries(frame, coords_dir, per_group=4)
    assert set(figs) == {*task_columns(frame), "center"}
    classes = frame["center"].nunique()
    assert len(figs["center"].axes) == classes * 4
    again = slideviews.gallery(frame, coords_dir, "center", per_group=4)
    first = [ax.get_images()[0].get_array() for ax in figs["center"].axes if ax.get_images()]
    second = [ax.get_images()[0].get_array() for ax in again.axes if ax.get_images()]
    assert all(np.array_equal(a, b) for a, b in zip(first, second))  # seeded


def test_view_pictures_draw_the_views_training_samples(cohort, coords_dir, bank_dir):
    """Row 1 of the picture is view 0 of training_views for the same seed and epoch: the same tiles, the same sparse
    map after the slide augmentation."""
    from gigassl.bankstore import PackedBank
    from gigassl.config import MapConfig
    from gigassl.maps import training_views

    packed = PackedBank(bank_dir)
    frame = read_manifest(cohort).set_index("slide_id")
    sid = packed.ids[0]
    config = MapConfig(downsample="tile")
    fig = slideviews.view_pictures(packed, sid, frame.loc[sid, "path"], config, tiles=4, draws=2, seed=3, epoch=1,
                                   thumbnail_px=256)
    first, _ = training_views(packed, packed.indices([sid]), 4, config, seed=3, epoch=1)
    drawn = np.array([p.get_xy() for p in fig.axes[2].patches], dtype=np.int64)
    assert np.array_equal(np.unique(drawn, axis=0), np.unique(first.coords[0].numpy(), axis=0))
    assert len(fig.axes[0].patches) == 4 and len(fig.axes) == 6
