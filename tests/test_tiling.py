"""Tiling: tissue only, inside the slide, TRIDENT attributes, resume, and a batch that survives bad slides."""

import dataclasses
import shutil

import numpy as np
import openslide
import pandas as pd
import pytest
import tifffile

from gigassl import cli, io
from gigassl.config import TileConfig
from gigassl.errors import ManifestError, SlideError
from gigassl.manifest import read_manifest
from gigassl.cohorts.tiff import write_pyramid_tiff
from gigassl.tiling import otsu_threshold, tile_cohort, tile_slide, tissue_mask

from .conftest import TINY_TILE


def test_otsu_separates_two_modes():
    values = np.concatenate([np.full(100, 0.1), np.full(100, 0.7)])
    assert 0.1 < otsu_threshold(values) < 0.7


def test_aperio_slide_tiles_lie_on_tissue_inside_the_slide(cmu_slide):
    config = TileConfig(target_mpp=1.0, tile_px=224, thumbnail_px=1024)
    grid, picture = tile_slide(cmu_slide, config)
    assert grid.patch_size_level0 == round(224 / 0.499) and len(grid.coords) >= 8
    assert picture.size[0] > 0
    width, height = grid.width, grid.height
    assert (grid.coords >= 0).all()
    assert (grid.coords[:, 0] + grid.patch_size_level0 <= width).all()
    assert (grid.coords[:, 1] + grid.patch_size_level0 <= height).all()
    assert (grid.coords % grid.patch_size_level0 == 0).all()  # a non-overlapping grid
    slide = openslide.OpenSlide(str(cmu_slide))
    mask = tissue_mask(np.asarray(slide.get_thumbnail((1024, 1024)).convert("RGB")))
    scale = mask.shape[1] / width
    kept = set(map(tuple, grid.coords))
    step = grid.patch_size_level0
    for y in range(0, height - step + 1, step):
        for x in range(0, width - step + 1, step):
            y0, x0 = int(y * scale), int(x * scale)
            patch = mask[y0:int((y + step) * scale), x0:int((x + step) * scale)]
            if (x, y) in kept:
                assert patch.mean() >= 0.45  # tiles sit on tissue
            elif patch.size:
                assert patch.mean() < 0.55  # and every tissue-rich grid cell was kept
    # background tiles are bright, kept tiles are not
    region = np.asarray(slide.read_region(tuple(int(v) for v in grid.coords[0]), 0, (step, step)).convert("RGB"))
    assert region.mean() < 215


def test_tile_cohort_writes_trident_coords_and_thumbnails(cohort, coords_dir):
    frame = read_manifest(cohort)
    for slide_id in frame["slide_id"]:
        coords, attrs = io.read_coords(coords_dir / f"{slide_id}.h5")
        assert coords.dtype == np.int64 and coords.shape[1] == 2 and len(coords) > 0
        assert attrs["patch_size"] == TINY_TILE.tile_px and attrs["patch_size_level0"] == 64
        assert attrs["target_mpp"] == 1.0 and attrs["level0_mpp"] == 0.5
        assert (attrs["level0_width"], attrs["level0_height"]) == (512, 384) and attrs["name"] == slide_id
        assert (coords_dir / "thumbnails" / f"{slide_id}.png").is_file()
    assert pd.read_csv(coords_dir / "failures.csv").empty


def _bad_cohort(tmp_path, cohort):
    """A manifest of good slides plus one of each kind of bad input."""
    slides = sorted((cohort.parent / "slides").glob("*.tiff"))[:2]
    rgb = np.full((384, 512, 3), 245, np.uint8)
    write_pyramid_tiff(tmp_path / "blank.tiff", rgb, mpp=0.5, n_levels=2)
    tissue = np.asarray(openslide.OpenSlide(str(slides[0])).read_region((0, 0), 0, (512, 384)).convert("RGB"))
    write_pyramid_tiff(tmp_path / "nompp.tiff", tissue, mpp=None, n_levels=2)
    tifffile.imwrite(tmp_path / "striped.tiff", tissue, photometric="rgb")
    data = slides[1].read_bytes()
    (tmp_path / "truncated.tiff").write_bytes(data[: int(len(data) * 0.9)])
    rows = [("good0", slides[0]), ("good1", slides[1]), ("blank", tmp_path / "blank.tiff"),
            ("nompp", tmp_path / "nompp.tiff"), ("striped", tmp_path / "striped.tiff"),
            ("truncated", tmp_path / "truncated.tiff"), ("missing", tmp_path / "missing.svs")]
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame({"slide_id": [r[0] for r in rows], "path": [str(r[1]) for r in rows]}).to_csv(manifest, index=False)
    return manifest


def test_batch_goes_on_past_bad_slides_and_lists_every_failure(tmp_path, cohort, capsys):
    manifest = _bad_cohort(tmp_path, cohort)
    out = tmp_path / "coords"
    args = ["tile", "--manifest", str(manifest), "--out", str(out), "--profile", "smoke", "--tile-px", "32",
            "--no-progress"]
    assert cli.main(args) == 1
    failures = pd.read_csv(out / "failures.csv").set_index("slide_id")["reason"]
    assert set(failures.index) == {"blank", "nompp", "striped", "truncated", "missing"}
    assert "blank.tiff" in failures["blank"] and "looks blank" in failures["blank"]
    assert "nompp.tiff" in failures["nompp"] and "--mpp" in failures["nompp"]
    assert "striped.tiff" in failures["striped"] and "pyramidal" in failures["striped"]
    assert "truncated" in failures["truncated"]
    assert "does not exist" in failures["missing"]
    assert (out / "good0.h5").is_file() and (out / "good1.h5").is_file()
    assert not list(out.glob(".*.tmp")) and not (out / "blank.h5").exists()
    # --mpp for every slide is another tiling: refused in this folder (its tiles were made without it)
    assert cli.main(args + ["--mpp", "0.5"]) == 1
    assert "TileConfig" not in capsys.readouterr().err  # the provenance error, not a config error
    # the slide's own MPP in the manifest: the same tiling, so it resumes; the slide goes through, the others stay
    frame = pd.read_csv(manifest)
    frame["mpp"] = [0.5 if sid == "nompp" else None for sid in frame["slide_id"]]
    frame.to_csv(manifest, index=False)
    stamp = (out / "good0.h5").stat().st_mtime_ns
    assert cli.main(args) == 1
    failures = pd.read_csv(out / "failures.csv")["slide_id"]
    assert "nompp" not in set(failures) and (out / "nompp.h5").is_file()
    assert (out / "good0.h5").stat().st_mtime_ns == stamp
    assert "4 failed" in capsys.readouterr().out


def test_manifest_errors_are_clear(tmp_path, cohort):
    frame = pd.read_csv(cohort)
    bad = tmp_path / "nocol.csv"
    frame.drop(columns=["path"]).to_csv(bad, index=False)
    with pytest.raises(ManifestError, match=r"nocol.csv lacks column\(s\) \['path'\]"):
        tile_cohort(bad, tmp_path / "o", TINY_TILE, progress=False)
    repeated = tmp_path / "repeat.csv"
    pd.concat([frame, frame.iloc[:1]]).to_csv(repeated, index=False)
    with pytest.raises(ManifestError, match=r"slide_id repeated: \['S0001'\]"):
        read_manifest(repeated)
    assert cli.main(["tile", "--manifest", str(repeated), "--out", str(tmp_path / "o")]) == 1


def test_interrupted_tiling_resumes_to_the_same_files(tmp_path, cohort, monkeypatch):
    clean = tmp_path / "clean"
    assert tile_cohort(cohort, clean, TINY_TILE, progress=False).ok
    interrupted = tmp_path / "interrupted"
    import gigassl.tiling as tiling

    original, calls = tiling._tile_one, []

    def stop_at_the_third(slide_id, tmp, *args):
        calls.append(slide_id)
        if len(calls) == 3:
            tmp.write_bytes(b"half-written")
            raise KeyboardInterrupt
        return original(slide_id, tmp, *args)

    monkeypatch.setattr(tiling, "_tile_one", stop_at_the_third)
    with pytest.raises(KeyboardInterrupt):
        tile_cohort(cohort, interrupted, TINY_TILE, progress=False)
    assert len(list(interrupted.glob("*.h5"))) == 2 and not list(interrupted.glob(".*.tmp"))
    (interrupted / ".S0004.h5.killed.tmp").write_bytes(b"left by a killed run")
    monkeypatch.setattr(tiling, "_tile_one", original)
    report = tile_cohort(cohort, interrupted, TINY_TILE, progress=False)
    assert len(report.skipped) == 2 and len(report.done) == 4
    names = sorted(p.name for p in clean.glob("*.h5"))
    assert names == sorted(p.name for p in interrupted.glob("*.h5")) and not list(interrupted.glob(".*.tmp"))
    for name in names:
        assert (clean / name).read_bytes() == (interrupted / name).read_bytes()
        assert (clean / "thumbnails" / name.replace(".h5", ".png")).read_bytes() == (
            interrupted / "thumbnails" / name.replace(".h5", ".png")).read_bytes()


def test_parallel_tiling_matches_sequential(tmp_path, cohort, coords_dir):
    out = tmp_path / "parallel"
    assert tile_cohort(cohort, out, dataclasses.replace(TINY_TILE, workers=2), progress=False).ok
    for path in coords_dir.glob("*.h5"):
        assert path.read_bytes() == (out / path.name).read_bytes()


def test_a_rerun_with_other_settings_is_refused_and_the_same_settings_resume(tmp_path, cohort):
    from gigassl.errors import ConfigError

    out = tmp_path / "coords"
    assert tile_cohort(cohort, out, TINY_TILE, progress=False).ok
    again = tile_cohort(cohort, out, dataclasses.replace(TINY_TILE, workers=2), progress=False)
    assert again.ok and not again.done  # same tiles (workers do not change them): every slide already done
    recorded = (out / "config.json").read_text()
    with pytest.raises(ConfigError, match=r"holds tiles made with other settings \(tile_px: 32 there, 48 now\)"):
        tile_cohort(cohort, out, dataclasses.replace(TINY_TILE, tile_px=48), progress=False)
    assert (out / "config.json").read_text() == recorded  # the record still tells what the files are
    assert cli.main(["tile", "--manifest", str(cohort), "--out", str(out), "--profile", "smoke",
                     "--tile-px", "48", "--no-progress"]) == 1


def test_no_tile_reasons_are_told_apart(tmp_path):
    from gigassl.tiling import Grid, _no_tile_reason

    pink = np.zeros((384, 512, 3), np.uint8) + np.array([200, 120, 180], np.uint8)  # stained everywhere, no glass
    none = np.empty((0, 2), np.int64)
    grid = Grid(none, 64, 0.5, 1024, 768)
    no_glass = _no_tile_reason("s.tiff", pink, np.zeros((384, 512), bool), grid, TINY_TILE)
    assert "no background (glass)" in no_glass and "--min-tissue 0" in no_glass
    white = np.full((384, 512, 3), 245, np.uint8)
    assert "looks blank" in _no_tile_reason("s.tiff", white, np.zeros((384, 512), bool), grid, TINY_TILE)
    specks = np.zeros((384, 512), bool)
    specks[::20, ::20] = True
    scattered = _no_tile_reason("s.tiff", white, specks, grid, TINY_TILE)
    assert "in pieces smaller than a tile" in scattered and "0.3% of the" in scattered
    # a real slide smaller than one tile
    write_pyramid_tiff(tmp_path / "small.tiff", pink[:48, :48].copy(), mpp=0.5, n_levels=1)
    with pytest.raises(SlideError, match=r"smaller than one tile \(64 level-0 px\)"):
        tile_slide(tmp_path / "small.tiff", TINY_TILE)
    # an image of tissue only still tiles (every position)
    write_pyramid_tiff(tmp_path / "all_tissue.tiff", pink, mpp=0.5, n_levels=2)
    assert len(tile_slide(tmp_path / "all_tissue.tiff", TINY_TILE)[0].coords) == (512 // 64) * (384 // 64)
