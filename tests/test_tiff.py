"""Tests of gigassl.cohorts.tiff: pyramidal TIFFs written in tmp_path and opened with OpenSlide."""

from __future__ import annotations

import numpy as np
import openslide
import pytest

from gigassl.errors import ConfigError
from gigassl.cohorts.tiff import halve, write_pyramid_tiff


def _level(path: str, level: int) -> np.ndarray:
    """A whole pyramid level as an (H, W, 3) uint8 array."""
    with openslide.OpenSlide(path) as slide:
        return np.asarray(slide.read_region((0, 0), level, slide.level_dimensions[level]).convert("RGB"))


def test_write_pyramid_tiff_without_mpp_and_with_area_averaging(tmp_path):
    checker = np.zeros((512, 512, 3), np.uint8)
    checker[::2, ::2] = checker[1::2, 1::2] = 255  # 1-px checkerboard: its 2x2 means are all 127.5
    write_pyramid_tiff(tmp_path / "none.tiff", checker, mpp=None, n_levels=3)
    write_pyramid_tiff(tmp_path / "mpp.tiff", checker, mpp=0.25, n_levels=3)
    with openslide.OpenSlide(str(tmp_path / "none.tiff")) as slide:
        assert openslide.PROPERTY_NAME_MPP_X not in slide.properties
        assert slide.level_count == 3 and slide.level_downsamples == pytest.approx((1.0, 2.0, 4.0))
    with openslide.OpenSlide(str(tmp_path / "mpp.tiff")) as slide:
        assert float(slide.properties[openslide.PROPERTY_NAME_MPP_X]) == pytest.approx(0.25)
    level1 = _level(str(tmp_path / "none.tiff"), 1).astype(float)
    assert np.abs(level1 - 127.5).max() < 4  # averaged, not decimated (which gives 0 or 255)


def test_equal_inputs_give_equal_bytes(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (96, 80, 3), dtype=np.uint8)
    write_pyramid_tiff(tmp_path / "a.tiff", rgb, mpp=0.5, n_levels=2, tile=32)
    write_pyramid_tiff(tmp_path / "b.tiff", rgb, mpp=0.5, n_levels=2, tile=32)
    assert (tmp_path / "a.tiff").read_bytes() == (tmp_path / "b.tiff").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tiff", "b.tiff"]  # no temporary left


def test_halve_is_a_rounded_2x2_mean_dropping_an_odd_edge():
    level = np.arange(5 * 3 * 3, dtype=np.uint8).reshape(5, 3, 3)
    expected = np.rint(level[:4, :2].reshape(2, 2, 1, 2, 3).astype(np.float32).mean((1, 3))).astype(np.uint8)
    np.testing.assert_array_equal(halve(level), expected)


@pytest.mark.parametrize("rgb, kwargs, match", [
    (np.zeros((64, 64), np.uint8), {}, "uint8 array"),
    (np.zeros((64, 64, 3), np.uint8), {"n_levels": 8}, "n_levels=8"),
    (np.zeros((64, 64, 3), np.uint8), {"tile": 40}, "multiple of 16"),
    (np.zeros((64, 64, 3), np.uint8), {"mpp": 0.0}, "mpp must be > 0"),
])
def test_bad_arguments_are_config_errors(tmp_path, rgb, kwargs, match):
    arguments = {"mpp": 0.5, "n_levels": 2, **kwargs}
    with pytest.raises(ConfigError, match=match):
        write_pyramid_tiff(tmp_path / "x.tiff", rgb, **arguments)
    assert not list(tmp_path.iterdir())
