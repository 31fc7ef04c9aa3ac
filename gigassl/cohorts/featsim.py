"""A feature-level cohort whose label comes from one known mechanism (``gigassl simulate``; issue #24), written in
TRIDENT's feature layout so that the real commands (``gigassl train``, ``embed``, ``probe --method averagemil |
deepmil``) run on it unchanged.

A slide is a grid of tiles (``tiles_per_slide`` M tissue tiles, an irregular blob) on which K tissue classes lie in
spatially smooth maps (Gaussian-filtered noise fields, length scale ``smoothness`` tiles); a tile's feature is its
class mean plus isotropic noise (F dimensions; class means with unit variance per dimension, ``tile_noise`` around
them), then an optional affine map per centre (``center_shift``). The labels alternate (0, 1, 0, ...: balanced); a
slide's label sets the distribution of one slide statistic, the **oracle**, and the tiles are drawn given the
oracle alone, so the oracle is a sufficient statistic: no method can beat a classifier on it (the Bayes ceiling).

The mechanisms (``mechanism``), their own classes (the last of the K, the others are background classes whose
per-slide weights vary for every label alike) and their oracle:

- ``M0`` null: as M1 with no effect; the oracle (the target share) is independent of the label.
- ``M1`` diffuse proportion: the share of the target class, ``share_range`` low + (high - low) * t.
- ``M2`` focal presence: ``focal_tiles`` adjacent tiles of the focal class, which label 0 never has, in a share
  ``effect`` of the label-1 slides; the oracle is the number of focal tiles (0 or ``focal_tiles``).
- ``M3`` heterogeneity: a region (``region`` of the tissue) holds a share t of two separate types A and B (as many
  tiles of each, in two smooth sub-regions) and 1 - t of their blend C (mean (A + B) / 2): the mean tile feature
  does not depend on t, the within-slide spread does. The oracle is t.
- ``M4`` arrangement: a region holds two classes P and Q, half each in every slide; a share t of intermixing sets
  the assignment: the score ``cos(t pi/2) * smooth + sin(t pi/2) * white noise``, split at its median (t = 0
  segregated blobs, t = 1 intermixed tile by tile). The oracle is t.

For M1, M3 and M4, t = (u + effect * label) / (1 + effect) with u uniform in [0, 1], so the oracle's AUC is
1 - (1 - effect)^2 / 2; for M2 it is 0.5 + effect / 2 (:func:`oracle_auc`, :func:`calibrated_effect`). Effect sizes
are calibrated on the oracle alone.

Randomness: the class means come from ``rng(seed, 0)``, a centre's affine map from ``rng(seed, 1, centre)``, a
slide's label, oracle and centre from ``rng(seed, 2, split, index)`` and its maps and features from
``rng(seed, 3, split, index)``: a slide does not depend on the others, a bigger pool extends a smaller one, and each
seed has its own test set.

Files (:func:`simulate`): ``features_featsim/<slide_id>.h5`` (TRIDENT's tile features,
:func:`gigassl.io.write_features`: ``features`` (M, F) float32, ``coords`` (M, 2) level-0 (x, y) of 256-px tiles at
20x from a 40x scan, 512 level-0 px apart), ``labels.csv`` (slide_id, case_id, center, label (blank for the pool),
split, oracle, true_label (the pool's too), the measured statistics of :data:`STATISTICS`), ``splits/split_0.csv``
(train and test ids, ``gigassl probe --splits``), ``oracle.csv`` (the oracle as a one-dimensional slide embedding of
the labelled slides, ``gigassl probe --embeddings``) and ``config.json``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter
from tqdm import tqdm

from .. import __version__, io
from ..config import MECHANISM_CLASSES, MECHANISMS, FeatSimConfig, choice, refused
from ..evaluation.splits import Split, write_splits
from ..seeding import nearest, rng
from ..files import write_csv_atomic

SPLITS = ("train", "test", "pool")
ENCODER = "featsim"  # the features folder is features_<encoder>/, as TRIDENT names it
TILE_PX, LEVEL0_MAGNIFICATION, TARGET_MAGNIFICATION = 256, 40, 20
PATCH_SIZE_LEVEL0 = TILE_PX * LEVEL0_MAGNIFICATION // TARGET_MAGNIFICATION
STATISTICS = ("target_share", "focal_count", "separated_share", "same_class_adjacency")
_MEANS, _CENTERS, _LATENT, _TILES = 0, 1, 2, 3  # rng streams
_TISSUE_FRACTION = 0.55  # of the grid's sites


# ------------------------------------------------------------------------------------------- the oracle
def oracle_auc(mechanism: str, effect: float) -> float:
    """The oracle's population ROC AUC at ``effect`` (see the module docstring): 0.5 for M0, 0.5 + effect / 2 for
    M2, 1 - (1 - effect)^2 / 2 for M1, M3, M4."""
    if mechanism == "M0":
        return 0.5
    if mechanism == "M2":
        return 0.5 + effect / 2
    return 1 - (1 - effect) ** 2 / 2


def calibrated_effect(mechanism: str, auc: float = 0.85) -> float:
    """The effect at which the oracle's AUC is ``auc`` (the inverse of :func:`oracle_auc`; 0 for M0).

    Raises:
        ConfigError: an unknown mechanism, or ``auc`` outside [0.5, 1].
    """
    choice(mechanism, MECHANISMS, "mechanism")
    if not 0.5 <= auc <= 1:
        raise refused("auc", auc, "a number in [0.5, 1]", "An oracle's AUC lies between chance and 1.")
    if mechanism == "M0":
        return 0.0
    if mechanism == "M2":
        return 2 * auc - 1
    return 1 - math.sqrt(2 * (1 - auc))


def effect_of(config: FeatSimConfig) -> float:
    """``config.effect``, or the calibrated one (oracle AUC 0.85) when it is None."""
    return calibrated_effect(config.mechanism) if config.effect is None else float(config.effect)


@dataclass(frozen=True)
class SlideDraw:
    """What a slide's label draws: ``label`` (0 or 1), ``oracle`` (the mechanism's slide statistic) and ``center``."""

    label: int
    oracle: float
    center: int


def draw_slide(config: FeatSimConfig, split: str, index: int) -> SlideDraw:
    """The label, oracle and centre of slide ``index`` of ``split``, without its tiles (calibrating an effect
    needs only these)."""
    g = rng(config.seed, _LATENT, SPLITS.index(choice(split, SPLITS, "split")), index)
    label = index % 2
    u, carrier, center = g.random(), g.random(), int(g.integers(config.n_centers))
    effect = effect_of(config)
    if config.mechanism == "M2":
        oracle = float(config.focal_tiles if label and carrier < effect else 0)
    else:
        t = (u + effect * label) / (1 + effect)
        low, high = config.share_range
        oracle = low + (high - low) * t if config.mechanism in ("M0", "M1") else t
    return SlideDraw(label, float(oracle), center)


# ------------------------------------------------------------------------------------------- the slide
@dataclass
class Slide:
    """One simulated slide. Shapes: ``features`` (M, F) float32, ``coords`` (M, 2) int64 level-0 (x, y),
    ``sites`` (M, 2) int64 grid (row, col), ``classes`` (M,) int64 in [0, K)."""

    slide_id: str
    split: str
    label: int
    oracle: float
    center: int
    features: np.ndarray
    coords: np.ndarray
    sites: np.ndarray
    classes: np.ndarray


def grid_shape(tiles: int) -> tuple[int, int]:
    """(rows, cols) of the grid a slide's ``tiles`` tissue tiles lie on (4:3, about 55% tissue)."""
    area = math.ceil(tiles / _TISSUE_FRACTION)
    rows = max(4, round(math.sqrt(area * 3 / 4)))
    return rows, max(4, math.ceil(area / rows))


def _smooth(g: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """A standardised Gaussian random field on the grid (white noise filtered with ``sigma`` tiles)."""
    field = gaussian_filter(g.normal(size=shape), sigma, mode="reflect")
    return (field - field.mean()) / (field.std() + 1e-12)


def _top(score: np.ndarray, among: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` indices of ``among`` with the highest ``score`` (ties by position)."""
    return among[np.argsort(-score[among], kind="stable")[:n]]


def class_means(config: FeatSimConfig) -> np.ndarray:
    """The K class means (K, F): unit-variance Gaussian vectors; for M3 the blend C (the last class) is the
    midpoint of A and B (the two before it)."""
    means = rng(config.seed, _MEANS).normal(size=(config.n_classes, config.feature_dim))
    if config.mechanism == "M3":
        means[-1] = (means[-3] + means[-2]) / 2
    return means


def center_map(config: FeatSimConfig, center: int) -> tuple[np.ndarray, np.ndarray]:
    """The affine nuisance of ``center``: (A (F, F), b (F,)), features -> features @ A.T + b; the identity when
    ``center_shift`` is 0."""
    f = config.feature_dim
    if config.center_shift == 0:
        return np.eye(f), np.zeros(f)
    g = rng(config.seed, _CENTERS, center)
    return (np.eye(f) + config.center_shift * g.normal(size=(f, f)) / math.sqrt(f),
            config.center_shift * g.normal(size=f))


def _assign(config: FeatSimConfig, draw: SlideDraw, sites: np.ndarray, shape, g: np.random.Generator) -> np.ndarray:
    """The tissue class of every tile (M,): background classes by the argmax of smooth fields plus per-slide
    weights, then the mechanism's classes over them."""
    m, k = len(sites), config.n_classes
    background = k - MECHANISM_CLASSES[config.mechanism]  # the mechanism's own, the last ones
    fields = np.stack([_smooth(g, shape, config.smoothness)[sites[:, 0], sites[:, 1]] for _ in range(background)])
    classes = np.argmax(fields + config.composition * g.normal(size=(background, 1)), axis=0)
    score = _smooth(g, shape, config.smoothness)[sites[:, 0], sites[:, 1]]
    everyone = np.arange(m)
    if config.mechanism in ("M0", "M1"):
        classes[_top(score, everyone, round(draw.oracle * m))] = background
    elif config.mechanism == "M2":
        focal = nearest(sites, int(g.integers(m)), int(draw.oracle), g)
        classes[focal] = background
    else:
        region = _top(score, everyone, 2 * round(config.region * m / 2))
        inner = _smooth(g, shape, config.smoothness)[sites[:, 0], sites[:, 1]]
        if config.mechanism == "M3":  # A and B as many tiles each in the separated part, C in the rest
            separated = _top(inner, region, 2 * round(draw.oracle * len(region) / 2))
            classes[region] = background + 2
            split = _smooth(g, shape, config.smoothness)[sites[:, 0], sites[:, 1]]
            a = _top(split, separated, len(separated) // 2)
            classes[separated] = background + 1
            classes[a] = background
        else:  # M4: P and Q half each; segregated (smooth score) to intermixed (white noise)
            white = g.normal(size=m)
            angle = draw.oracle * math.pi / 2
            mixed = math.cos(angle) * inner + math.sin(angle) * (white - white[region].mean()) / white[region].std()
            classes[region] = background + 1
            classes[_top(mixed, region, len(region) // 2)] = background
    return classes


def slide_id(split: str, index: int) -> str:
    """The id of slide ``index`` of ``split``: ``train_00003``, ``test_00000``, ``pool_00012``."""
    return f"{split}_{index:05d}"


def simulate_slide(config: FeatSimConfig, split: str, index: int, means: np.ndarray | None = None) -> Slide:
    """Slide ``index`` of ``split`` (train, test or pool): its draw (:func:`draw_slide`), tissue, class map and
    tile features. ``means``: :func:`class_means` of ``config`` (computed when None)."""
    draw = draw_slide(config, split, index)
    g = rng(config.seed, _TILES, SPLITS.index(split), index)
    rows, cols = grid_shape(config.tiles_per_slide)
    r, c = np.mgrid[:rows, :cols]
    blob = _smooth(g, (rows, cols), 2 * config.smoothness) - 2 * (
        ((r - (rows - 1) / 2) / (rows / 2)) ** 2 + ((c - (cols - 1) / 2) / (cols / 2)) ** 2)
    tissue = np.sort(np.argsort(-blob.ravel(), kind="stable")[:config.tiles_per_slide])  # row-major order
    sites = np.stack(np.unravel_index(tissue, (rows, cols)), axis=1).astype(np.int64)
    classes = _assign(config, draw, sites, (rows, cols), g)
    means = class_means(config) if means is None else means
    features = means[classes] + config.tile_noise * g.normal(size=(len(sites), config.feature_dim))
    matrix, shift = center_map(config, draw.center)
    if config.center_shift:
        features = features @ matrix.T + shift
    coords = sites[:, ::-1] * PATCH_SIZE_LEVEL0  # (x, y) = (col, row) in level-0 pixels
    return Slide(slide_id(split, index), split, draw.label, draw.oracle, draw.center, features.astype(np.float32),
                 coords.astype(np.int64), sites, classes.astype(np.int64))


# ------------------------------------------------------------------------------------------- measured statistics
def same_class_adjacency(sites: np.ndarray, classes: np.ndarray, among: tuple[int, ...]) -> float:
    """The share of 4-neighbour pairs of tiles both of a class in ``among`` whose classes are equal (1: the classes
    lie in separate blobs; about 1/len(among) when intermixed at random); NaN without such pairs."""
    where = {tuple(s): k for s, k in zip(sites.tolist(), classes.tolist()) if k in among}
    pairs = same = 0
    for (row, col), k in where.items():
        for neighbour in ((row + 1, col), (row, col + 1)):
            if neighbour in where:
                pairs += 1
                same += where[neighbour] == k
    return same / pairs if pairs else float("nan")


def statistics(slide: Slide, config: FeatSimConfig) -> dict:
    """The measured statistics of :data:`STATISTICS` of one slide (each the realised form of a mechanism's oracle;
    NaN where the mechanism has no such class): the target class's share (M0, M1), the focal tiles (M2), the
    share of the region in the separate types (M3), the same-class adjacency of P and Q (M4)."""
    k, mechanism = config.n_classes, config.mechanism
    out = dict.fromkeys(STATISTICS, float("nan"))
    if mechanism in ("M0", "M1"):
        out["target_share"] = float(np.mean(slide.classes == k - 1))
    elif mechanism == "M2":
        out["focal_count"] = float(np.sum(slide.classes == k - 1))
    elif mechanism == "M3":
        region = slide.classes >= k - 3
        out["separated_share"] = float(np.mean(slide.classes[region] < k - 1))
    else:
        out["same_class_adjacency"] = same_class_adjacency(slide.sites, slide.classes, (k - 2, k - 1))
    return out


# ------------------------------------------------------------------------------------------- the cohort
def slide_plan(config: FeatSimConfig) -> list[tuple[str, int]]:
    """(split, index) of every slide: the training slides, the test set, the pool."""
    sizes = {"train": config.n_train, "test": config.n_test, "pool": config.n_pool}
    return [(split, i) for split in SPLITS for i in range(sizes[split])]


def cohort_table(config: FeatSimConfig) -> pd.DataFrame:
    """The labels table without tiles: slide_id, case_id, center, label (None for the pool), split, oracle, and
    the hidden label of the pool slides in ``true_label``."""
    rows = []
    for split, i in slide_plan(config):
        draw = draw_slide(config, split, i)
        rows.append({"slide_id": slide_id(split, i), "case_id": slide_id(split, i), "center": f"C{draw.center:02d}",
                     "label": None if split == "pool" else draw.label, "split": split, "oracle": draw.oracle,
                     "true_label": draw.label})
    return pd.DataFrame(rows)


def simulate(out_dir, config: FeatSimConfig, progress: bool = True) -> Path:
    """Write the cohort of ``config`` into ``out_dir`` (the files of the module docstring); returns the path of
    ``labels.csv``. The features folder is ``out_dir/features_featsim`` (``gigassl train --bank`` it).

    Raises:
        ConfigError: ``out_dir`` holds a cohort made with other settings (every differing field named).
    """
    from ..provenance import check_folder

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    check_folder(out, "a featsim cohort", {"featsim": dataclasses.asdict(config), "effect": effect_of(config),
                                           "oracle_auc": oracle_auc(config.mechanism, effect_of(config)),
                                           "version": __version__})
    folder = out / f"features_{ENCODER}"
    means = class_means(config)
    coord_attrs = {"patch_size": TILE_PX, "patch_size_level0": PATCH_SIZE_LEVEL0,
                   "level0_magnification": LEVEL0_MAGNIFICATION, "target_magnification": TARGET_MAGNIFICATION,
                   "overlap": 0, "savetodir": str(folder)}
    rows, cols = grid_shape(config.tiles_per_slide)
    table = cohort_table(config)
    measured = []
    for split, i in tqdm(slide_plan(config), desc="simulate", unit="slide", disable=not progress):
        slide = simulate_slide(config, split, i, means)
        io.write_features(folder / f"{slide.slide_id}.h5", slide.features, slide.coords,
                          {"name": slide.slide_id, "savetodir": str(folder), "encoder": ENCODER},
                          {**coord_attrs, "name": slide.slide_id, "level0_width": cols * PATCH_SIZE_LEVEL0,
                           "level0_height": rows * PATCH_SIZE_LEVEL0})
        measured.append(statistics(slide, config))
    table = pd.concat([table, pd.DataFrame(measured)], axis=1)
    table["label"] = table["label"].astype("Int64")
    labels = out / "labels.csv"
    write_csv_atomic(table, labels)
    train, test = (tuple(table.slide_id[table.split == s]) for s in ("train", "test"))
    write_splits([Split(train, test, "split_0")], out / "splits")
    labelled = table[table.split != "pool"]
    io.write_embeddings(out / "oracle.csv", labelled.slide_id, labelled[["oracle"]].to_numpy(np.float32),
                        what="the oracle of a featsim cohort", mechanism=config.mechanism)
    return labels


def oracle_fit_auc(config: FeatSimConfig) -> float:
    """The oracle as a method: a logistic regression on the oracle of the ``n_train`` training slides, its ROC AUC
    on the ``n_test`` test slides (draws only, no tiles: fast). The calibration of ``effect`` uses this alone."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    table = cohort_table(dataclasses.replace(config, n_pool=0))
    train, test = table[table.split == "train"], table[table.split == "test"]
    model = LogisticRegression().fit(train[["oracle"]].to_numpy(), train.label.astype(int))
    return float(roc_auc_score(test.label.astype(int), model.decision_function(test[["oracle"]].to_numpy())))
