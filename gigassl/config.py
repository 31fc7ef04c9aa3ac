"""Frozen configuration of every stage, and the three run profiles ``smoke``, ``demo`` and ``paper``.

This is the one place where parameter values live. Each stage function takes its own config; a notebook's
``parameters`` cell and the CLI options map onto these fields by name, and change them with :func:`override` (a
value left at None keeps the profile's; the book's page functions in :mod:`gigassl.book.stages` take their changes
the same way). Profiles are named instances of :class:`Profile`:

- ``smoke``: a handful of tiny slides; every stage takes seconds (used by the tests);
- ``demo``: the default of ``make book``; the synthetic cohort, sized for a 2-core CPU;
- ``paper``: the paper's parameters (Sec. 3.2, 4.1, 4.2), for real slides and a GPU.

Each config documents its fields in an ``Attributes:`` section, one entry per field: the command line's help
(:mod:`gigassl.options`) is read from there, so a field and its help cannot drift apart. Every config validates
itself when built (``__post_init__``); :func:`choice` is the one check of a value against a list of allowed ones.

This module imports nothing heavy so that ``gigassl --help`` stays instant.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
from dataclasses import dataclass, field

from .errors import ConfigError

# allowed values of the string options (the modules that implement them import these)
ENCODERS = ("resnet18", "efficientnet_lite0")  # built in; any other tile encoder is named module:factory
FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
PRECISIONS = ("auto", "fp32", "bf16")
AUGMENTATION_MODES = ("shared", "independent")
AGGREGATORS = ("sparseconv", "attention", "mean")
BACKENDS = ("torch", "spconv")
AGGREGATOR_INITS = ("tile_embedder", "random")
BN_VIEWS = ("per_view", "joint")
PREPROCESSING = ("l2", "standard", "l2+standard", "none")
MECHANISMS = ("M0", "M1", "M2", "M3", "M4")  # the label mechanisms of gigassl.cohorts.featsim
MECHANISM_CLASSES = {"M0": 1, "M1": 1, "M2": 1, "M3": 3, "M4": 2}  # the tissue classes each mechanism owns
SAMPLINGS = ("random", "local")  # how a view draws its T tiles (gigassl.maps)
PROBE_PROTOCOLS = ("paper", "fair")  # gigassl.evaluation.probe.make_probe
FEW_SHOT_CLASSIFIERS = ("logistic", "knn", "prototype")  # gigassl.evaluation.fewshot


# ------------------------------------------------------------------------------------------------ validation
def refused(what: str, value, allowed: str, fix: str) -> ConfigError:
    """The error of a refused value, in the one form every check uses: ``{what}={value!r} is not allowed: it must
    be {allowed}. {fix}``. The error carries ``what``, ``value`` and ``allowed`` as attributes (the command line
    rewrites ``fix`` to name the option or file key the value came from)."""
    error = ConfigError(f"{what}={value!r} is not allowed: it must be {allowed}. {fix}".rstrip())
    error.what, error.value, error.allowed = what, value, allowed
    return error


def _is_one_of(value, allowed) -> bool:
    try:
        return bool(value in allowed)
    except (TypeError, ValueError):  # a value that cannot be compared (an array) is not one of them
        return False


def _one_of_text(allowed) -> str:
    return "one of " + ", ".join(map(repr, allowed))


def choice(value, allowed: tuple, what: str, fix: str = ""):
    """Return ``value`` if it is one of ``allowed``; else raise the ConfigError that names ``what`` (the option or
    field), the value, the allowed values and ``fix`` (how to change it). The one choice checker of the package:
    the configs' fields (:func:`_validate`) and every module's names (aggregators, encoders, backends, devices,
    TCGA tasks, profiles) go through it.

    >>> choice("mean", ("sparseconv", "attention", "mean"), "aggregator")
    'mean'
    """
    if not _is_one_of(value, allowed):
        raise refused(what, value, _one_of_text(allowed), fix)
    return value


def _int(low: int, high: int | None = None):
    """An integer (not a bool) in [low, high]."""
    text = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
    return (lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= low
            and (high is None or v <= high)), text


def _real(low: float, high: float | None = None, open_low: bool = False, open_high: bool = False):
    """A finite number in the interval (``open_*``: the bound excluded)."""
    left, right = ("(" if open_low else "["), (")" if open_high else "]")
    text = f"a finite number in {left}{low}, {'inf' if high is None else high}{right}"

    def ok(v) -> bool:
        if not isinstance(v, numbers.Real) or isinstance(v, bool) or not math.isfinite(v):
            return False
        above = v > low if open_low else v >= low
        below = high is None or (v < high if open_high else v <= high)
        return above and below

    return ok, text


def _optional(rule):
    ok, text = rule
    return (lambda v: v is None or ok(v)), f"None or {text}"


def _one_of(values: tuple):
    """The rule of a choice field: the membership and the text of :func:`choice`."""
    return (lambda v: _is_one_of(v, values)), _one_of_text(values)


_BOOL = _one_of((True, False))


def _interval(low: float, high: float | None = None, open_low: bool = True):
    """A pair (a, b) of finite numbers with low < a <= b <= high."""
    ok, _ = _real(low, high, open_low=open_low)
    text = f"a pair (a, b) with {low} {'<' if open_low else '<='} a <= b{'' if high is None else f' <= {high}'}"
    return (lambda v: isinstance(v, (tuple, list)) and len(v) == 2 and ok(v[0]) and ok(v[1]) and v[0] <= v[1]), text


def _each(rule, allow_empty: bool = False):
    ok, text = rule
    return ((lambda v: isinstance(v, (tuple, list)) and (allow_empty or len(v) > 0) and all(ok(x) for x in v)),
            f"a {'' if allow_empty else 'non-empty '}list of values, each {text}")


def _validate(config, rules: dict) -> None:
    """Raise ConfigError for the first field of ``config`` that breaks its rule; the error names the field, the
    value, what is allowed, and the option or parameter to change (and carries ``config`` and ``field``)."""
    for name, (ok, allowed) in rules.items():
        value = getattr(config, name)
        try:
            good = bool(ok(value))
        except TypeError:
            good = False
        if not good:
            error = refused(f"{type(config).__name__}.{name}", value, allowed,
                            f"Change the parameter {name!r} (command line: --{name.replace('_', '-')}).")
            error.config, error.field = type(config).__name__, name
            raise error


@dataclass(frozen=True)
class SynthConfig:
    """Synthetic cohort of pyramidal TIFF slides (``gigassl synth``).

    The difficulty fields are documented in :mod:`gigassl.cohorts.synth`; they were calibrated once (on the
    AverageMIL baseline alone, see the book's calibration section) and then frozen.

    Attributes:
        n_slides: labelled slides of the cohort.
        n_centers: centres (acquisition sites, each with its own stain and scanner look), at most n_slides.
        width: level-0 width of a labelled slide, in pixels.
        height: level-0 height of a labelled slide, in pixels.
        mpp: level-0 microns per pixel (0.5: 20x).
        n_levels: pyramid levels, each a 2x reduction (the last one at least 32 px).
        tiff_tile: TIFF tile edge in pixels (a multiple of 16, for JPEG).
        two_slide_cases: fraction of cases with two slides.
        label_fraction: difficulty: fraction (0-1) of the tumour units (of the tissue for brca_like) that show the
            class morphology; the rest shows the class-neutral midpoint.
        effect_size: difficulty: fraction (0-1) of the textbook difference between the classes (0: identical).
        task_effects: difficulty: multipliers of effect_size per task (nsclc_like, rcc_like, brca_like).
            Calibrated once on AverageMIL alone (2026-11-26): with (1, 1, 1) the demo AverageMIL AUC of rcc_like was
            0.60 (< 0.65); with (1, 1.8, 1) it is 0.79 and the others 0.71 and 0.81. Frozen since: no change is made
            because of how Giga-SSL compares.
        center_strength: difficulty: multiplier (0-3) of the centres' stain, colour, blur, noise and JPEG ranges
            (0: all centres alike).
        label_noise: difficulty: fraction (0-1) of the cases, per task, whose manifest label is another class
            than their morphology's.
        artefact_fraction: difficulty: fraction (0-1) of the slides given a tissue fold, a pen mark or an
            out-of-focus region.
        pool_slides: the unlabelled pool: slides with no label, for SSL only (the paper: 11,000 slides for SSL,
            about 1,000 labelled per task). Drawn from their own random stream after the labelled cohort, which
            they leave unchanged.
        pool_width: level-0 width of a pool slide, in pixels.
        pool_height: level-0 height of a pool slide, in pixels.
        seed: random seed (the same seed writes a byte-identical cohort).
        workers: processes rendering slides.
    """

    n_slides: int = 120
    n_centers: int = 8
    width: int = 2048
    height: int = 1536
    mpp: float = 0.5
    n_levels: int = 3
    tiff_tile: int = 256
    two_slide_cases: float = 0.2
    label_fraction: float = 0.5
    effect_size: float = 0.5
    task_effects: tuple[float, float, float] = (1.0, 1.8, 1.0)
    center_strength: float = 1.0
    label_noise: float = 0.05
    artefact_fraction: float = 0.15
    pool_slides: int = 0
    pool_width: int = 1024
    pool_height: int = 768
    seed: int = 0
    workers: int = 2

    def __post_init__(self):
        levels_fit = (isinstance(self.n_levels, int) and self.n_levels >= 1 and isinstance(self.width, int)
                      and isinstance(self.height, int)
                      and min(self.width, self.height, self.pool_width, self.pool_height) >> (self.n_levels - 1) >= 32)
        _validate(self, {
            "n_slides": _int(1), "seed": _int(0), "n_centers": _int(1, max(1, int(self.n_slides)) if isinstance(
                self.n_slides, int) else None), "width": _int(64), "height": _int(64), "mpp": _real(0, open_low=True),
            "n_levels": ((lambda v: levels_fit), f">= 1 with the last level >= 32 px for {self.width}x{self.height} "
                                                 f"(and the pool's {self.pool_width}x{self.pool_height})"),
            "tiff_tile": ((lambda v: isinstance(v, int) and v >= 16 and v % 16 == 0), "a multiple of 16 (JPEG)"),
            "center_strength": _real(0, 3), "task_effects": ((lambda v: len(v) == 3 and all(
                _real(0)[0](x) for x in v)), "three multipliers >= 0 (nsclc_like, rcc_like, brca_like)"),
            **{name: _real(0, 1) for name in ("two_slide_cases", "label_fraction", "effect_size", "label_noise",
                                              "artefact_fraction")},
            "pool_slides": _int(0), "pool_width": _int(64), "pool_height": _int(64), "workers": _int(1),
        })


@dataclass(frozen=True)
class TileConfig:
    """Tissue detection and tiling (``gigassl tile``, Sec. 4.1: non-overlapping tiles at 10x).

    Attributes:
        target_mpp: microns per pixel of the tiles (1.0 ~ 10x).
        tile_px: tile edge in pixels at target_mpp.
        min_tissue: minimum tissue fraction of a kept tile (0-1).
        thumbnail_px: longest side of the thumbnail used for tissue detection, in pixels.
        mpp: level-0 MPP of the slides that record none (openslide.mpp-x, aperio.MPP, TIFF resolution), or of
            every slide with force_mpp; a manifest `mpp` column wins; none: slides must record their own.
        force_mpp: use mpp for every slide, even those that record an MPP.
        workers: processes tiling slides in parallel.
    """

    target_mpp: float = 1.0
    tile_px: int = 224
    min_tissue: float = 0.5
    thumbnail_px: int = 2048
    mpp: float | None = None
    force_mpp: bool = False
    workers: int = 1

    def __post_init__(self):
        _validate(self, {"target_mpp": _real(0, open_low=True), "tile_px": _int(8), "min_tissue": _real(0, 1),
                         "thumbnail_px": _int(64), "mpp": _optional(_real(0, open_low=True)),
                         "force_mpp": _BOOL, "workers": _int(1)})


@dataclass(frozen=True)
class EncoderConfig:
    """The tile embedder e_theta1 (Sec. 3.1): which network, which weights, where it runs.

    Attributes:
        name: tile encoder: resnet18 | efficientnet_lite0 | module:factory (your own, see gigassl.encoders).
        weights: local weights file (torchvision or MoCo for resnet18; a state dict for module:factory); none:
            seeded random init (resnet18) / ImageNet (efficientnet_lite0) / the factory's own.
        device: auto | cuda | mps | cpu (cuda:N for a given GPU).
        batch_size: tiles per forward pass.
        precision: autocast of the encoder: auto | fp32 | bf16 (gigassl.devices.autocast_dtype: auto = bf16 on GPUs
            and bf16-capable CPUs, else fp32).
        seed: seed of the random init.
    """

    name: str = "resnet18"
    weights: str | None = None
    device: str = "auto"
    batch_size: int = 256
    precision: str = "auto"
    seed: int = 0

    def __post_init__(self):
        _validate(self, {"name": ((lambda v: v in ENCODERS or (isinstance(v, str) and bool(FACTORY.match(v)))),
                                  f"one of {', '.join(ENCODERS)}, or module:factory for your own encoder"),
                         "batch_size": _int(1), "precision": _one_of(PRECISIONS),
                         "seed": _int(0)})


@dataclass(frozen=True)
class AugmentConfig:
    """Tile-level augmentation domain A (Sec. 3.1 Step 1; the authors' kornia values).

    Attributes:
        mode: shared (the paper: one draw for all the tiles of a slide) | independent (one draw per tile: the
            "NS" ablation, Table 3).
        brightness: colour jitter: brightness factor range.
        contrast: colour jitter: contrast factor range.
        saturation: colour jitter: saturation factor range.
        hue: colour jitter: hue shift range (0-0.5).
        p_jitter: probability of the colour jitter.
        p_grayscale: probability of turning the tile grey.
        crop_scale: area range of the random resized crop (fractions of the tile).
        p_blur: probability of the Gaussian blur.
        blur_sigma: range of the blur's sigma, in pixels.
        blur_kernel: blur kernel edge in pixels (odd).
        flips: random horizontal and vertical flips.
        rot90: random rotations by multiples of 90 degrees.
    """

    mode: str = "shared"
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.2
    p_jitter: float = 0.8
    p_grayscale: float = 0.2
    crop_scale: tuple[float, float] = (0.5, 1.0)
    p_blur: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 1.0)
    blur_kernel: int = 5
    flips: bool = True
    rot90: bool = True

    def __post_init__(self):
        _validate(self, {
            "mode": _one_of(AUGMENTATION_MODES), **{n: _real(0) for n in ("brightness", "contrast", "saturation")},
            "hue": _real(0, 0.5), **{n: _real(0, 1) for n in ("p_jitter", "p_grayscale", "p_blur")},
            "crop_scale": _interval(0, 1), "blur_sigma": _interval(0),
            "blur_kernel": ((lambda v: isinstance(v, int) and v >= 1 and v % 2 == 1), "an odd integer >= 1"),
            "flips": _BOOL, "rot90": _BOOL,
        })


@dataclass(frozen=True)
class MocoConfig:
    """MoCo v2 pre-training of the tile embedder (``gigassl pretrain-tiles``, Sec. 4.1).

    ``lr`` is MoCo v2's base learning rate for a batch of 256 (0.03); the rate used is ``lr * batch_size / 256``,
    the linear scaling rule MoCo follows (Goyal et al. 2017), so a smaller batch gets a proportionally smaller rate.

    Attributes:
        epochs: training epochs.
        tiles_per_slide: tiles drawn (once, seeded) from each slide's tissue tiles.
        batch_size: tiles per batch.
        lr: learning rate at batch 256; the rate used is lr * batch_size / 256.
        momentum: SGD momentum.
        weight_decay: SGD weight decay.
        ema: momentum of the key encoder.
        queue_size: negative keys in the queue.
        temperature: temperature of the InfoNCE loss.
        proj_dim: output dimension of the projection head.
        bn_splits: shuffled sub-batches of the key encoder (single-device shuffling BN).
        checkpoint_every: write a checkpoint every k epochs.
        max_minutes: stop (and checkpoint) after this wall time; none: no limit.
        heldout_tiles: tiles of slides MoCo did not train on, for the label-free retrieval check.
        precision: autocast of the encoders' forward: auto | fp32 | bf16 (gigassl.devices.autocast_dtype: auto = bf16
            on GPUs and bf16-capable CPUs, else fp32).
        workers: DataLoader processes reading tiles (0: the main process).
        seed: random seed (tile draws, augmentations, init).
    """

    epochs: int = 200
    tiles_per_slide: int = 2000
    batch_size: int = 256
    lr: float = 0.03
    momentum: float = 0.9
    weight_decay: float = 1e-4
    ema: float = 0.999
    queue_size: int = 65536
    temperature: float = 0.2
    proj_dim: int = 128
    bn_splits: int = 8
    checkpoint_every: int = 10
    max_minutes: float | None = None
    heldout_tiles: int = 512
    precision: str = "auto"
    workers: int = 0
    seed: int = 0

    def __post_init__(self):
        _validate(self, {
            "workers": _int(0),
            "epochs": _int(1), "tiles_per_slide": _int(1), "batch_size": _int(2), "lr": _real(0, open_low=True),
            "momentum": _real(0, 1, open_high=True), "weight_decay": _real(0), "ema": _real(0, 1),
            "queue_size": _int(1), "temperature": _real(0, open_low=True), "proj_dim": _int(1), "bn_splits": _int(1),
            "checkpoint_every": _int(1), "max_minutes": _optional(_real(0)), "heldout_tiles": _int(2),
            "precision": _one_of(PRECISIONS), "seed": _int(0),
        })


@dataclass(frozen=True)
class BankConfig:
    """The bank of augmented tile embeddings (``gigassl bank``, Sec. 3.2 "Freezing the tile encoder").

    Attributes:
        augmentations: A, augmentation draws per slide (0: plain embeddings only).
        tiles: N, tiles per draw.
        seed: random seed of the draws.
        workers: DataLoader worker processes reading tiles.
        replacement: a draw's N tiles sampled with replacement (the authors' code: on slides of thousands of tiles
            repeats are rare) or, off, without while the slide holds at least N tiles (each tile at most once;
            the demo's small slides, where with replacement a draw of 32 from 22 tiles repeats most of them;
            gigassl.seeding.sample_indices).
    """

    augmentations: int = 50
    tiles: int = 256
    seed: int = 0
    workers: int = 0
    replacement: bool = True

    def __post_init__(self):
        _validate(self, {"augmentations": _int(0), "tiles": _int(1), "seed": _int(0), "workers": _int(0),
                         "replacement": _BOOL})


@dataclass(frozen=True)
class MapConfig:
    """Sparse maps and slide-level augmentation (Sec. 3.1 Steps 3-4).

    Attributes:
        downsample: level-0 pixels per sparse-map site (paper: 224), or 'tile' for one tile per site.
        slide_aug: slide-level augmentation (off: the Table 3 ablation).
        rotation: random rotations of the map (slide augmentation).
        flips: random flips of the map (slide augmentation).
        scale: per-axis scale range of the slide augmentation (the paper 0.5 2; the authors' code used 0.7 1.3).
        sampling: how a view draws its T tiles, in training and at inference: random (the paper: anywhere in the
            slide, with replacement) | local (beyond the paper: from one neighbourhood, around a random centre tile,
            so that the sparse CNN sees an arrangement of tiles; gigassl.maps.local_tiles).
        neighbourhood: local sampling: the tiles nearest the centre (level-0 distance) the T tiles are drawn from
            without replacement; none: exactly the T nearest.
        replacement: random sampling: a view's T tiles drawn with replacement (the authors' code) or, off, T
            different tiles whenever the draw (or, at inference, the slide) has at least T.
    """

    downsample: int | str = 224
    slide_aug: bool = True
    rotation: bool = True
    flips: bool = True
    scale: tuple[float, float] = (0.5, 2.0)
    sampling: str = "random"
    neighbourhood: int | None = None
    replacement: bool = True

    def __post_init__(self):
        _validate(self, {
            "downsample": ((lambda v: v == "tile" or (_real(0, open_low=True)[0](v))),
                           "a positive number of level-0 pixels per site, or 'tile'"),
            "slide_aug": _BOOL, "rotation": _BOOL, "flips": _BOOL, "scale": _interval(0),
            "sampling": _one_of(SAMPLINGS), "neighbourhood": _optional(_int(1)), "replacement": _BOOL,
        })


@dataclass(frozen=True)
class TrainConfig:
    """Giga-SSL training (``gigassl train``, Sec. 3.1 Steps 3-6, Sec. 4.1).

    Attributes:
        tiles_per_view: T, tiles sampled per view (paper: 5).
        epochs: training epochs.
        steps: optimizer steps to train for (epochs = ceil(steps / steps per epoch)); none: epochs decide.
        batch_size: slides per global batch (paper: 256).
        base_lr: learning rate for batch 256; lr = base_lr * batch_size / 256 (paper: 0.03).
        warmup_epochs: epochs of linear warm-up of the learning rate.
        schedule_epochs: horizon of the cosine decay; none: the training length (the authors: 3000 for a model
            stopped at epoch 1000, so their lr never decays below 0.0226).
        bn_views: per_view: each view its own forward pass and BatchNorm statistics (the authors' code; the paper
            is silent) | joint: one pass over both views.
        aggregator_init: tile_embedder: the sparse layer4 starts from the tile embedder's dense layer4 (the
            paper's "cut f_theta in two") | random: seeded random init.
        temperature: temperature of the NT-Xent loss.
        aggregator: sparseconv | attention | mean.
        backend: sparse convolution backend: torch | spconv.
        checkpoint_every: write a checkpoint every k epochs.
        monitor_every: run the linear-probe monitor every k epochs (0: never).
        device: auto | cuda | mps | cpu.
        workers: DataLoader processes preparing the next steps' views (0: the main process).
        seed: random seed (views, augmentations, init, batch order).
        maps: the sparse maps and the slide-level augmentation (MapConfig).
    """

    tiles_per_view: int = 5
    epochs: int = 1000
    steps: int | None = None
    batch_size: int = 256
    base_lr: float = 0.03
    warmup_epochs: int = 10
    schedule_epochs: int | None = None
    bn_views: str = "per_view"
    aggregator_init: str = "tile_embedder"
    temperature: float = 0.05
    aggregator: str = "sparseconv"
    backend: str = "torch"
    checkpoint_every: int = 100
    monitor_every: int = 0
    device: str = "auto"
    workers: int = 0
    seed: int = 0
    maps: MapConfig = field(default_factory=MapConfig)

    def __post_init__(self):
        _validate(self, {
            "tiles_per_view": _int(1), "epochs": _int(1), "steps": _optional(_int(1)), "batch_size": _int(2),
            "base_lr": _real(0, open_low=True), "warmup_epochs": _int(0), "schedule_epochs": _optional(_int(1)),
            "bn_views": _one_of(BN_VIEWS), "aggregator_init": _one_of(AGGREGATOR_INITS),
            "temperature": _real(0, open_low=True), "aggregator": _one_of(AGGREGATORS), "backend": _one_of(BACKENDS),
            "checkpoint_every": _int(1), "monitor_every": _int(0), "workers": _int(0), "seed": _int(0),
            "maps": ((lambda v: isinstance(v, MapConfig)), "a MapConfig"),
        })


@dataclass(frozen=True)
class EmbedConfig:
    """R-view inference of one embedding per slide (``gigassl embed``, Sec. 4.2 "Default settings").

    Attributes:
        views: R, views per slide (paper: 50).
        tiles_per_view: T, tiles per view (as in training; paper: 5).
        batch_views: views per forward pass.
        device: auto | cuda | mps | cpu.
        seed: random seed of the views.
    """

    views: int = 50
    tiles_per_view: int = 5
    batch_views: int = 4096
    device: str = "auto"
    seed: int = 0

    def __post_init__(self):
        _validate(self, {"views": _int(1), "tiles_per_view": _int(1),
                         "batch_views": _int(1), "seed": _int(0)})


@dataclass(frozen=True)
class ProbeConfig:
    """Linear probe protocol (``gigassl probe``, Sec. 4.2).

    Attributes:
        C: inverse regularisation of the logistic regression (the paper: 10, class-balanced).
        max_iter: iterations of the logistic regression's solver.
        n_splits: splits of each budget: generated ones (case-grouped, stratified), or the first n of the
            authors' TCGA splits.
        test_fraction: fraction of the slides in a generated split's test part.
        budgets: fractions of each training split to train on (e.g. 1.0 0.25).
        train_sizes: tiny training sets of exactly N slides each (e.g. 100 50).
        n_bootstrap: bootstrap resamples of the 95% intervals.
        Cs: the "fair" protocol (one for every representation): preprocessing and C chosen by an inner
            cross-validation on the training slides of each split (gigassl.evaluation.probe.TunedLinearProbe); the C values
            it tries.
        preprocessings: the preprocessings the fair protocol tries: l2 | standard | l2+standard | none.
        inner_splits: folds of the fair protocol's inner cross-validation (grouped by case).
        seed: random seed of the splits and the bootstrap.
    """

    C: float = 10.0
    max_iter: int = 1000
    n_splits: int = 10
    test_fraction: float = 0.25
    budgets: tuple[float, ...] = (1.0, 0.25)
    train_sizes: tuple[int, ...] = (250, 100, 50)
    n_bootstrap: int = 2000
    Cs: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
    preprocessings: tuple[str, ...] = ("l2", "standard", "l2+standard")
    inner_splits: int = 3
    seed: int = 0

    def __post_init__(self):
        _validate(self, {
            "C": _real(0, open_low=True), "max_iter": _int(1), "n_splits": _int(1),
            "test_fraction": _real(0, 1, open_low=True, open_high=True),
            "budgets": _each(_real(0, 1, open_low=True), allow_empty=True), "train_sizes": _each(_int(2), True),
            "n_bootstrap": _int(0), "Cs": _each(_real(0, open_low=True)),
            "preprocessings": _each(_one_of(PREPROCESSING)), "inner_splits": _int(2), "seed": _int(0),
        })


@dataclass(frozen=True)
class DeepMILConfig:
    """Gated attention MIL trained from scratch (Ilse et al. 2018), the DeepMIL column of Table 2.

    Trained as attention MIL usually is (CLAM, TransMIL): tile features standardised with the mean and std of the
    training bags' tiles, Adam, a budget counted in optimizer steps, the validation loss checked every
    ``eval_every`` steps and early stopping after ``patience`` steps without improvement (the best state kept), not
    before ``min_steps`` (CLAM's 50 epochs before early stopping may end a run).

    Attributes:
        hidden: width of the attention MIL's hidden layer.
        attention: width of the gated attention.
        dropout: dropout probability.
        lr: Adam's learning rate.
        weight_decay: Adam's weight decay.
        batch_size: bags per step (CLAM, TransMIL: 1).
        max_steps: optimizer steps at the most.
        eval_every: check the validation loss every k steps.
        patience: steps without a better validation loss before stopping.
        min_steps: no best state and no stop before this step.
        standardize: standardise tile features with the training bags' mean and std.
        val_fraction: fraction of each training split held out for early stopping (stratified, by case).
        max_tiles: tiles per bag (a seeded subsample of larger bags); none: every tile.
        n_splits: splits DeepMIL runs on (the first k of the probe's); none: all.
        device: auto | cuda | mps | cpu.
        seed: random seed (init, dropout, batch order, subsampling).
    """

    hidden: int = 128
    attention: int = 128
    dropout: float = 0.25
    lr: float = 0.0002
    weight_decay: float = 0.0001
    batch_size: int = 1
    max_steps: int = 4000
    eval_every: int = 50
    patience: int = 1000
    min_steps: int = 0
    standardize: bool = True
    val_fraction: float = 0.2
    max_tiles: int | None = 4096
    n_splits: int | None = None
    device: str = "auto"
    seed: int = 0

    def __post_init__(self):
        _validate(self, {
            "hidden": _int(1), "attention": _int(1), "dropout": _real(0, 1, open_high=True),
            "lr": _real(0, open_low=True),
            "weight_decay": _real(0), "batch_size": _int(1), "max_steps": _int(1), "eval_every": _int(1),
            "patience": _int(1), "min_steps": _int(0), "standardize": _BOOL,
            "val_fraction": _real(0, 1, open_high=True), "max_tiles": _optional(_int(1)),
            "n_splits": _optional(_int(1)), "seed": _int(0),
        })


@dataclass(frozen=True)
class FeatSimConfig:
    """A feature-level cohort of known label mechanism (``gigassl simulate``; :mod:`gigassl.cohorts.featsim`, issue #24).

    Attributes:
        mechanism: what the label depends on: M0 nothing (null) | M1 the share of one tissue class (diffuse) | M2 a
            few tiles of a class that label 0 never has (focal) | M3 the within-slide spread at an equal mean
            (heterogeneity) | M4 the arrangement of two classes at an equal composition (intermixed or segregated).
        effect: effect size in [0, 1] (M1, M3, M4: the shift of the slide statistic between the labels, 1 = no
            overlap; M2: the share of label-1 slides carrying the focal tiles); none: the value at which the
            oracle's AUC is 0.85 (gigassl.cohorts.featsim.calibrated_effect). M0 has none.
        n_train: labelled training slides (half of each label).
        n_test: labelled slides of the independent test set (its own random stream per seed).
        n_pool: unlabelled slides, for SSL only (the same distribution; a bigger pool extends a smaller one).
        tiles_per_slide: M, tissue tiles of every slide.
        feature_dim: F, dimension of the tile features.
        n_classes: K, tissue classes (the mechanism's own classes, then at least 2 background ones).
        tile_noise: standard deviation of a tile's feature around its class mean (the class means have unit
            variance per dimension).
        smoothness: length scale of the tissue-class maps, in tiles (a Gaussian filter's sigma).
        composition: standard deviation of the per-slide log-weights of the background classes (how much the
            composition varies from slide to slide, for every label alike).
        share_range: M0, M1: the range of the share of the target class (a pair low high in (0, 1)).
        region: M3, M4: the share of the tissue in the mechanism's region (the same in every slide).
        focal_tiles: M2: the focal tiles of a slide that carries them.
        n_centers: centres (acquisition sites).
        center_shift: strength of the per-centre nuisance, an affine map of the features per centre (0: off).
        seed: generator seed (every slide keyed by seed, split and index).
    """

    mechanism: str = "M1"
    effect: float | None = None
    n_train: int = 100
    n_test: int = 1000
    n_pool: int = 0
    tiles_per_slide: int = 256
    feature_dim: int = 32
    n_classes: int = 6
    tile_noise: float = 2.0
    smoothness: float = 3.0
    composition: float = 1.0
    share_range: tuple[float, float] = (0.05, 0.35)
    region: float = 0.3
    focal_tiles: int = 10
    n_centers: int = 4
    center_shift: float = 0.0
    seed: int = 0

    def __post_init__(self):
        special = MECHANISM_CLASSES.get(self.mechanism, 1)
        effect_ok, effect_text = _optional(_real(0, 1))
        tiles_ok = _int(16)[0](self.tiles_per_slide)
        half = self.tiles_per_slide // 2 if tiles_ok else "?"
        _validate(self, {
            "mechanism": _one_of(MECHANISMS),
            "effect": ((lambda v: effect_ok(v) and (self.mechanism != "M0" or not v)),
                       f"{effect_text} (M0, the null, has no effect: none or 0)"),
            "n_train": _int(2), "n_test": _int(2), "n_pool": _int(0), "tiles_per_slide": _int(16),
            "feature_dim": _int(2),
            "n_classes": _int(special + 2) if self.mechanism in MECHANISMS else _int(3),
            "tile_noise": _real(0, open_low=True), "smoothness": _real(0, open_low=True), "composition": _real(0),
            "share_range": ((lambda v: _interval(0, 1)[0](v) and v[1] < 1),
                            "a pair (low, high) with 0 < low <= high < 1"),
            "region": _real(0, 1, open_low=True, open_high=True),
            "focal_tiles": ((lambda v: _int(1)[0](v) and (not tiles_ok or v <= self.tiles_per_slide // 2)),
                            f"an integer in [1, tiles_per_slide / 2 = {half}]"),
            "n_centers": _int(1), "center_shift": _real(0), "seed": _int(0),
        })


@dataclass(frozen=True)
class EvaluateConfig:
    """Any slide embeddings, head to head (``gigassl evaluate``, issue #26): the settings every set is evaluated with.

    Every set gets the same splits and draws, made from the labels and ``seed`` only
    (:mod:`gigassl.evaluation.headtohead`).

    Attributes:
        n_splits: random splits (case-grouped, stratified) of the linear probe and the patient-level evaluation (the
            paper's 10, Sec. 4.2).
        test_fraction: fraction of the slides in a random split's test part (0.25, as the probe's).
        protocol: the linear probe on the random splits: fair (preprocessing and C chosen by inner cross-validation
            on each split's training slides, the same procedure for every set) | paper (l2 and C = 10, the paper's
            probe of Giga-SSL embeddings).
        shots: few-shot training slides per class, K (1 2 4 8 16: issue #26, the few-shot settings of UNI, Chen et
            al. 2024).
        draws: few-shot draws per K (20: issue #26).
        classifiers: few-shot classifiers: logistic | knn | prototype (UNI's three).
        neighbours: k of the few-shot kNN (20: UNI's eval_knn default, capped at the training slides).
        top_k: retrieval: the k of accuracy at top-k (1 3 5: TITAN's slide retrieval, Acc@1/3/5).
        n_bootstrap: bootstrap resamples of the intervals over draws.
        seed: random seed of every split and draw (the same for every set).
    """

    n_splits: int = 10
    test_fraction: float = 0.25
    protocol: str = "fair"
    shots: tuple[int, ...] = (1, 2, 4, 8, 16)
    draws: int = 20
    classifiers: tuple[str, ...] = FEW_SHOT_CLASSIFIERS
    neighbours: int = 20
    top_k: tuple[int, ...] = (1, 3, 5)
    n_bootstrap: int = 2000
    seed: int = 0

    def __post_init__(self):
        _validate(self, {
            "n_splits": _int(1), "test_fraction": _real(0, 1, open_low=True, open_high=True),
            "protocol": _one_of(PROBE_PROTOCOLS), "shots": _each(_int(1)), "draws": _int(1),
            "classifiers": _each(_one_of(FEW_SHOT_CLASSIFIERS)), "neighbours": _int(1), "top_k": _each(_int(1)),
            "n_bootstrap": _int(0), "seed": _int(0),
        })


@dataclass(frozen=True)
class Profile:
    """A named set of every stage's parameters (the sections of a ``--config`` file are its fields but ``name``).

    Attributes:
        name: smoke | demo | paper.
        synth: the synthetic cohort (gigassl synth).
        tile: tissue detection and tiling (gigassl tile).
        encoder: the tile embedder (gigassl bank; pretrain-tiles takes its device).
        augment: the tile augmentations (gigassl bank, gigassl pretrain-tiles).
        moco: MoCo v2 pre-training of the tile embedder (gigassl pretrain-tiles).
        bank: the bank of augmented tile embeddings (gigassl bank).
        train: Giga-SSL training, with its sparse maps (gigassl train).
        embed: R-view inference (gigassl embed; views for the training monitor).
        probe: the linear probe (gigassl probe; the training monitor's probe).
        deepmil: the DeepMIL baseline (gigassl probe --method deepmil).
        featsim: the feature-level cohort of known mechanisms (gigassl simulate).
        evaluate: any slide embeddings head to head (gigassl evaluate).
    """

    name: str
    synth: SynthConfig
    tile: TileConfig
    encoder: EncoderConfig
    augment: AugmentConfig
    moco: MocoConfig
    bank: BankConfig
    train: TrainConfig
    embed: EmbedConfig
    probe: ProbeConfig
    deepmil: DeepMILConfig
    featsim: FeatSimConfig = field(default_factory=FeatSimConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)


_PAPER = Profile(
    name="paper",
    synth=SynthConfig(),
    tile=TileConfig(target_mpp=1.0, tile_px=224),
    encoder=EncoderConfig(),
    augment=AugmentConfig(),
    moco=MocoConfig(workers=8),
    bank=BankConfig(augmentations=50, tiles=256, workers=8),
    train=TrainConfig(workers=4),
    embed=EmbedConfig(),
    probe=ProbeConfig(),
    # CLAM's schedule in steps for ~800 training slides: batch 1, at most 200 epochs, validation every epoch,
    # patience 20 epochs, no stop before epoch 50
    deepmil=DeepMILConfig(batch_size=1, max_steps=160_000, eval_every=800, patience=16_000, min_steps=40_000),
)

_DEMO = Profile(
    name="demo",
    # the unlabelled pool: 120 slides of the labelled slides' size (issue #23: smaller pool slides made the pool
    # study change two things at once), twice the area of the 240 quarter-size slides it replaces
    synth=SynthConfig(pool_slides=120, pool_width=2048, pool_height=1536),
    tile=TileConfig(target_mpp=1.0, tile_px=64, thumbnail_px=1024, workers=2),
    encoder=EncoderConfig(batch_size=128, device="cpu"),
    augment=AugmentConfig(),
    # lr: MoCo v2's 0.03 at batch 256, scaled to 0.0075 at batch 64; 10 epochs (750 steps): in bfloat16 on a CPU that
    # has it, the time 6 epochs took in float32. Held-out check on 2,048 tiles of the unlabelled pool.
    moco=MocoConfig(
        epochs=10, tiles_per_slide=40, batch_size=64, lr=0.03, ema=0.99, queue_size=1024, bn_splits=4,
        checkpoint_every=2, heldout_tiles=2048,
    ),
    # without replacement (the authors' code draws with it, on slides of thousands of tiles where repeats are
    # rare): on the demo's slides of tens of tiles, a draw of 32 with replacement repeats tiles, and the two views
    # of a slide then share tiles (issue #23)
    bank=BankConfig(augmentations=8, tiles=32, replacement=False),
    # base_lr: the paper's 0.03 (x 32/256) made the demo training diverge, then collapse (loss at log(2B - 1), the
    # collapse indicator at 0.01); 0.01 trains without collapse. Chosen on the SSL loss and collapse curves only.
    train=TrainConfig(
        epochs=60, batch_size=32, base_lr=0.01, warmup_epochs=5, checkpoint_every=20, device="cpu",
        maps=MapConfig(downsample="tile", replacement=False),
    ),
    embed=EmbedConfig(views=50, device="cpu"),
    probe=ProbeConfig(train_sizes=(80, 40, 20)),
    # DeepMIL on 5 of the 10 splits (the CPU budget; the book says so): bags of 8 per step; CLAM's schedule in steps
    # for the ~72 bags a training split fits on (9 steps an epoch): at most 1,000 steps (about 110 epochs),
    # validation every 10 steps, patience 180 steps (20 epochs), no stop before step 450 (50 epochs)
    deepmil=DeepMILConfig(batch_size=8, max_steps=1000, eval_every=10, patience=180, min_steps=450, n_splits=5,
                          device="cpu"),
)

_SMOKE = Profile(
    name="smoke",
    synth=SynthConfig(n_slides=8, n_centers=2, width=768, height=512, n_levels=2, workers=1, pool_slides=2,
                      pool_width=768, pool_height=512),
    tile=TileConfig(target_mpp=1.0, tile_px=32, thumbnail_px=512),
    encoder=EncoderConfig(batch_size=64, device="cpu"),
    augment=AugmentConfig(),
    moco=MocoConfig(
        epochs=2, tiles_per_slide=8, batch_size=16, queue_size=64, bn_splits=2, checkpoint_every=1, heldout_tiles=32,
    ),
    bank=BankConfig(augmentations=3, tiles=8, replacement=False),
    train=TrainConfig(
        epochs=3, batch_size=4, warmup_epochs=1, checkpoint_every=3, device="cpu",
        maps=MapConfig(downsample="tile", replacement=False),
    ),
    embed=EmbedConfig(views=4, device="cpu"),
    probe=ProbeConfig(n_splits=3, test_fraction=0.5, budgets=(1.0, 0.5), train_sizes=(4,), n_bootstrap=200),
    deepmil=DeepMILConfig(max_steps=6, eval_every=2, patience=4, batch_size=4, device="cpu"),
    featsim=FeatSimConfig(n_train=8, n_test=8, n_pool=2, tiles_per_slide=48, focal_tiles=4),
    evaluate=EvaluateConfig(n_splits=3, test_fraction=0.5, shots=(1, 2), draws=3, n_bootstrap=200),
)

PROFILES: dict[str, Profile] = {p.name: p for p in (_SMOKE, _DEMO, _PAPER)}


def get_profile(name: str) -> Profile:
    """Return the profile called ``name`` (``smoke``, ``demo`` or ``paper``)."""
    return PROFILES[choice(name, tuple(PROFILES), "profile", "Pass one of them to --profile.")]


def _reachable(config) -> dict[str, tuple[str, ...]]:
    """{name: path} of every field :func:`override` reaches in ``config``: its own fields (path ``(name,)``), then
    the fields of its nested configs by their own names (``slide_aug`` -> ``("maps", "slide_aug")``), as the command
    line flattens them. A nested name the config itself has, or that two nested configs share, is not reached by
    its own name (the config's own field wins; pass the nested config whole, ``maps=``)."""
    own = {f.name: (f.name,) for f in dataclasses.fields(config)}
    seen: dict[str, list[tuple[str, ...]]] = {}
    for name in own:
        value = getattr(config, name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            for inner, path in _reachable(value).items():
                seen.setdefault(inner, []).append((name, *path))
    return {**{n: paths[0] for n, paths in seen.items() if len(paths) == 1 and n not in own}, **own}


def override(config, **changes):
    """Return ``config`` with ``changes`` applied: the one way a caller's values (a CLI option, a notebook parameter,
    a stage function's keyword) meet a profile's.

    A change given as ``None`` (an option or a parameter left unset) keeps the config's value; any other value
    replaces it, checked as the config checks itself. A field of a nested config is reached by its own name, as on
    the command line: ``override(train, slide_aug=False)`` is ``replace(train, maps=replace(train.maps,
    slide_aug=False))``. A value cannot be set back to ``None`` this way: use :func:`dataclasses.replace`.

    Raises:
        ConfigError: a change names a field the config (and its nested configs) does not have, even when given as
            ``None`` (a misspelt parameter is an error, not a silent default); the error lists the allowed names.
            Or a value the config refuses (:func:`_validate`).

    >>> override(TrainConfig(), bn_views=None, aggregator="mean", slide_aug=False).maps.slide_aug
    False
    """
    reachable = _reachable(config)
    unknown = sorted(set(changes) - set(reachable))
    if unknown:
        raise refused(f"{type(config).__name__} field name", unknown[0] if len(unknown) == 1 else unknown,
                      _one_of_text(sorted(reachable)), "Check the spelling, or pass the value where it belongs "
                      "(a page parameter that is not a config field goes to the page function by its own name).")
    return _apply_paths(config, {reachable[k]: v for k, v in changes.items() if v is not None})


def _apply_paths(config, changes: dict):
    """``config`` with ``changes`` ({path: value}) applied, each nested config rebuilt once (and so validated)."""
    direct = {path[0]: value for path, value in changes.items() if len(path) == 1}
    for name in {path[0] for path in changes if len(path) > 1}:
        inner = {path[1:]: value for path, value in changes.items() if len(path) > 1 and path[0] == name}
        direct[name] = _apply_paths(direct.get(name, getattr(config, name)), inner)
    return dataclasses.replace(config, **direct) if direct else config


# the command line's own starting values over a profile's (profile < these < --config file < options): the command
# ``gigassl probe`` runs one budget, the whole training split, unless told otherwise (--budget F, --train-size N,
# --budgets/--train-sizes or the file); the profiles' grids of budgets are the notebooks'.
CLI_PRESETS: dict[str, dict[str, object]] = {"probe": {"budgets": (1.0,), "train_sizes": ()}}
