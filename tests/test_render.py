"""Tests of gigassl.cohorts.render: one slide drawn in memory, its pixels deterministic and H&E-like."""

from __future__ import annotations

import dataclasses

import numpy as np

from gigassl.config import get_profile
from gigassl.cohorts.render import TASKS, SlideSpec, render_slide, task_effects
from gigassl.cohorts.synth import center_styles

CONFIG = dataclasses.replace(get_profile("smoke").synth, width=320, height=256, seed=2, n_centers=2)


def _draw(index: int, labels=(0, 0, 0), artefacts: bool = False, config=CONFIG) -> np.ndarray:
    style = center_styles(config)[0]
    return render_slide(SlideSpec(index, "unused.tiff", 0, labels, artefacts), style, config)


def test_a_slide_is_uint8_rgb_of_the_configured_size_and_deterministic():
    first = _draw(3)
    assert first.shape == (CONFIG.height, CONFIG.width, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, _draw(3))
    assert not np.array_equal(first, _draw(4))  # another slide index, other draws


def test_tissue_on_glass_with_hematoxylin_and_eosin():
    img = _draw(1).astype(int)
    white = (img.min(-1) > 205).mean()
    assert 0.1 < white < 0.9
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    assert ((img.mean(-1) < 150) & (b > r) & (b > g)).mean() > 0.003  # dark blue-purple nuclei
    assert ((r > g + 40) & (b > g + 20)).mean() > 0.03  # eosin: red and blue kept, green absorbed


def test_the_classes_change_the_pixels_and_artefacts_add_to_them():
    base = _draw(5, (0, 0, 0))
    assert not np.array_equal(base, _draw(5, (1, 2, 1)))
    assert not np.array_equal(base, _draw(5, (0, 0, 0), artefacts=True))


def test_task_effects_scale_and_clip_the_effect_size():
    config = dataclasses.replace(CONFIG, effect_size=0.5, task_effects=(1.0, 3.0, 0.0))
    assert task_effects(config) == (0.5, 1.0, 0.0)
    assert len(TASKS) == 3
