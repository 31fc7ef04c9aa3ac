"""Pictures on the slides (gigassl.slideviews), drawn from a real synthetic cohort read through OpenSlide."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd

from gigassl import io, slideviews
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
