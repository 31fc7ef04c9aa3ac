"""Tile reading through OpenSlide: the real Aperio slide, synthetic pyramids, and clear errors on bad files."""

import numpy as np
import openslide
import pytest
import tifffile
import torch

from gigassl.errors import SlideError
from gigassl.slides import (TileDataset, TileReader, best_level, open_slide, read_tiles, recorded_mpp, slide_info,
                            slide_mpp)
from gigassl.cohorts.tiff import write_pyramid_tiff


def test_slide_info_of_the_aperio_slide(cmu_slide):
    info = slide_info(cmu_slide)
    assert info["vendor"] == "aperio"
    assert info["level_count"] == 1
    assert info["dimensions"][0] == (2220, 2967)
    assert float(info["mpp_x"]) == pytest.approx(0.499)


def test_tile_reader_equals_read_region_plus_resize(cmu_slide):
    coords = np.array([[898, 449], [1347, 898], [0, 0]])
    size0 = round(224 * 1.0 / 0.499)
    tiles = TileReader(cmu_slide, size0, 224).read(coords)
    assert tiles.shape == (3, 224, 224, 3) and tiles.dtype == np.uint8
    slide = openslide.OpenSlide(str(cmu_slide))
    for tile, (x, y) in zip(tiles, coords):
        region = slide.read_region((int(x), int(y)), 0, (size0, size0)).convert("RGB")
        expected = np.asarray(region.resize((224, 224), resample=2))  # PIL bilinear
        np.testing.assert_array_equal(tile, expected)


def test_pyramid_level_is_chosen_and_tiles_match_the_level(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (512, 768, 3), dtype=np.uint8)
    path = tmp_path / "p.tiff"
    write_pyramid_tiff(path, rgb, mpp=0.5, n_levels=3, tile=256, quality=95)
    assert best_level([1.0, 2.0, 4.0], 2.0) == 1
    assert best_level([1.0, 2.0, 4.0], 3.0) == 1
    assert best_level([1.0, 2.0, 4.0], 0.5) == 0
    reader = TileReader(path, patch_size_level0=128, tile_px=64)  # downsample 2 -> level 1, no resize
    tile = reader.read(np.array([[256, 128]]))[0]
    slide = openslide.OpenSlide(str(path))
    direct = np.asarray(slide.read_region((256, 128), 1, (64, 64)).convert("RGB"))
    np.testing.assert_array_equal(tile, direct)
    assert reader.level == 1 and reader.read_px == 64


def test_tile_dataset_with_worker_processes(cmu_slide):
    coords = np.array([[898, 449], [1347, 898], [898, 0], [1347, 449]])
    dataset = TileDataset(cmu_slide, coords, 449, 64)
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=2)
    batches = torch.cat(list(loader)).numpy()
    np.testing.assert_array_equal(batches, TileReader(cmu_slide, 449, 64).read(coords))
    np.testing.assert_array_equal(read_tiles(cmu_slide, coords, 449, 64), batches)


def test_missing_mpp_fails_with_the_fix_then_the_override_works(tmp_path):
    path = tmp_path / "nompp.tiff"
    write_pyramid_tiff(path, np.full((256, 256, 3), 200, np.uint8), mpp=None, n_levels=2)
    slide = open_slide(path)
    with pytest.raises(SlideError, match=r"nompp.tiff.*no usable microns-per-pixel") as err:
        slide_mpp(slide, path)
    assert "--mpp" in str(err.value) and "mpp` column" in str(err.value)
    assert slide_mpp(slide, path, override=0.25) == 0.25
    assert slide_mpp(slide, path, fallback=0.5) == 0.5


def test_mpp_is_read_as_the_field_does_when_openslide_has_none():
    assert recorded_mpp({"openslide.mpp-x": "0.2527"}) == (0.2527, "openslide.mpp-x")
    assert recorded_mpp({"aperio.MPP": "0.4990"}) == (0.499, "aperio.MPP")
    assert recorded_mpp({"tiff.XResolution": "20000", "tiff.ResolutionUnit": "centimeter"})[0] == 0.5
    assert recorded_mpp({"tiff.XResolution": "50800", "tiff.ResolutionUnit": "inch"})[0] == 0.5
    # a 72-dpi default (353 um/px) and a resolution without unit are not microns per pixel of a scan
    value, seen = recorded_mpp({"tiff.XResolution": "72", "tiff.ResolutionUnit": "inch"})
    assert value is None and "72" in seen
    assert recorded_mpp({"tiff.XResolution": "20000"})[0] is None
    assert recorded_mpp({"openslide.mpp-x": "0", "aperio.MPP": "0.5"}) == (0.5, "aperio.MPP")


def test_inch_resolution_tiff_gets_its_mpp_and_mpp_fills_only_the_gaps(tmp_path):
    inch = tmp_path / "inch.tiff"
    write_pyramid_tiff(inch, np.full((256, 256, 3), 200, np.uint8), mpp=0.25, n_levels=2, resolution_unit="INCH")
    slide = open_slide(inch)
    # the TIFF-tag reading (used when a vendor driver sets no openslide.mpp-x) agrees with OpenSlide's own
    without = {k: v for k, v in slide.properties.items() if not k.startswith("openslide.mpp")}
    assert recorded_mpp(without)[0] == pytest.approx(float(slide.properties["openslide.mpp-x"])) == pytest.approx(0.25)
    assert slide_mpp(slide, inch) == pytest.approx(0.25)
    assert slide_mpp(slide, inch, fallback=0.5) == pytest.approx(0.25)  # --mpp does not override a recorded MPP
    assert slide_mpp(slide, inch, override=0.5, fallback=0.5) == 0.5  # --force-mpp / the manifest's column do


def test_bad_files_name_the_file_and_the_fix(tmp_path, cohort):
    with pytest.raises(SlideError, match="does not exist"):
        open_slide(tmp_path / "nothere.svs")
    striped = tmp_path / "striped.tiff"
    tifffile.imwrite(striped, np.full((64, 64, 3), 200, np.uint8), photometric="rgb")
    with pytest.raises(SlideError, match=r"striped.tiff.*tiled, pyramidal TIFF") as err:
        open_slide(striped)
    assert "vips tiffsave" in str(err.value)
    source = next((cohort.parent / "slides").glob("*.tiff")).read_bytes()
    truncated = tmp_path / "truncated.tiff"
    truncated.write_bytes(source[: int(len(source) * 0.9)])
    with pytest.raises(SlideError, match=r"truncated"):
        slide = open_slide(truncated)
        TileReader(truncated, 64, 32).read(np.array([[0, 0], [128, 128], [256, 256]]))
