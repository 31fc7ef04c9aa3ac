"""Synthetic cohort of H&E-like pyramidal TIFF slides with three known slide-level tasks (``gigassl synth``).

Each slide is drawn procedurally at its level-0 magnification (``mpp`` um/px; 0.5 in ``demo``, about 20x): tissue
islands on glass, carcinoma units (glands around a lumen, or solid nests) in a fibrous eosinophilic stroma with
fibroblasts and lymphocytes. Hematoxylin and eosin concentrations are composed in optical density space and turned
into colour by Beer-Lambert (``RGB = white * exp(-(c_H * h + c_E * e))``), so a centre's stain vectors, stain amounts
and scanner change every pixel of its slides. Slides are tiled JPEG pyramidal TIFFs (:func:`write_pyramid_tiff`).

The tasks mimic the paper's subtyping tasks (Sec. 4.2, Tab. 1, after Chen et al.), one mechanism each, so that they
are independent; each acts on many small regions of a slide and is subtle in any one tile:

- ``nsclc_like`` ``glandular | solid`` (50/50 %, like LUAD/LUSC): architecture, the probability that a tumour unit
  is a gland rather than a solid nest: 0.5 +/- 0.45 * effect_size.
- ``rcc_like`` ``clear_cytoplasm | large_nuclei | wrinkled_halo`` (55/32/13 %, like the RCC subtypes): the tumour
  cells' nuclear size and elongation, cytoplasm clearing, perinuclear halo and wrinkled outline (table ``_RCC``).
- ``brca_like`` ``lymphocyte_sparse | lymphocyte_dense`` (80/20 %, like ductal/lobular): lymphocyte density, times
  exp(-1.0 * effect_size) or exp(+1.6 * effect_size).

A case's labels are drawn per task independently (exact class proportions, shuffled); its one or two slides share
them and its centre. Centre signatures (``C00``, ...) form a Latin hypercube, so centres are spread evenly: stain
amounts and hues, RGB cast, glass level, blur or sharpening, noise and JPEG quality. Each slide adds nuisances of its
own (tissue and tumour amount, cell density, stain amount and hue, lymphocyte density).

Difficulty parameters (fields of :class:`gigassl.config.SynthConfig`):

- ``label_fraction`` (fraction 0-1 of the tumour units, ~ the tumour area; of the tissue area for ``brca_like``):
  the part showing the class morphology, chosen by one smooth random map per task (patches of ~70 um spread over
  the slide); the rest shows the class-neutral midpoint.
- ``effect_size`` (fraction 0-1 of the textbook difference): class parameters are ``neutral + effect_size *
  (prototype - neutral)``; 0 makes the classes identical, 1 textbook-distinct. ``task_effects`` (three
  multipliers >= 0, in the order nsclc_like, rcc_like, brca_like) scale it per task (the result clipped to 1).
- ``center_strength`` (multiplier >= 0 of the centre ranges): at 1, log stain amounts +/-0.3 (H) and +/-0.35 (E),
  stain hue tilts +/-0.3, RGB cast +/-3 %, glass 244 +/- 8 grey levels, blur sigma up to 1.2 px or sharpening, noise
  sd 2.5 +/- 1.5, JPEG quality 85 +/- 10; 0 makes all centres alike.
- ``label_noise`` (fraction 0-1 of the cases, per task; at least one case when > 0): manifest label replaced by
  another class while the morphology follows the true one, so even a perfect reader of the morphology errs.
- ``artefact_fraction`` (fraction 0-1 of the slides): slides given one or two of tissue fold, pen mark (green, blue
  or black) and out-of-focus region.

``cohort.json`` beside the manifest records the config, tasks, priors, centre signatures and flipped cases.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
from scipy import ndimage
from tqdm import tqdm  # not tqdm.auto, which warns in kernels without ipywidgets

from .config import SynthConfig
from .errors import ConfigError
from .utils import atomic_path, die_with_parent, rng, write_csv_atomic, write_text_atomic

TASKS: dict[str, tuple[str, ...]] = {
    "nsclc_like": ("glandular", "solid"),
    "rcc_like": ("clear_cytoplasm", "large_nuclei", "wrinkled_halo"),
    "brca_like": ("lymphocyte_sparse", "lymphocyte_dense"),
}
PRIORS: dict[str, tuple[float, ...]] = {
    "nsclc_like": (0.5, 0.5), "rcc_like": (0.55, 0.32, 0.13), "brca_like": (0.8, 0.2),
}
COLUMNS = ("slide_id", "path", "case_id", "center", *TASKS)

_COHORT, _CENTERS, _SLIDE, _POOL = 1, 2, 3, 4  # rng streams
_H = np.array([0.65, 0.70, 0.29]) / np.linalg.norm([0.65, 0.70, 0.29])  # hematoxylin OD per unit (Ruifrok)
_E = np.array([0.07, 0.99, 0.11]) / np.linalg.norm([0.07, 0.99, 0.11])  # eosin
_INKS = np.array([[1.2, 0.35, 1.0], [1.3, 0.8, 0.2], [1.6, 1.6, 1.5]], np.float32)  # green, blue, black OD
_GLAND_P = (0.5 + 0.45, 0.5 - 0.45)  # nsclc_like: P(unit is a gland) per class at effect_size 1
# rcc_like per class at effect_size 1: nucleus scale, aspect ratio, cytoplasm clearing, halo, P(wrinkled)
_RCC = np.array([[0.80, 1.10, 0.85, 0.0, 0.05], [1.30, 1.15, 0.05, 0.0, 0.05], [1.00, 1.60, 0.35, 0.8, 0.85]])
_BRCA_LOG = (-1.0, 1.6)  # brca_like: log lymphocyte density factor per class at effect_size 1
_N_ANG = 12  # orientations of the nucleus stamp library


@dataclass(frozen=True)
class CenterStyle:
    """One centre's staining and scanner signature (log stain amounts/tilts, cast, glass level, optics)."""

    h_amount: float
    e_amount: float
    h_tilt: float
    e_tilt: float
    cast: tuple[float, float, float]
    white: float
    sharpness: float  # > 0: Gaussian blur sigma (px); < 0: unsharp-mask amount
    noise: float
    quality: int


@dataclass(frozen=True)
class SlideSpec:
    """What one worker needs to draw one slide: its index (the rng key), centre and true class indices."""

    index: int
    path: str
    center: int
    labels: tuple[int, ...]
    artefacts: bool


def write_pyramid_tiff(path, rgb: np.ndarray, mpp: float | None, n_levels: int, tile: int = 256,
                       quality: int = 90, resolution_unit: str = "CENTIMETER") -> None:
    """Write ``rgb`` as a tiled JPEG pyramidal TIFF that OpenSlide opens with ``n_levels`` levels.

    Levels are 2x area-averaged reductions stored as pages of the main IFD chain (subfiletype 1), the only layout
    OpenSlide's generic-TIFF reader sees as levels. ``mpp`` (um/px at level 0) goes to the resolution tags in
    pixels per centimetre (``resolution_unit="INCH"``: per inch); ``None`` writes none. No date or software tag, so equal inputs give equal bytes. JPEG
    tiles are stored YCbCr 4:2:0, the TIFF convention for JPEG RGB.

    Shape: rgb (H, W, 3) uint8.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ConfigError(f"write_pyramid_tiff needs an (H, W, 3) uint8 array; got {rgb.shape} {rgb.dtype}.")
    if n_levels < 1 or min(rgb.shape[:2]) >> (n_levels - 1) < 1:
        raise ConfigError(f"n_levels={n_levels} does not fit a {rgb.shape[1]}x{rgb.shape[0]} image; use fewer.")
    if tile < 16 or tile % 16:
        raise ConfigError(f"TIFF tile edge must be a multiple of 16 (JPEG blocks); got {tile}. Use e.g. 256.")
    if mpp is not None and not mpp > 0:
        raise ConfigError(f"mpp must be > 0 (microns per pixel) or None; got {mpp}.")
    with atomic_path(path) as tmp, tifffile.TiffWriter(tmp) as tif:
        level = rgb
        for k in range(n_levels):
            per_unit = {"CENTIMETER": 1e4, "INCH": 25400.0}[resolution_unit]
            res = {} if mpp is None else {"resolution": (per_unit / (mpp * 2**k),) * 2, "resolutionunit": resolution_unit}
            tif.write(level, tile=(tile, tile), photometric="rgb", compression="jpeg",
                      compressionargs={"level": int(quality)}, subfiletype=1 if k else 0, metadata=None,
                      software=False, **res)
            h, w = level.shape[0] // 2 * 2, level.shape[1] // 2 * 2
            level = level[:h, :w].reshape(h // 2, 2, w // 2, 2, 3).mean((1, 3), dtype=np.float32)  # area average
            level = np.rint(level).astype(np.uint8)


def plan_cohort(config: SynthConfig) -> pd.DataFrame:
    """The cohort before any pixel is drawn: cases, centres, slides, true and manifest labels, artefacts.

    Returns one row per slide: the manifest columns (labels as class names, after label noise), then
    ``true_<task>`` (the class the morphology follows) and ``artefacts`` (bool).
    """
    g = rng(config.seed, _COHORT)
    n, c = config.n_slides, config.n_centers
    n_cases = min(n, max(c, int(round(n / (1.0 + config.two_slide_cases)))))
    doubled = np.zeros(n_cases, bool)
    doubled[g.choice(n_cases, n - n_cases, replace=False)] = True
    weights = g.dirichlet(np.full(c, 3.0))
    centers = g.permutation(np.concatenate([np.arange(c), g.choice(c, n_cases - c, p=weights)]))
    true, noisy = {}, {}
    for task, prior in PRIORS.items():
        k = len(prior)
        counts = np.floor(np.array(prior) * n_cases).astype(int)
        counts[np.argsort(counts - np.array(prior) * n_cases, kind="stable")[: n_cases - counts.sum()]] += 1
        while n_cases >= k and counts.min() == 0:  # every class present when there are enough cases
            counts[np.argmin(counts)] += 1
            counts[np.argmax(counts)] -= 1
        true[task] = g.permutation(np.repeat(np.arange(k), counts))
        n_flip = max(1, int(round(config.label_noise * n_cases))) if config.label_noise > 0 else 0
        flip = g.choice(n_cases, n_flip, replace=False)
        noisy[task] = true[task].copy()
        noisy[task][flip] = (true[task][flip] + g.integers(1, k, n_flip)) % k
    case_of = np.repeat(np.arange(n_cases), 1 + doubled)
    art = np.zeros(n, bool)
    art[g.choice(n, int(round(config.artefact_fraction * n)), replace=False)] = True
    digits = max(4, len(str(n)))
    frame = pd.DataFrame({
        "slide_id": [f"S{i + 1:0{digits}d}" for i in range(n)],
        "path": [f"slides/S{i + 1:0{digits}d}.tiff" for i in range(n)],
        "case_id": [f"P{j + 1:0{digits}d}" for j in case_of],
        "center": [f"C{centers[j]:02d}" for j in case_of],
        **{t: [TASKS[t][noisy[t][j]] for j in case_of] for t in TASKS},
        **{f"true_{t}": [TASKS[t][true[t][j]] for j in case_of] for t in TASKS},
        "artefacts": art,
    })
    if config.pool_slides:
        frame = pd.concat([frame, _plan_pool(config, digits)], ignore_index=True)
    return frame


def _plan_pool(config: SynthConfig, digits: int) -> pd.DataFrame:
    """The unlabelled pool: ``pool_slides`` slides (``U0001``, ...), one case each, centres drawn in proportion to
    the labelled cohort's, true classes drawn from the priors; their label columns are empty. Drawn from the rng
    stream ``_POOL``, so the labelled cohort does not change."""
    g = rng(config.seed, _POOL)
    n = config.pool_slides
    digits = max(digits, len(str(n)))
    ids = [f"U{i + 1:0{digits}d}" for i in range(n)]
    return pd.DataFrame({
        "slide_id": ids, "path": [f"slides/{i}.tiff" for i in ids],
        "case_id": [f"Q{i + 1:0{digits}d}" for i in range(n)],
        "center": [f"C{c:02d}" for c in g.integers(0, config.n_centers, n)],
        **{t: [None] * n for t in TASKS},
        **{f"true_{t}": [TASKS[t][k] for k in g.choice(len(p), n, p=p)] for t, p in PRIORS.items()},
        "artefacts": g.random(n) < config.artefact_fraction,
    })


def center_styles(config: SynthConfig) -> list[CenterStyle]:
    """Each centre's signature: a Latin hypercube over the ranges documented above, scaled by center_strength."""
    g = rng(config.seed, _CENTERS)
    c, s = config.n_centers, config.center_strength
    u = (np.stack([g.permutation(c) for _ in range(10)], 1) + g.random((c, 10))) / c * 2 - 1  # in [-1, 1]
    return [CenterStyle(
        h_amount=0.3 * s * v[0], e_amount=0.35 * s * v[1], h_tilt=0.3 * s * v[2], e_tilt=0.3 * s * v[3],
        cast=tuple(float(x) for x in np.exp(0.03 * s * np.array([v[4], v[5], -v[4] - v[5]]) / 1.5)),
        white=float(np.clip(244 + 8 * s * v[6], 200, 255)), sharpness=float(0.75 * s * v[7] + 0.45 * s),
        noise=float(max(0.0, 2.5 + 1.5 * s * v[8])), quality=int(np.clip(round(85 + 10 * s * v[9]), 50, 98)),
    ) for v in u]


def synthesize(out_dir, config: SynthConfig, progress: bool = True) -> Path:
    """Write ``out_dir/slides/*.tiff``, ``out_dir/manifest.csv`` and ``out_dir/cohort.json``; return the manifest path.

    Slides are drawn in ``config.workers`` processes; every random draw comes from ``rng(seed, stream, index)``,
    so the same config gives byte-identical files whatever the scheduling. A stopped run resumes: when
    ``out_dir/cohort.json`` records the same config, slides already written are kept (each appears only complete).
    """
    frame = plan_cohort(config)
    styles = center_styles(config)
    out = Path(out_dir)
    (out / "slides").mkdir(parents=True, exist_ok=True)
    record = out / "cohort.json"
    def identity(cfg: dict) -> dict:  # what decides the pixels: everything but the number of worker processes
        return {k: v for k, v in cfg.items() if k != "workers"}

    same = record.exists() and identity(json.loads(record.read_text()).get("config") or {}) == identity(json.loads(
        json.dumps(dataclasses.asdict(config))))
    if not same:  # another cohort (or none) was here: record this one first, so that a stopped run can resume
        write_text_atomic(record, json.dumps({"config": dataclasses.asdict(config)}, indent=1) + "\n")
    specs = [SlideSpec(i, str(out / row.path), int(row.center[1:]),
                       tuple(TASKS[t].index(getattr(row, f"true_{t}")) for t in TASKS), bool(row.artefacts))
             for i, row in enumerate(frame.itertuples())]
    pool_config = dataclasses.replace(config, width=config.pool_width, height=config.pool_height)
    jobs = [(spec, styles[spec.center], config if spec.index < config.n_slides else pool_config)
            for spec in specs if not (same and Path(spec.path).exists())]
    with tqdm(total=len(jobs), desc="synth", unit="slide", disable=not progress) as bar:
        if config.workers <= 1 or len(jobs) <= 1:  # nothing (a finished cohort, resumed) or one slide left
            for job in jobs:
                _make_slide(job)
                bar.update()
        else:
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(min(config.workers, len(jobs)), mp_context=ctx,
                                     initializer=die_with_parent) as pool:
                try:
                    for future in as_completed([pool.submit(_make_slide, job) for job in jobs]):
                        future.result()
                        bar.update()
                except BaseException:  # a failed slide or Ctrl-C: do not draw the remaining slides
                    pool.shutdown(cancel_futures=True)
                    raise
    manifest = out / "manifest.csv"
    write_csv_atomic(frame[list(COLUMNS)], manifest)
    info = {"config": dataclasses.asdict(config), "tasks": TASKS, "priors": PRIORS,
            "centers": {f"C{i:02d}": dataclasses.asdict(s) for i, s in enumerate(styles)},
            "flipped_cases": {t: sorted(set(frame.case_id[frame[t] != frame[f"true_{t}"]])) for t in TASKS}}
    write_text_atomic(out / "cohort.json", json.dumps(info, indent=1) + "\n")
    return manifest


def _make_slide(job: tuple[SlideSpec, CenterStyle, SynthConfig]) -> None:
    """Draw one slide and write it (worker entry point)."""
    spec, style, cfg = job
    write_pyramid_tiff(spec.path, _render(spec, style, cfg), cfg.mpp, cfg.n_levels, cfg.tiff_tile, style.quality)


def _field(g: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Smooth zero-mean unit-variance random field on a grid; ``sigma`` is its correlation length in cells."""
    f = ndimage.gaussian_filter(g.standard_normal(shape), sigma, mode="wrap")
    return ((f - f.mean()) / (f.std() + 1e-12)).astype(np.float32)


def _up(f: np.ndarray, shape: tuple[int, int], step: int) -> np.ndarray:
    """Bilinear upsampling of a grid with one cell every ``step`` px. Shape: (h, w) -> ``shape``."""
    out = f
    for axis, n in enumerate(shape):
        pos = np.arange(n, dtype=np.float32) / step
        i = pos.astype(np.int64)
        w = (pos - i).reshape((-1, 1) if axis == 0 else (1, -1))
        out = np.take(out, i, axis=axis) * (1 - w) + np.take(out, i + 1, axis=axis) * w
    return out


def _at(f: np.ndarray, y: np.ndarray, x: np.ndarray, step: int) -> np.ndarray:
    """Values of a grid field (one cell every ``step`` px) at pixel positions ``y, x``. Shape: (n,)."""
    return ndimage.map_coordinates(f, [np.asarray(y) / step, np.asarray(x) / step], order=1, mode="nearest")


@functools.lru_cache(maxsize=8192)
def _ellipse(r2: int, asp5: int, ang: int, wrinkled: bool, ring: bool = False) -> np.ndarray:
    """Soft ellipse stamp of mean radius r2/2 px, aspect asp5/5, angle ang*pi/_N_ANG, with a darker rim
    (chromatin at the nuclear membrane) or a wrinkled outline; ``ring`` gives only a 1.5 px outline. Shape: (s, s)."""
    r, asp, t = r2 / 2, asp5 / 5, ang * np.pi / _N_ANG
    a, b = r * np.sqrt(asp), r / np.sqrt(asp)
    half = int(np.ceil(a * 1.3)) + 2
    y, x = np.mgrid[-half:half + 1, -half:half + 1].astype(np.float32)
    u, v = (x * np.cos(t) + y * np.sin(t)) / a, (-x * np.sin(t) + y * np.cos(t)) / b
    rho = np.sqrt(u * u + v * v)
    if wrinkled:
        phi = np.arctan2(v, u)
        rho = rho / (1 + 0.16 * np.cos(3 * phi + 0.7) + 0.1 * np.cos(5 * phi + 2.1))
    edge = np.clip((1 - rho) * r / 1.2 + 0.5, 0, 1)
    if ring:
        return (edge * np.clip(1.5 - (1 - rho) * r, 0, 1)).astype(np.float32)
    return (edge * (0.8 + 0.3 * np.exp(-(((rho - 0.85) / 0.12) ** 2)))).astype(np.float32)


def _paste(canvas: np.ndarray, stamp: np.ndarray, cy: float, cx: float, value: float) -> None:
    """``canvas = max(canvas, value * stamp)`` with the stamp centred on (cy, cx), clipped at the borders."""
    half = stamp.shape[0] // 2
    y0, x0 = int(round(cy)) - half, int(round(cx)) - half
    ys, xs = max(y0, 0), max(x0, 0)
    ye, xe = min(y0 + stamp.shape[0], canvas.shape[0]), min(x0 + stamp.shape[1], canvas.shape[1])
    if ys < ye and xs < xe:
        sub = canvas[ys:ye, xs:xe]
        np.maximum(sub, value * stamp[ys - y0:ye - y0, xs - x0:xe - x0], out=sub)


def _nucleus(radius: float, asp: float, angle: float, wrinkled: bool = False, ring: bool = False) -> np.ndarray:
    """The library stamp closest to a nucleus of ``radius`` px, aspect ``asp`` and long-axis ``angle`` (rad)."""
    ang = int(round(angle / np.pi * _N_ANG)) % _N_ANG
    return _ellipse(max(2, int(round(radius * 2))), min(25, max(5, int(round(asp * 5)))), ang, bool(wrinkled), ring)


def _top(values: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean mask of the ``round(fraction * n)`` largest values. Shape: (n,)."""
    mask = np.zeros(len(values), bool)
    mask[np.argsort(-values, kind="stable")[: int(round(fraction * len(values)))]] = True
    return mask


def _units(g: np.random.Generator, spec: SlideSpec, cfg: SynthConfig, cy: np.ndarray, cx: np.ndarray,
           carry: list[np.ndarray], density: float) -> tuple[np.ndarray, ...]:
    """Draw the carcinoma units centred on (cy, cx): glands (a ring of columnar cells around a lumen) or solid
    nests; ``carry[t][i]``: unit i shows task t's class morphology (else the neutral one).

    Returns epithelium, lumen, cytoplasm eosin, nuclei and perinuclear halo maps. Shape: 5 x (H, W) float32.
    """
    H, W, um = cfg.height, cfg.width, 1.0 / cfg.mpp
    e_gland, e_rcc, _ = task_effects(cfg)
    epi, lumen, cyto, nuc, halo = (np.zeros((H, W), np.float32) for _ in range(5))
    neutral = _RCC.mean(0)
    for i in range(len(cy)):
        p_gland = 0.5 + e_gland * ((_GLAND_P[spec.labels[0]] if carry[0][i] else 0.5) - 0.5)
        scale, asp0, clear, halo_amt, p_wr = neutral + (e_rcc * (_RCC[spec.labels[1]] - neutral) if carry[1][i] else 0)
        gland = g.random() < p_gland
        ro = (g.uniform(8, 18) + g.uniform(10, 14)) * um if gland else g.uniform(20, 38) * um
        rl = ro - g.uniform(10, 14) * um * scale if gland else 0.0
        uasp, t, ph = g.uniform(1.0, 1.3 if gland else 1.6), g.uniform(0, np.pi), g.uniform(0, 2 * np.pi, 2)
        a, b, half = ro * np.sqrt(uasp), ro / np.sqrt(uasp), int(ro * np.sqrt(uasp) * 1.25) + 3
        y0, x0 = int(cy[i]), int(cx[i])
        ys, ye, xs, xe = max(y0 - half, 0), min(y0 + half + 1, H), max(x0 - half, 0), min(x0 + half + 1, W)
        yy, xx = np.mgrid[ys - y0:ye - y0, xs - x0:xe - x0].astype(np.float32)
        u, v = (xx * np.cos(t) + yy * np.sin(t)) / a, (-xx * np.sin(t) + yy * np.cos(t)) / b
        phi = np.arctan2(v, u)
        rho = np.sqrt(u * u + v * v) / (1 + 0.08 * np.cos(2 * phi + ph[0]) + 0.06 * np.cos(3 * phi + ph[1]))
        outer = np.clip((1 - rho) * ro / 1.5 + 0.5, 0, 1)
        inner = np.clip((rl / ro - rho) * ro / 1.5 + 0.5, 0, 1) if gland else 0 * outer
        box = np.s_[ys:ye, xs:xe]
        np.maximum(epi[box], outer - inner, out=epi[box])
        np.maximum(lumen[box], inner, out=lumen[box])
        np.maximum(cyto[box], (outer - inner) * (1 - clear), out=cyto[box])
        cs = (9 + 4 * clear) * scale * um / np.sqrt(density)  # cell spacing
        if gland:  # one ring of columnar cells, long axes radial
            rn = (rl + ro) / 2 / ro
            n_cells = max(6, int(2 * np.pi * rn * ro / (0.8 * cs)))
            ang = np.arange(n_cells) * 2 * np.pi / n_cells + g.uniform(0, 2 * np.pi)
            rad = rn * (1 + 0.08 * np.cos(2 * ang + ph[0]) + 0.06 * np.cos(3 * ang + ph[1]))
            pu, pv = rad * a * np.cos(ang), rad * b * np.sin(ang)
            py, px = cy[i] + pu * np.sin(t) + pv * np.cos(t), cx[i] + pu * np.cos(t) - pv * np.sin(t)
            orient, asp_cell = np.arctan2(py - cy[i], px - cx[i]), 1.25 * asp0
        else:  # a solid nest of cells on a jittered hexagonal lattice
            gy, gx = np.meshgrid(np.arange(-half, half, cs * 0.87), np.arange(-half, half, cs), indexing="ij")
            gx = gx + (np.arange(gy.shape[0])[:, None] % 2) * cs / 2
            dy, dx = gy.ravel() + g.normal(0, 0.12 * cs, gy.size), gx.ravel() + g.normal(0, 0.12 * cs, gy.size)
            ok = np.hypot((dx * np.cos(t) + dy * np.sin(t)) / a, (-dx * np.sin(t) + dy * np.cos(t)) / b) < 0.85
            py, px = cy[i] + dy[ok], cx[i] + dx[ok]
            orient, asp_cell = g.uniform(0, np.pi, py.size), asp0
        orient = np.broadcast_to(orient, py.shape)
        radii = 3.6 * um * scale * np.exp(g.normal(0, 0.12, py.size))
        asps = np.clip(asp_cell * np.exp(g.normal(0, 0.1, py.size)), 1, 5)
        wrinkled, values = g.random(py.size) < p_wr, g.uniform(0.8, 1.1, py.size)
        for k in range(py.size):
            _paste(nuc, _nucleus(radii[k], asps[k], orient[k], wrinkled[k]), py[k], px[k], values[k])
            if halo_amt > 0.05:
                _paste(halo, _nucleus(radii[k] * 1.5, asps[k], orient[k]), py[k], px[k], halo_amt)
            if clear > 0.2:  # cell membranes show when the cytoplasm is cleared
                _paste(cyto, _nucleus(cs * 0.55, 1.1, orient[k], ring=True), py[k], px[k], 0.9 * clear)
    return epi, lumen, cyto, nuc, halo


def _artefacts(g: np.random.Generator, shape: tuple[int, int], um: float, step: int, grid: tuple[int, int]):
    """Draw one or two artefacts: a tissue fold (stain doubled along a wavy band), a pen stroke (green, blue or black
    ink) and an out-of-focus region.

    Returns (fold factor on the stain concentrations or None, ink map or None, ink OD (3,), blur weight or None);
    maps have shape (H, W).
    """
    H, W = shape
    fold = ink = blur = None
    ink_od = np.zeros(3, np.float32)
    for kind in g.choice(3, g.integers(1, 3), replace=False):
        if kind == 0:
            th, y0, x0 = g.uniform(0, np.pi), g.uniform(0.3, 0.7) * H, g.uniform(0.3, 0.7) * W
            d = (np.arange(W)[None, :] - x0) * np.cos(th) + (np.arange(H)[:, None] - y0) * np.sin(th)
            d = np.abs(d + 15 * um * _up(_field(g, grid, 40 * um / step), shape, step))
            fold = 1 + 0.9 * np.clip((g.uniform(20, 60) * um - d) / (3 * um), 0, 1)
        elif kind == 1:
            ink = np.zeros(shape, np.float32)
            x = np.linspace(g.uniform(0, 0.3), g.uniform(0.7, 1), 200) * W
            y = (g.uniform(0.2, 0.8) + g.uniform(0.05, 0.2) * np.sin(x / W * g.uniform(3, 9) + g.uniform(0, 6))) * H
            stamp = _nucleus(g.uniform(12, 25) * um, 1.0, 0.0)
            for y_, x_ in zip(y, x):
                _paste(ink, stamp, y_, x_, 1.0)
            ink_od = _INKS[g.integers(3)] * g.uniform(0.6, 1.0)
        else:
            blur = np.clip(_up(_field(g, grid, 80 * um / step), shape, step) - 0.8, 0, 1)
    return fold, ink, ink_od, blur


def task_effects(cfg: SynthConfig) -> tuple[float, float, float]:
    """The effect size of each task (nsclc_like, rcc_like, brca_like): ``effect_size * task_effects``, in [0, 1]."""
    return tuple(float(np.clip(cfg.effect_size * m, 0.0, 1.0)) for m in cfg.task_effects)


def _render(spec: SlideSpec, style: CenterStyle, cfg: SynthConfig) -> np.ndarray:
    """Draw one slide at level 0. Shape: (height, width, 3) uint8."""
    g = rng(cfg.seed, _SLIDE, spec.index)
    H, W, um, e = cfg.height, cfg.width, 1.0 / cfg.mpp, task_effects(cfg)[2]
    step = max(2, int(round(8 * um)))  # grid of the smooth fields: one cell per 8 um
    grid = (H // step + 2, W // step + 2)
    density = g.uniform(0.85, 1.15)  # per-slide nuisances
    h_amt, e_amt = np.exp(style.h_amount + g.normal(0, 0.06)), np.exp(style.e_amount + g.normal(0, 0.06))
    # tissue islands, kept off the slide's border
    f = 0.75 * _field(g, grid, 160 * um / step) + 0.45 * _field(g, grid, 50 * um / step)
    ry, rx = (np.linspace(-1.1, 1.1, n) ** 2 for n in grid)
    f -= 1.5 * (ry[:, None] + rx[None, :]) ** 2
    thr = np.quantile(f, 1 - g.uniform(0.3, 0.6))
    tissue = np.clip((_up(f, (H, W), step) - thr) / 0.04 + 0.5, 0, 1)
    tumour_f, labmaps = _field(g, grid, 120 * um / step), [_field(g, grid, 70 * um / step) for _ in TASKS]
    inside = f > thr + 0.1
    tum_thr = np.quantile(tumour_f[inside], 1 - g.uniform(0.45, 0.75)) if inside.any() else np.inf
    # carcinoma units on a jittered grid inside the tumour region
    sp = 72 * um / np.sqrt(density)
    cy, cx = np.meshgrid(np.arange(sp / 2, H, sp), np.arange(sp / 2, W, sp), indexing="ij")
    cy, cx = cy.ravel() + g.uniform(-0.3, 0.3, cy.size) * sp, cx.ravel() + g.uniform(-0.3, 0.3, cx.size) * sp
    keep = (_at(f, cy, cx, step) > thr + 0.1) & (_at(tumour_f, cy, cx, step) > tum_thr)
    cy, cx = cy[keep], cx[keep]
    carry = [_top(_at(m, cy, cx, step), cfg.label_fraction) for m in labmaps[:2]]
    epi, lumen, cyto, nuc, halo = _units(g, spec, cfg, cy, cx, carry, density)
    # stroma: fibres as level lines of a smooth field, fibroblasts along them
    psi = _field(g, grid, 100 * um / step)
    phase = _up(psi, (H, W), step) * (2 * np.pi * 100 / 6) + 1.2 * _up(_field(g, grid, 1.5), (H, W), step)
    fib = np.square(np.square(0.5 + 0.5 * np.sin(phase)))
    fib *= np.clip(0.6 + 0.5 * _up(_field(g, grid, 1.2), (H, W), step), 0, 1)
    stroma = 0.6 * (0.55 + 0.7 * fib) * (0.8 + 0.2 * _up(_field(g, grid, 30 * um / step), (H, W), step))
    dense = np.zeros((H, W), np.float32)  # fibroblasts and lymphocytes: dark, homogeneous nuclei
    area_mm2 = H * W * (cfg.mpp / 1000) ** 2
    n_f = g.poisson(700 * area_mm2)
    fy, fx = g.uniform(0, H, n_f), g.uniform(0, W, n_f)
    iy, ix = fy.astype(int), fx.astype(int)
    ok = (tissue[iy, ix] > 0.5) & (epi[iy, ix] + lumen[iy, ix] < 0.1)
    fa = _at(np.arctan2(*np.gradient(psi)), fy, fx, step) + np.pi / 2 + g.normal(0, 0.15, n_f)
    for y, x, a_, r_ in zip(fy[ok], fx[ok], fa[ok], g.uniform(2.6, 3.4, n_f)[ok] * um):
        _paste(dense, _nucleus(r_, g.uniform(3.5, 5), a_), y, x, 0.8)
    # lymphocytes: thinned Poisson points, denser in stroma, class factor in the brca_like label region
    top = 1500 * np.exp(1.6 * e + 1.6)  # bound of the density (per mm2)
    n_l = g.poisson(top * area_mm2)
    ly, lx = g.uniform(0, H, n_l), g.uniform(0, W, n_l)
    iy, ix = ly.astype(int), lx.astype(int)
    carry_b = _top(np.where(tissue[iy, ix] > 0.5, _at(labmaps[2], ly, lx, step), -np.inf),
                   cfg.label_fraction * np.mean(tissue[iy, ix] > 0.5))
    factor = np.where(carry_b, np.exp(e * _BRCA_LOG[spec.labels[2]]), 1.0)
    dens = (1500 - 1100 * epi[iy, ix]) * np.exp(g.normal(0, 0.25) + 0.5 * np.clip(_at(psi, ly, lx, step), -2, 2))
    ok = g.random(n_l) * top < dens * factor * tissue[iy, ix] * (1 - lumen[iy, ix])
    for y, x, r_ in zip(ly[ok], lx[ok], g.uniform(2.6, 3.1, n_l)[ok] * um):
        _paste(dense, _nucleus(r_, g.uniform(1, 1.15), 0.0), y, x, 1.0)
    # hematoxylin and eosin concentrations (chromatin texture in the tumour nuclei)
    tex = ndimage.gaussian_filter(g.standard_normal((H, W), dtype=np.float32), 0.7 * um)
    tex /= tex.std() + 1e-6
    allnuc = np.clip(np.maximum(nuc, dense), 0, 1)
    conc_h = tissue * (1.45 * nuc * (1 + 0.3 * tex) + 1.7 * dense + 0.08 * (1 - lumen) + 0.12 * epi)
    conc_e = tissue * (np.clip(1 - epi - lumen, 0, 1) * stroma + 0.6 * epi * np.clip(cyto, 0, 1) * (1 - halo)
                       + 0.04 * lumen) * (1 - 0.75 * allnuc) * (1 + 0.08 * tex)
    fold, ink, ink_od, blur = _artefacts(g, (H, W), um, step, grid) if spec.artefacts else (None,) * 4
    if fold is not None:
        conc_h, conc_e = conc_h * fold, conc_e * fold
    # Beer-Lambert and the scanner, one channel at a time (keeps the arrays (H, W))
    hv = h_amt * _H * np.exp((style.h_tilt + g.normal(0, 0.03)) * np.array([1, 0, -1]))
    ev = e_amt * _E * np.exp((style.e_tilt + g.normal(0, 0.03)) * np.array([1, 0, -1]))
    white = style.white * np.array(style.cast)
    out = np.empty((H, W, 3), np.uint8)
    for c in range(3):
        chan = conc_h * np.float32(hv[c])
        chan += conc_e * np.float32(ev[c])
        if ink is not None:
            chan += ink * np.float32(ink_od[c])
        chan = np.exp(-chan) * np.float32(white[c])
        if blur is not None:
            chan += (ndimage.gaussian_filter(chan, 3 * um) - chan) * blur
        if style.sharpness > 0:
            chan = ndimage.gaussian_filter(chan, style.sharpness)
        elif style.sharpness < 0:
            chan += np.float32(-2 * style.sharpness) * (chan - ndimage.gaussian_filter(chan, 1.0))
        chan += g.standard_normal((H, W), dtype=np.float32) * np.float32(style.noise)
        out[..., c] = np.clip(np.rint(chan), 0, 255)
    return out
