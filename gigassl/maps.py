"""Views of slides and their sparse maps (Sec. 3.1 Steps 3-4, Sec. 3.2), drawn from a packed bank.

- A *view* of a slide (training): pick one augmentation draw of its bank, sample T tiles of that draw with
  replacement (paper T = 5; the authors' code) or, ``MapConfig.replacement`` off, T different tiles: :func:`training_views`. At inference the T tiles come from the plain (non-augmented)
  embeddings: :func:`packed_inference_views` (a slide of a :class:`gigassl.bankstore.PackedBank`),
  :func:`inference_views` (any slide's tile features). Beyond the paper, ``MapConfig.sampling = "local"`` draws a
  view's T tiles from one neighbourhood of the slide instead (:func:`local_tiles`), in training and at inference.
- *Sparse map* (Step 3): tile coordinates divided by a downsampling factor d (the paper: d = 224 level-0 pixels;
  ``"tile"`` = the tile's level-0 size, which puts adjacent tiles on adjacent sites), shifted so the view's minimum
  is 0, floored. Tiles landing on the same site are averaged by the aggregator (:mod:`gigassl.aggregators`).
- *Slide-level augmentation* (Step 4), on the coordinates before the map is built: a random rotation, independent
  horizontal and vertical flips, and a per-axis scale uniform in [0.5, 2] (the paper; the authors' code used
  [0.7, 1.3]: ``MapConfig.scale``).

The bank's storage (packing a bank folder into memory-mapped arrays) is :mod:`gigassl.bankstore`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch

from .aggregators import Views
from .config import MapConfig
from .errors import ConfigError
from .seeding import nearest, rng, sample_indices

if TYPE_CHECKING:
    from .bankstore import PackedBank


# ------------------------------------------------------------------------------------------- sparse map geometry
def transform_coords(coords: np.ndarray, angle: float = 0.0, flip_x: bool = False, flip_y: bool = False,
                     scale: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Rotate by ``angle`` (radians, counter-clockwise in (x, y)), flip, then scale map coordinates.

    Shape: (..., 2) float -> (..., 2) float.
    """
    c = np.asarray(coords, dtype=np.float64)
    cos, sin = math.cos(angle), math.sin(angle)
    x = cos * c[..., 0] - sin * c[..., 1]
    y = sin * c[..., 0] + cos * c[..., 1]
    if flip_x:
        x = -x
    if flip_y:
        y = -y
    return np.stack([x * scale[0], y * scale[1]], axis=-1)


def to_sites(coords: np.ndarray) -> np.ndarray:
    """Shift float map coordinates so that the minimum of each view is 0 and floor them to integer sites.

    Shape: (B, T, 2) or (T, 2) float -> int64 of the same shape. Values are rounded to 1e-6 first so that an exact
    90-degree rotation of integer coordinates stays integer.
    """
    c = np.asarray(coords, dtype=np.float64)
    shifted = c - c.min(axis=-2, keepdims=True)
    return np.floor(np.round(shifted, 6)).astype(np.int64)


def map_units(coords: np.ndarray, downsample: int | str, patch_size_level0: int) -> np.ndarray:
    """Level-0 pixel coordinates -> map units (divided by d). Shape preserved, float64."""
    if downsample == "tile":
        if not isinstance(patch_size_level0, (int, float, np.integer)) or patch_size_level0 <= 0:
            raise ConfigError(f"downsample='tile' needs the tiles' level-0 size, but it is {patch_size_level0!r} "
                              "(not recorded); give the level-0 pixels per map site instead, e.g. --downsample 448.")
        d = patch_size_level0
    else:
        d = downsample
    if isinstance(d, bool) or not isinstance(d, (int, float, np.integer)) or d <= 0:
        raise ConfigError(f"map downsample must be a positive number of level-0 pixels or 'tile'; got {downsample!r}.")
    return np.asarray(coords, dtype=np.float64) / float(d)


def slide_augmentation(coords: np.ndarray, config: MapConfig, generator: np.random.Generator) -> np.ndarray:
    """Step 4: random rotation, flips and per-axis scaling of one view's map coordinates (T, 2) float."""
    if not config.slide_aug:
        return coords
    angle = generator.uniform(0, 2 * math.pi) if config.rotation else 0.0
    flip_x, flip_y = (generator.random(2) < 0.5) if config.flips else (False, False)
    scale = tuple(generator.uniform(config.scale[0], config.scale[1], 2))
    return transform_coords(coords, angle, bool(flip_x), bool(flip_y), scale)


# --------------------------------------------------------------------------------------------------- views
def _sites(bank: PackedBank, i: int, coords: np.ndarray, config: MapConfig,
           generator: np.random.Generator | None) -> np.ndarray:
    """Sparse-map sites of some level-0 tile coordinates of slide ``i`` of ``bank``, slide-augmented with
    ``generator`` (None: not augmented). Shape: (T, 2) -> (T, 2) int64."""
    if config.downsample == "tile" and bank.patch_size_level0[i] <= 0:
        raise ConfigError(
            f"Slide {bank.ids[i]} of {bank.bank_dir} records no tile size (patch_size_level0), which the sparse "
            "map needs with downsample='tile' (CLAM features of a slide with one tile carry none). Give the "
            "level-0 pixels per map site instead (--downsample 448 for 224-px tiles at 20x from a 40x scan).")
    c = map_units(coords, config.downsample, int(bank.patch_size_level0[i]))
    if generator is not None:
        c = slide_augmentation(c, config, generator)
    return to_sites(c)


def training_views(bank: PackedBank, indices: np.ndarray, tiles: int, config: MapConfig, seed: int,
                   epoch: int) -> tuple[Views, Views]:
    """Two views of each slide in ``indices`` of ``bank`` (Sec. 3.2): each picks its own draw and T tiles of it,
    then the slide-level augmentation. Randomness keyed by (seed, epoch, slide, view): independent of batch and rank.

    A bank of plain tile features (TRIDENT, CLAM, ``gigassl bank --augmentations 0``) has no draws: each view
    then samples its T tiles from the plain features, so that the two views differ by their tiles and the
    slide-level augmentation only (no tile augmentation).

    Shape: two ``Views`` with features (B, T, F) float32 and coords (B, T, 2) int64.
    """
    out = []
    for view in (0, 1):
        feats = np.empty((len(indices), tiles, bank.feature_dim), np.float32)
        sites = np.empty((len(indices), tiles, 2), np.int64)
        for b, i in enumerate(indices):
            g = rng(seed, epoch, bank.keys[i], view)
            feats[b], chosen, _ = view_tiles(bank, i, tiles, g, config)
            sites[b] = _sites(bank, i, chosen, config, g)
        out.append(Views(torch.from_numpy(feats), torch.from_numpy(sites)))
    return out[0], out[1]


def view_tiles(bank: PackedBank, i: int, tiles: int, generator: np.random.Generator, config: MapConfig | None = None):
    """Step 3's sampling for one view of slide ``i``: one augmentation draw of the bank, then T tiles of it with
    replacement (the authors' code), or without when ``config.replacement`` is off (a bank of plain features: T of
    its plain tiles; :func:`gigassl.seeding.sample_indices`), drawn from ``generator`` (which the slide
    augmentation then continues); with ``config.sampling == "local"``, the T tiles of one neighbourhood instead
    (:func:`local_tiles`). Returns features (T, F), level-0 coords (T, 2) and the draw (None: plain)."""
    local = config is not None and config.sampling == "local"
    if bank.features is not None:
        n_draws, n_tiles = bank.features.shape[1:3]
        draw = int(generator.integers(n_draws))
        if local:
            pick = local_tiles(bank.coords[i, draw], tiles, config.neighbourhood, generator)
        else:
            pick = np.sort(sample_indices(generator, n_tiles, tiles, _replacement(config)))
        return bank.features[i, draw][pick], bank.coords[i, draw][pick], draw
    plain, coords = bank.plain(i)
    if local:
        pick = local_tiles(coords, tiles, config.neighbourhood, generator)
    else:
        pick = np.sort(sample_indices(generator, len(plain), tiles, _replacement(config)))
    return plain[pick], coords[pick], None


def _replacement(config: MapConfig | None) -> bool:
    return True if config is None else config.replacement


def local_tiles(coords: np.ndarray, tiles: int, neighbourhood: int | None,
                generator: np.random.Generator) -> np.ndarray:
    """The T tiles of a local view (beyond the paper, ``MapConfig.sampling = "local"``): a centre tile drawn
    uniformly, its ``neighbourhood`` nearest tiles (Euclidean level-0 distance, the centre included, ties at random;
    None: T), and T of them drawn without replacement (all of them, then repeats with replacement, when the slide
    holds fewer). Every draw comes from ``generator``.

    Shape: coords (M, 2) -> indices (T,) into coords, sorted.
    """
    centre = int(generator.integers(len(coords)))
    near = nearest(coords, centre, neighbourhood or tiles, generator)
    if len(near) >= tiles:
        pick = near[generator.permutation(len(near))[:tiles]]
    else:
        pick = np.concatenate([near, generator.choice(near, tiles - len(near))])
    return np.sort(pick)


def packed_inference_views(bank: PackedBank, i: int, views: int, tiles: int, config: MapConfig, seed: int) -> Views:
    """R views of T tiles of slide ``i`` of ``bank`` sampled from its plain embeddings, without slide augmentation
    (Sec. 4.2): :func:`inference_views` keyed by the slide's id. Shape: features (R, T, F), coords (R, T, 2)."""
    plain, coords = bank.plain(i)
    if config.downsample == "tile" and bank.patch_size_level0[i] <= 0:
        _sites(bank, i, coords[:1], config, None)  # the error that names the slide and the fix
    return inference_views(plain, coords, int(bank.patch_size_level0[i]), views, tiles, config, seed,
                           int(bank.keys[i]))


def inference_views(plain: np.ndarray, coords: np.ndarray, patch_size_level0: int, views: int, tiles: int,
                    config: MapConfig, seed: int, key: int = 0) -> Views:
    """R views of T tiles sampled (with replacement, or without when ``config.replacement`` is off and the slide has
    at least T tiles: :func:`gigassl.seeding.sample_indices`; keyed by ``(seed, key)``; ``key``: :func:`gigassl.bank.slide_key`
    of the slide id; local views with ``config.sampling == "local"``, :func:`local_tiles`) from one slide's plain tile
    features, mapped without slide augmentation (Sec. 4.2).

    Shape: plain (M, F), coords (M, 2) level-0 -> features (R, T, F) float32, coords (R, T, 2) int64.
    """
    g = rng(seed, key)
    if config.sampling == "local":
        pick = np.stack([local_tiles(coords, tiles, config.neighbourhood, g) for _ in range(views)])
    elif config.replacement:
        pick = np.sort(g.integers(0, len(plain), (views, tiles)), axis=1)
    else:
        pick = np.sort(np.stack([sample_indices(g, len(plain), tiles, False) for _ in range(views)]), axis=1)
    sites = np.stack([to_sites(map_units(np.asarray(coords)[p], config.downsample, patch_size_level0)) for p in pick])
    return Views(torch.from_numpy(np.asarray(plain[pick.ravel()], np.float32).reshape(views, tiles, -1)),
                 torch.from_numpy(sites))


def packed_case_views(bank: PackedBank, indices, views: int, tiles: int, config: MapConfig, seed: int,
                      key: int) -> Views:
    """R views of T tiles drawn across all the slides ``indices`` of one patient (early fusion, beyond the paper).

    The slides' plain tile features are concatenated and each view samples its T tiles among all of them, as
    :func:`inference_views` samples one slide's (keyed by ``(seed, key)``, without slide augmentation). The slides
    are laid side by side on one sparse map: each slide's coordinates are put in map units (its own level-0 tile
    size with ``downsample='tile'``), then shifted by whole sites, the first not at all, each next one so that its
    leftmost tile lies at least 2 map units right of the previous slide's rightmost tile and its top row level with
    the first slide's; so tiles of different slides never share a site (an empty column of sites at least between
    them) and each slide keeps its own arrangement. Local views (``config.sampling == "local"``) pick neighbourhoods
    on that layout, so a neighbourhood near a slide's edge may reach into the next slide.

    A single slide gives exactly :func:`packed_inference_views` of it (same call; ``key`` is then unused).

    Shape: -> features (R, T, F) float32, coords (R, T, 2) int64.
    """
    from dataclasses import replace

    indices = [int(i) for i in indices]
    if not indices:
        raise ConfigError("packed_case_views needs at least one slide index of the case; got none.")
    if len(indices) == 1:
        return packed_inference_views(bank, indices[0], views, tiles, config, seed)
    features, units, right, top = [], [], None, None
    for i in indices:
        plain, coords = bank.plain(i)
        if config.downsample == "tile" and bank.patch_size_level0[i] <= 0:
            _sites(bank, i, coords[:1], config, None)  # the error that names the slide and the fix
        c = map_units(coords, config.downsample, int(bank.patch_size_level0[i]))
        if right is None:
            top = math.floor(c[:, 1].min())
        else:
            c = c + np.array([math.ceil(right + 2 - c[:, 0].min()), top - math.floor(c[:, 1].min())], np.float64)
        right = float(c[:, 0].max())
        features.append(np.asarray(plain))
        units.append(c)
    return inference_views(np.concatenate(features), np.concatenate(units), 1, views, tiles,
                           replace(config, downsample=1), seed, int(key))
