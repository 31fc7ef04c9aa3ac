"""Tests of gigassl.cohorts.synth: real (tiny) cohorts written in tmp_path and opened with OpenSlide."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import openslide
import pandas as pd
import pytest

from gigassl.config import get_profile
from gigassl.errors import ConfigError
from gigassl.manifest import read_manifest
from gigassl.cohorts.synth import COLUMNS, PRIORS, TASKS, plan_cohort, synthesize

TINY = dataclasses.replace(get_profile("smoke").synth, n_slides=6, n_centers=3, width=512, height=512, n_levels=2,
                           seed=3, workers=1, pool_slides=0)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """Manifest path of a tiny cohort (6 slides of 512 x 512, 3 centres)."""
    return synthesize(tmp_path_factory.mktemp("cohort"), TINY, progress=False)


def _level(path: str, level: int) -> np.ndarray:
    """A whole pyramid level as an (H, W, 3) uint8 array."""
    with openslide.OpenSlide(path) as slide:
        return np.asarray(slide.read_region((0, 0), level, slide.level_dimensions[level]).convert("RGB"))


def test_slides_open_in_openslide_with_levels_and_mpp(cohort):
    frame = pd.read_csv(cohort)
    assert len(frame) == TINY.n_slides
    for rel in frame["path"]:
        with openslide.OpenSlide(str(cohort.parent / rel)) as slide:
            assert slide.level_count == TINY.n_levels
            assert slide.level_dimensions == ((512, 512), (256, 256))
            assert slide.level_downsamples == pytest.approx((1.0, 2.0))
            assert float(slide.properties[openslide.PROPERTY_NAME_MPP_X]) == pytest.approx(TINY.mpp)
            assert float(slide.properties[openslide.PROPERTY_NAME_MPP_Y]) == pytest.approx(TINY.mpp)


def test_manifest_columns_paths_labels_and_cases(cohort):
    frame = pd.read_csv(cohort, dtype=str)
    assert tuple(frame.columns) == COLUMNS == ("slide_id", "path", "case_id", "center", *TASKS)
    assert frame["slide_id"].is_unique
    for rel in frame["path"]:
        assert not Path(rel).is_absolute() and (cohort.parent / rel).is_file()
    for task, classes in TASKS.items():
        assert set(frame[task]) <= set(classes)
    assert frame["center"].str.fullmatch(r"C\d\d").all()
    assert frame["center"].nunique() == TINY.n_centers
    per_case = frame.groupby("case_id")[["center", *TASKS]].nunique()
    assert (per_case == 1).all().all()  # a case's slides share centre and labels
    assert frame.groupby("case_id").size().isin([1, 2]).all()
    assert len(read_manifest(cohort)) == TINY.n_slides  # the package's own reader accepts it
    info = json.loads((cohort.parent / "cohort.json").read_text())
    assert info["config"]["seed"] == TINY.seed and info["tasks"] == {t: list(c) for t, c in TASKS.items()}


def test_same_seed_gives_identical_bytes_and_another_seed_differs(cohort, tmp_path):
    again = synthesize(tmp_path / "again", dataclasses.replace(TINY, workers=2), progress=False)
    other = synthesize(tmp_path / "other", dataclasses.replace(TINY, seed=TINY.seed + 1), progress=False)
    assert again.read_bytes() == cohort.read_bytes()
    for rel in pd.read_csv(cohort)["path"]:
        first = (cohort.parent / rel).read_bytes()
        assert (again.parent / rel).read_bytes() == first
        assert (other.parent / rel).read_bytes() != first


def test_a_stopped_run_resumes_and_another_config_starts_afresh(cohort, tmp_path):
    out = tmp_path / "resume"
    synthesize(out, TINY, progress=False)
    slides = sorted((out / "slides").glob("*.tiff"))
    slides[0].unlink()  # as if the run had stopped before drawing it
    stamp = slides[1].stat().st_mtime_ns
    synthesize(out, TINY, progress=False)
    assert slides[1].stat().st_mtime_ns == stamp  # kept, not drawn again
    for rel in pd.read_csv(cohort)["path"]:
        assert (out / rel).read_bytes() == (cohort.parent / rel).read_bytes()
    other = dataclasses.replace(TINY, seed=TINY.seed + 1)
    synthesize(out, other, progress=False)
    assert slides[1].read_bytes() != (cohort.parent / "slides" / slides[1].name).read_bytes()
    # with worker processes: a finished cohort is a no-op (nothing left to draw), one missing slide is redrawn
    parallel = dataclasses.replace(other, workers=2)  # the number of workers does not change the cohort
    stamp = slides[1].stat().st_mtime_ns
    synthesize(out, parallel, progress=False)
    assert slides[1].stat().st_mtime_ns == stamp
    slides[0].unlink()
    synthesize(out, parallel, progress=False)
    assert slides[0].exists()


def test_tissue_on_white_background_with_nuclei_and_eosin(cohort):
    for rel in pd.read_csv(cohort)["path"]:
        img = _level(str(cohort.parent / rel), 1).astype(int)
        white = (img.min(-1) > 205).mean()
        assert 0.15 < white < 0.85, f"{rel}: near-white fraction {white:.2f}"
        r, g, b = img[..., 0], img[..., 1], img[..., 2]
        nuclei = ((img.mean(-1) < 150) & (b > r) & (b > g)).mean()  # dark blue-purple hematoxylin
        pink = ((r > g + 40) & (b > g + 20)).mean()  # eosin: red and blue kept, green absorbed
        assert nuclei > 0.005 and pink > 0.05, f"{rel}: nuclei {nuclei:.3f}, eosin {pink:.3f}"


def test_centres_differ_in_colour_more_than_slides_of_one_centre(tmp_path):
    # 8 one-slide cases in 2 centres, no artefacts (they are not centre-related); with center_strength=0 the
    # ratio below is about 1
    config = dataclasses.replace(TINY, n_slides=8, n_centers=2, two_slide_cases=0.0, artefact_fraction=0.0, seed=1)
    manifest = synthesize(tmp_path, config, progress=False)
    frame = pd.read_csv(manifest, dtype=str)
    colours = []
    for rel in frame["path"]:
        img = _level(str(tmp_path / rel), 1).reshape(-1, 3).astype(float)
        colours.append(np.median(img[img.min(-1) <= 205], axis=0))  # the tissue's (robust) mean colour
    dist = np.linalg.norm(np.array(colours)[:, None] - np.array(colours)[None], axis=-1)
    centre = frame["center"].to_numpy()
    same, off_diagonal = centre[:, None] == centre[None], ~np.eye(len(frame), dtype=bool)
    assert (same & off_diagonal).any() and (~same).any()
    assert dist[same & off_diagonal].mean() < 0.7 * dist[~same].mean()


def test_plan_has_priors_label_noise_and_every_centre():
    config = dataclasses.replace(get_profile("demo").synth, n_slides=600, label_noise=0.1, seed=1, pool_slides=0)
    frame = plan_cohort(config)
    cases = frame.drop_duplicates("case_id")
    assert set(frame["center"]) == {f"C{i:02d}" for i in range(config.n_centers)}
    assert abs((frame.groupby("case_id").size() == 2).mean() - config.two_slide_cases) < 0.03
    for task, classes in TASKS.items():
        shares = cases[f"true_{task}"].value_counts(normalize=True).reindex(list(classes))
        assert shares.to_numpy() == pytest.approx(PRIORS[task], abs=0.01)
        flipped = (cases[task] != cases[f"true_{task}"]).mean()
        assert flipped == pytest.approx(config.label_noise, abs=0.005)
    assert frame["artefacts"].mean() == pytest.approx(config.artefact_fraction, abs=0.005)


@pytest.mark.parametrize("change, value", [("n_slides", 0), ("n_centers", 7), ("label_noise", 1.5),
                                           ("tiff_tile", 100), ("n_levels", 6), ("seed", -1)])
def test_bad_config_is_a_config_error_naming_the_value(change, value, tmp_path):
    with pytest.raises(ConfigError, match=f"{change}={value}"):
        synthesize(tmp_path, dataclasses.replace(TINY, **{change: value}), progress=False)
    assert not (tmp_path / "manifest.csv").exists()


def test_the_unlabelled_pool_leaves_the_labelled_cohort_unchanged():
    from gigassl.manifest import labelled_ids, pool_ids, ssl_slide_ids

    base = dataclasses.replace(get_profile("demo").synth, n_slides=40, n_centers=4, pool_slides=0)
    with_pool = dataclasses.replace(base, pool_slides=12)
    a, b = plan_cohort(base), plan_cohort(with_pool)
    pd.testing.assert_frame_equal(a, b.iloc[:40], check_dtype=False)
    pool = b.iloc[40:]
    assert pool.slide_id.str.startswith("U").all() and pool[list(TASKS)].isna().all().all()
    assert pool.case_id.is_unique and set(pool.center) <= set(a.center)
    b = b[list(COLUMNS)]  # the manifest's columns
    assert labelled_ids(b) == a.slide_id.tolist() and pool_ids(b) == pool.slide_id.tolist()
    assert ssl_slide_ids(b, pool=5) == a.slide_id.tolist() + pool.slide_id.tolist()[:5]
    assert ssl_slide_ids(b, pool=0) == a.slide_id.tolist() and len(ssl_slide_ids(b)) == 52
    centre = a.center.iloc[0]
    assert centre not in set(b.set_index("slide_id").loc[ssl_slide_ids(b, exclude_centres=[centre]), "center"])


def test_pool_slides_are_written_at_their_own_size(tmp_path):
    config = dataclasses.replace(TINY, n_slides=3, n_centers=1, pool_slides=2, pool_width=256, pool_height=192)
    manifest = synthesize(tmp_path, config, progress=False)
    frame = pd.read_csv(manifest)
    assert len(frame) == 5 and frame.iloc[3:][list(TASKS)].isna().all().all()
    import openslide

    with openslide.OpenSlide(str(tmp_path / frame.path.iloc[4])) as slide:
        assert slide.dimensions == (256, 192)
    with openslide.OpenSlide(str(tmp_path / frame.path.iloc[0])) as slide:
        assert slide.dimensions == (TINY.width, TINY.height)


def test_ssl_slides_skip_unavailable_ones():
    from gigassl.manifest import ssl_slide_ids

    frame = pd.DataFrame({"slide_id": ["S1", "S2", "U1", "U2", "U3"], "path": "x", "case_id": ["a", "b", "c", "d", "e"],
                          "center": "C0", "t": ["x", "y", None, None, None]})
    assert ssl_slide_ids(frame, pool=2) == ["S1", "S2", "U1", "U2"]
    assert ssl_slide_ids(frame, pool=2, available=["S1", "S2", "U2", "U3"]) == ["S1", "S2", "U2", "U3"]


# ----------------------------------------------------------------------------------------- the survival outcome
# sha256 of plan_cohort(...).to_csv(index=False) and of the centre signatures, taken before the survival outcome was
# added (commit ada89f7): drawing it must leave every existing draw of the cohort bit-identical
_PLANS = [
    (dict(n_slides=8, n_centers=2, pool_slides=2, width=768, height=512, n_levels=2),
     "07ab56ff1a66c9ce685b9f7e0dedac4809902ab76aaf7dbd75cb83e115bf3841",
     "eadd10451a4b2d52b7ab8ae0bf9f9bb71c94acc1f8a8e39236b392f724a6c915"),
    (dict(n_slides=120, n_centers=8, pool_slides=240, seed=3),
     "9b9f3b5a05844486144f1c46a94d45a8d3d7136410bcae621db2c3a81fa440ae",
     "1cebf2bd7138f08d9c8c7b4afba0a980a1c3a010a1dcf8a4c8c5f0b803aae04a"),
]


@pytest.mark.parametrize("fields, plan_hash, centre_hash", _PLANS)
def test_the_survival_outcome_leaves_the_cohort_bit_identical(fields, plan_hash, centre_hash):
    import hashlib

    from gigassl.cohorts.synth import center_styles, plan_survival
    from gigassl.config import SynthConfig

    config = SynthConfig(**fields)  # every field that decides the plan given explicitly (not a profile's)
    frame = plan_cohort(config)
    plan_survival(config, frame)
    assert hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest() == plan_hash
    styles = json.dumps([dataclasses.asdict(s) for s in center_styles(config)])
    assert hashlib.sha256(styles.encode()).hexdigest() == centre_hash


def test_survival_csv_is_written_beside_the_manifest_one_draw_per_case(cohort):
    from gigassl.cohorts.synth import SURVIVAL_FILE, plan_survival

    survival = pd.read_csv(cohort.parent / SURVIVAL_FILE, dtype={"slide_id": str, "case_id": str})
    manifest = pd.read_csv(cohort)
    assert list(survival.columns) == ["slide_id", "case_id", "time", "event"]
    assert list(manifest.columns) == list(COLUMNS)  # the outcome is no manifest column (those are tasks)
    assert survival.slide_id.tolist() == manifest.slide_id.tolist()
    assert survival.case_id.tolist() == manifest.case_id.tolist()
    assert (survival.groupby("case_id")[["time", "event"]].nunique() == 1).all().all()  # a case's slides share it
    assert (survival.time > 0).all() and set(survival.event) <= {0, 1}
    again = plan_survival(TINY)
    pd.testing.assert_frame_equal(survival, again, check_dtype=False)
    other = plan_survival(dataclasses.replace(TINY, seed=TINY.seed + 1))
    assert not np.allclose(other.time, again.time)


def test_the_hazard_rises_with_nuclear_size_and_censoring_is_as_designed():
    from sksurv.metrics import concordance_index_censored

    from gigassl.cohorts.synth import (CENSORING_RATIO, SURVIVAL_BETA, SURVIVAL_MEDIAN, draw_survival,
                                       survival_factor)

    classes = TASKS["rcc_like"]
    z = survival_factor(classes)
    assert z[1] > z[2] > z[0]  # large_nuclei > wrinkled_halo > clear_cytoplasm
    prior = np.array(PRIORS["rcc_like"])
    assert prior @ z == pytest.approx(0, abs=1e-12) and prior @ z ** 2 == pytest.approx(1)
    g = np.random.default_rng(0)
    few = survival_factor(np.array(classes)[g.choice(3, 400, p=prior)])
    time, event = draw_survival(few, np.random.default_rng(1))
    assert concordance_index_censored(event, time, few)[0] > 0.6  # the oracle orders the cases
    many = survival_factor(np.array(classes)[g.choice(3, 4000, p=prior)])
    time, event = draw_survival(many, np.random.default_rng(2))
    h0 = np.log(2) / SURVIVAL_MEDIAN
    rate = h0 * np.exp(SURVIVAL_BETA * many)
    expected = np.mean(CENSORING_RATIO * h0 / (rate + CENSORING_RATIO * h0))  # P(censoring first), exponentials
    assert 0.25 < expected < 0.4
    assert abs((~event).mean() - expected) < 0.03  # about 4 sd of a share over 4000 cases
    large, clear = np.median(time[many == z[1]]), np.median(time[many == z[0]])
    assert large < 0.7 * clear
