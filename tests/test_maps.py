"""Views and sparse maps (Sec. 3.1 Steps 3-4): placement, collisions, slide augmentation, views of a packed bank."""

import dataclasses
import math
import os

import numpy as np
import pytest
import torch

from gigassl.aggregators import SparseConvAggregator, Views
from gigassl.config import MapConfig
from gigassl.errors import ConfigError
from gigassl.bankstore import PackedBank
from gigassl.maps import (map_units, packed_inference_views, slide_augmentation, to_sites, training_views,
                          transform_coords)
from gigassl.seeding import rng


def dense_map(sites: np.ndarray, feats: np.ndarray) -> np.ndarray:
    """The map written directly: (H, W, F) with the mean of the tiles on each site, NaN where empty."""
    h, w = sites[:, 1].max() + 1, sites[:, 0].max() + 1
    total = np.zeros((h, w, feats.shape[1]))
    count = np.zeros((h, w, 1))
    for (x, y), f in zip(sites, feats):
        total[y, x] += f
        count[y, x] += 1
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, total / count, np.nan)


def test_each_tile_lands_on_its_site():
    coords = np.array([[2240, 448], [448, 896], [1344, 448]])  # level-0 (x, y)
    sites = to_sites(map_units(coords, 224, 448))
    np.testing.assert_array_equal(sites, [[8, 0], [0, 2], [4, 0]])
    np.testing.assert_array_equal(to_sites(map_units(coords, "tile", 448)), [[4, 0], [0, 1], [2, 0]])
    with pytest.raises(ConfigError, match="positive number of level-0 pixels or 'tile'"):
        map_units(coords, 0, 448)


def test_tiles_on_one_site_are_averaged_by_the_aggregator():
    feats = torch.arange(3 * 256, dtype=torch.float32).view(1, 3, 256)
    views = Views(feats, torch.tensor([[[0, 0], [0, 0], [2, 1]]]))
    sparse = SparseConvAggregator().to_sparse(views)
    assert len(sparse.features) == 2
    by_site = {tuple(c[1:].tolist()): f for c, f in zip(sparse.coords, sparse.features)}
    origin = sparse.coords[:, 1:].min(0).values
    torch.testing.assert_close(by_site[tuple(origin.tolist())], feats[0, :2].mean(0))


@pytest.mark.parametrize("k", [1, 2, 3])
def test_rotating_coordinates_by_90_degrees_rotates_the_map(k):
    g = np.random.default_rng(k)
    coords = g.integers(0, 9, (12, 2)).astype(float)
    feats = g.normal(size=(12, 4))
    base = dense_map(to_sites(coords), feats)
    turned = dense_map(to_sites(transform_coords(coords, angle=k * math.pi / 2)), feats)
    # (x, y) rotated counter-clockwise in the (x, y) frame, with y the row index: np.rot90 with axes (1, 0)
    np.testing.assert_array_equal(np.isnan(turned), np.isnan(np.rot90(base, k, axes=(1, 0))))
    np.testing.assert_allclose(np.nan_to_num(turned), np.nan_to_num(np.rot90(base, k, axes=(1, 0))))


def test_flipping_coordinates_flips_the_map():
    g = np.random.default_rng(0)
    coords = g.integers(0, 7, (10, 2)).astype(float)
    feats = g.normal(size=(10, 3))
    base = dense_map(to_sites(coords), feats)
    np.testing.assert_allclose(np.nan_to_num(dense_map(to_sites(transform_coords(coords, flip_x=True)), feats)),
                               np.nan_to_num(base[:, ::-1]))
    np.testing.assert_allclose(np.nan_to_num(dense_map(to_sites(transform_coords(coords, flip_y=True)), feats)),
                               np.nan_to_num(base[::-1]))
    np.testing.assert_allclose(transform_coords(coords, scale=(2.0, 0.5)), coords * [2.0, 0.5])


def test_slide_augmentation_switch_and_ranges():
    coords = np.random.default_rng(0).integers(0, 20, (30, 2)).astype(float)
    off = dataclasses.replace(MapConfig(), slide_aug=False)
    np.testing.assert_array_equal(slide_augmentation(coords, off, rng(0)), coords)
    on = slide_augmentation(coords, MapConfig(), rng(0))
    assert on.shape == coords.shape and not np.allclose(on, coords)
    np.testing.assert_array_equal(on, slide_augmentation(coords, MapConfig(), rng(0)))
    # scaling only: the spread of each axis is multiplied by a factor in [0.5, 2]
    only_scale = MapConfig(rotation=False, flips=False, scale=(0.5, 2.0))
    for seed in range(20):
        out = slide_augmentation(coords, only_scale, rng(seed))
        ratio = np.ptp(out, axis=0) / np.ptp(coords, axis=0)
        assert ((ratio >= 0.5 - 1e-9) & (ratio <= 2 + 1e-9)).all()


def test_packed_bank_views_are_keyed_by_slide_not_batch(bank_dir):
    bank = PackedBank(bank_dir)
    assert len(bank) == 6 and bank.features.shape == (6, 3, 8, 256) and bank.feature_dim == 256
    config = MapConfig(downsample="tile")
    a1, a2 = training_views(bank, np.array([0, 3]), 5, config, seed=1, epoch=2)
    b1, _ = training_views(bank, np.array([4, 0, 5]), 5, config, seed=1, epoch=2)
    assert a1.features.shape == (2, 5, 256) and a1.coords.shape == (2, 5, 2) and a1.coords.dtype == torch.int64
    torch.testing.assert_close(a1.features[0], b1.features[1])
    torch.testing.assert_close(a1.coords[0], b1.coords[1])
    assert not torch.equal(a1.features[0], a2.features[0]) or not torch.equal(a1.coords[0], a2.coords[0])
    c1, _ = training_views(bank, np.array([0, 3]), 5, config, seed=1, epoch=3)
    assert not torch.equal(a1.coords, c1.coords) or not torch.equal(a1.features, c1.features)
    assert (a1.coords.min(dim=1).values == 0).all()  # each view's map starts at 0


def test_inference_views_use_plain_tiles_without_augmentation(bank_dir):
    bank = PackedBank(bank_dir)
    config = MapConfig(downsample="tile")
    views = packed_inference_views(bank, 2, views=7, tiles=5, config=config, seed=0)
    again = packed_inference_views(bank, 2, views=7, tiles=5, config=config, seed=0)
    assert views.features.shape == (7, 5, 256)
    torch.testing.assert_close(views.features, again.features)
    plain = np.asarray(bank.plain_features[bank.offsets[2]:bank.offsets[3]], np.float32)
    rows = {tuple(r) for r in plain.round(3)}
    assert all(tuple(r) in rows for r in views.features.reshape(-1, 256).numpy().round(3))
    patch = int(bank.patch_size_level0[2])
    assert patch == 64


# ------------------------------------------------------------------------------ local views (beyond the paper)
def _within_a_neighbourhood(coords: np.ndarray, picked: np.ndarray, k: int) -> bool:
    """Whether some tile has every picked tile among its k nearest (ties included): written directly."""
    d = np.sqrt(((coords[:, None] - coords[None]) ** 2).sum(-1))
    radius = np.sort(d, axis=1)[:, k - 1]
    return bool(((d[:, picked] <= radius[:, None] + 1e-9).all(axis=1)).any())


def test_a_local_view_draws_its_tiles_from_one_neighbourhood():
    from gigassl.maps import local_tiles

    coords = np.stack(np.meshgrid(np.arange(12), np.arange(9)), -1).reshape(-1, 2) * 448
    for seed in range(20):
        picked = local_tiles(coords, 5, 12, rng(seed))
        assert len(picked) == 5 and len(set(picked)) == 5 and (np.diff(picked) >= 0).all()
        assert _within_a_neighbourhood(coords, picked, 12)
        exact = local_tiles(coords, 5, None, rng(seed, 1))  # none: exactly the 5 nearest of the centre
        assert _within_a_neighbourhood(coords, exact, 5) and len(set(exact)) == 5
    random_draw = np.sort(rng(0).integers(0, len(coords), 5))
    assert not _within_a_neighbourhood(coords, random_draw, 12)  # the paper's draw spreads over the slide
    np.testing.assert_array_equal(local_tiles(coords, 5, 12, rng(7)), local_tiles(coords, 5, 12, rng(7)))
    assert any(not np.array_equal(local_tiles(coords, 5, 12, rng(7)), local_tiles(coords, 5, 12, rng(s)))
               for s in range(8, 11))
    few = local_tiles(coords[:3], 5, None, rng(0))  # fewer tiles than T: all of them, then repeats
    assert len(few) == 5 and set(few) == {0, 1, 2}


def test_local_sampling_in_training_and_inference_views(synthetic_bank):
    from gigassl.maps import inference_views, view_tiles

    bank = PackedBank(synthetic_bank)
    local = MapConfig(downsample="tile", sampling="local", neighbourhood=8)
    plain, coords = bank.plain(0)
    for view in range(6):
        _, chosen, draw = view_tiles(bank, 0, 4, rng(1, 0, int(bank.keys[0]), view), local)
        pool = np.asarray(bank.coords[0, draw] if draw is not None else coords)
        index = [int(np.flatnonzero((pool == c).all(1))[0]) for c in np.asarray(chosen)]
        assert _within_a_neighbourhood(pool, np.array(index), 8)
    a1, _ = training_views(bank, np.array([0, 3]), 4, local, seed=1, epoch=0)
    b1, _ = training_views(bank, np.array([5, 0]), 4, local, seed=1, epoch=0)
    torch.testing.assert_close(a1.features[0], b1.features[1])  # keyed by slide, as the paper's views
    views = inference_views(plain, coords, 64, views=6, tiles=4, config=local, seed=0)
    table = np.asarray(plain, np.float32)
    for row in views.features.numpy():
        index = [int(np.flatnonzero((table == f).all(1))[0]) for f in row]
        assert _within_a_neighbourhood(np.asarray(coords), np.array(index), 8)
    assert (views.coords.numpy().max(axis=1) <= 4).all()  # a compact map: the 8 nearest lie within 2 sites
    again = inference_views(plain, coords, 64, views=6, tiles=4, config=local, seed=0)
    torch.testing.assert_close(views.features, again.features)


def test_the_default_sampling_is_the_papers_draw(synthetic_bank):
    from gigassl.maps import view_tiles

    bank = PackedBank(synthetic_bank)
    assert MapConfig().sampling == "random"
    for i in range(3):
        with_default = view_tiles(bank, i, 5, rng(2, i), MapConfig())
        without = view_tiles(bank, i, 5, rng(2, i))
        np.testing.assert_array_equal(with_default[1], without[1])
        assert with_default[2] == without[2]


@pytest.mark.parametrize("changes, named", [({"sampling": "near"}, ["sampling='near'", "'random', 'local'"]),
                                            ({"neighbourhood": 0}, ["neighbourhood=0", "an integer >= 1"])])
def test_bad_sampling_settings_are_refused(changes, named):
    with pytest.raises(ConfigError) as err:
        MapConfig(**changes)
    assert all(text in str(err.value) for text in named) and "--" in str(err.value)


def test_without_replacement_a_view_never_holds_a_tile_twice(bank_dir):
    from gigassl.maps import view_tiles

    bank = PackedBank(bank_dir)
    n_tiles = bank.features.shape[2]
    for replacement, repeats_seen in ((False, False), (True, True)):
        config = MapConfig(downsample="tile", replacement=replacement)
        seen = False
        for i in range(len(bank)):
            for view in range(20):
                _, coords, draw = view_tiles(bank, i, 5, rng(0, i, view), config)
                unique = len({tuple(c) for c in coords})
                distinct_in_draw = len({tuple(c) for c in bank.coords[i, draw]})
                if not replacement and distinct_in_draw == n_tiles:  # a draw of N different tiles
                    assert unique == 5
                seen |= unique < 5
        assert seen == repeats_seen  # with replacement 5 of 8 repeat often (1 - 8*7*6*5*4/8^5 = 79% a view)
    plain_views = packed_inference_views(bank, 1, views=10, tiles=5,
                                         config=MapConfig(downsample="tile", replacement=False), seed=0)
    if len(bank.plain(1)[0]) >= 5:
        assert all(len({tuple(c) for c in v.tolist()}) == 5 for v in plain_views.coords)


def test_the_banks_draws_hold_different_tiles_when_the_slide_has_enough(bank_dir):
    bank = PackedBank(bank_dir)  # conftest's bank: the smoke profile's BankConfig, replacement off
    n_tiles = bank.features.shape[2]
    checked = 0
    for i in range(len(bank)):
        if len(bank.plain(i)[0]) >= n_tiles:
            for draw in range(bank.features.shape[1]):
                assert len({tuple(c) for c in bank.coords[i, draw]}) == n_tiles
                checked += 1
    assert checked > 0
