"""Drawing one synthetic H&E slide at level 0 (the pixels of ``gigassl synth``; the cohort is planned in
:mod:`gigassl.cohorts.synth`).

:func:`render_slide` draws, in this order (every random draw from ``rng(seed, 3, slide index)``, in a fixed order,
so that a slide's pixels depend only on the seed, its index, its centre and its classes):

1. tissue: islands on glass, the level set of two smooth random fields, kept off the slide's border
   (:func:`_tissue`);
2. morphology: carcinoma units on a jittered grid inside a tumour region, glands (a ring of columnar cells around a
   lumen) or solid nests (:func:`_units`); a fibrous stroma with fibroblasts along its fibres
   (:func:`_stroma`, :func:`_fibroblasts`) and lymphocytes (:func:`_lymphocytes`);
3. stain: hematoxylin and eosin concentrations (:func:`_stains`), then colour by Beer-Lambert
   (``RGB = white * exp(-(c_H * h + c_E * e))``) with the centre's stain vectors and scanner (:func:`_scan`);
4. artefacts, on some slides: a tissue fold, a pen stroke, an out-of-focus region (:func:`_artefacts`).

The classes of the three tasks (:data:`TASKS`) act on the morphology only: ``nsclc_like`` on the share of glands,
``rcc_like`` on the tumour cells' nuclei and cytoplasm (:data:`_RCC`), ``brca_like`` on the lymphocyte density;
the module docstring of :mod:`gigassl.cohorts.synth` gives the mechanisms and the difficulty parameters.

Lengths are drawn in microns and converted with ``px_per_um = 1 / mpp``; the smooth random fields live on a coarse
grid (one cell per 8 um, ``step`` px) and are upsampled bilinearly. All maps have shape (H, W) float32.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from ..config import SynthConfig
from ..seeding import rng

# the classes of each task, in the order of the rows of the morphology tables below
TASKS: dict[str, tuple[str, ...]] = {
    "nsclc_like": ("glandular", "solid"),
    "rcc_like": ("clear_cytoplasm", "large_nuclei", "wrinkled_halo"),
    "brca_like": ("lymphocyte_sparse", "lymphocyte_dense"),
}
_SLIDE = 3  # rng stream of a slide's pixels (gigassl.cohorts.synth draws the cohort from streams 1, 2 and 4)
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


def task_effects(cfg: SynthConfig) -> tuple[float, float, float]:
    """The effect size of each task (nsclc_like, rcc_like, brca_like): ``effect_size * task_effects``, in [0, 1]."""
    return tuple(float(np.clip(cfg.effect_size * m, 0.0, 1.0)) for m in cfg.task_effects)


# ------------------------------------------------------------------------------------------------ primitives
def _field(gen: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Smooth zero-mean unit-variance random field on a grid; ``sigma`` is its correlation length in cells."""
    smooth = ndimage.gaussian_filter(gen.standard_normal(shape), sigma, mode="wrap")
    return ((smooth - smooth.mean()) / (smooth.std() + 1e-12)).astype(np.float32)


def _up(grid_field: np.ndarray, shape: tuple[int, int], step: int) -> np.ndarray:
    """Bilinear upsampling of a grid with one cell every ``step`` px. Shape: (h, w) -> ``shape``."""
    out = grid_field
    for axis, size in enumerate(shape):
        pos = np.arange(size, dtype=np.float32) / step
        cell = pos.astype(np.int64)
        weight = (pos - cell).reshape((-1, 1) if axis == 0 else (1, -1))
        out = np.take(out, cell, axis=axis) * (1 - weight) + np.take(out, cell + 1, axis=axis) * weight
    return out


def _at(grid_field: np.ndarray, y: np.ndarray, x: np.ndarray, step: int) -> np.ndarray:
    """Values of a grid field (one cell every ``step`` px) at pixel positions ``y, x``. Shape: (n,)."""
    return ndimage.map_coordinates(grid_field, [np.asarray(y) / step, np.asarray(x) / step], order=1, mode="nearest")


@functools.lru_cache(maxsize=8192)
def _ellipse(r2: int, asp5: int, ang: int, wrinkled: bool, ring: bool = False) -> np.ndarray:
    """Soft ellipse stamp of mean radius r2/2 px, aspect asp5/5, angle ang*pi/_N_ANG, with a darker rim
    (chromatin at the nuclear membrane) or a wrinkled outline; ``ring`` gives only a 1.5 px outline. Shape: (s, s)."""
    radius, aspect, angle = r2 / 2, asp5 / 5, ang * np.pi / _N_ANG
    major, minor = radius * np.sqrt(aspect), radius / np.sqrt(aspect)
    half = int(np.ceil(major * 1.3)) + 2
    y, x = np.mgrid[-half:half + 1, -half:half + 1].astype(np.float32)
    u = (x * np.cos(angle) + y * np.sin(angle)) / major  # along the long axis, in semi-axes
    v = (-x * np.sin(angle) + y * np.cos(angle)) / minor
    rho = np.sqrt(u * u + v * v)
    if wrinkled:
        phi = np.arctan2(v, u)
        rho = rho / (1 + 0.16 * np.cos(3 * phi + 0.7) + 0.1 * np.cos(5 * phi + 2.1))
    edge = np.clip((1 - rho) * radius / 1.2 + 0.5, 0, 1)
    if ring:
        return (edge * np.clip(1.5 - (1 - rho) * radius, 0, 1)).astype(np.float32)
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


# --------------------------------------------------------------------------------------------------- tissue
class _Grid(NamedTuple):
    """The slide's size and the coarse grid of its smooth fields: ``step`` px per cell, ``cells`` (rows, cols)."""

    height: int
    width: int
    px_per_um: float
    step: int
    cells: tuple[int, int]

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width


def _tissue(gen: np.random.Generator, grid: _Grid) -> tuple[np.ndarray, float, np.ndarray]:
    """Tissue islands kept off the slide's border: a smooth field thresholded at a random quantile (30-60 % of the
    slide is tissue). Returns the grid field, its threshold and the soft tissue map (H, W)."""
    um, step = grid.px_per_um, grid.step
    islands = 0.75 * _field(gen, grid.cells, 160 * um / step) + 0.45 * _field(gen, grid.cells, 50 * um / step)
    ry, rx = (np.linspace(-1.1, 1.1, n) ** 2 for n in grid.cells)
    islands -= 1.5 * (ry[:, None] + rx[None, :]) ** 2
    threshold = np.quantile(islands, 1 - gen.uniform(0.3, 0.6))
    tissue = np.clip((_up(islands, grid.shape, step) - threshold) / 0.04 + 0.5, 0, 1)
    return islands, threshold, tissue


def _unit_centres(gen: np.random.Generator, grid: _Grid, density: float, islands: np.ndarray, threshold: float,
                  tumour: np.ndarray, tumour_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the carcinoma units: a jittered grid of 72 um (scaled by the cell density), kept well inside
    the tissue and inside the tumour region. Shape: (n,), (n,) px."""
    spacing = 72 * grid.px_per_um / np.sqrt(density)
    cy, cx = np.meshgrid(np.arange(spacing / 2, grid.height, spacing), np.arange(spacing / 2, grid.width, spacing),
                         indexing="ij")
    cy = cy.ravel() + gen.uniform(-0.3, 0.3, cy.size) * spacing
    cx = cx.ravel() + gen.uniform(-0.3, 0.3, cx.size) * spacing
    keep = (_at(islands, cy, cx, grid.step) > threshold + 0.1) & (_at(tumour, cy, cx, grid.step) > tumour_threshold)
    return cy[keep], cx[keep]


# ----------------------------------------------------------------------------------------- carcinoma units
class _Outline(NamedTuple):
    """One unit's outline: outer and lumen radius (px), semi-axes, long-axis angle, wobble phases, box half-size."""

    outer_radius: float
    lumen_radius: float
    major: float
    minor: float
    angle: float
    phases: np.ndarray
    half: int


def _unit_outline(gen: np.random.Generator, gland: bool, scale: float, um: float) -> _Outline:
    """Draw a unit's size and shape: a gland of 18-32 um radius whose epithelium is 10-14 um thick (times the
    nucleus scale), or a solid nest of 20-38 um; elongated, at a random angle, with a wobbly outline."""
    outer = (gen.uniform(8, 18) + gen.uniform(10, 14)) * um if gland else gen.uniform(20, 38) * um
    lumen = outer - gen.uniform(10, 14) * um * scale if gland else 0.0
    aspect = gen.uniform(1.0, 1.3 if gland else 1.6)
    angle, phases = gen.uniform(0, np.pi), gen.uniform(0, 2 * np.pi, 2)
    major, minor = outer * np.sqrt(aspect), outer / np.sqrt(aspect)
    return _Outline(outer, lumen, major, minor, angle, phases, int(outer * np.sqrt(aspect) * 1.25) + 3)


def _paint_unit(maps: tuple[np.ndarray, np.ndarray, np.ndarray], outline: _Outline, gland: bool, clear: float,
                centre_y: float, centre_x: float) -> None:
    """Paint a unit's epithelium, lumen and cytoplasm eosin (``maps``, in place) within its bounding box."""
    epi, lumen, cyto = maps
    height, width = epi.shape
    outer_r, lumen_r, major, minor, angle, phases, half = outline
    y0, x0 = int(centre_y), int(centre_x)
    ys, ye, xs, xe = max(y0 - half, 0), min(y0 + half + 1, height), max(x0 - half, 0), min(x0 + half + 1, width)
    yy, xx = np.mgrid[ys - y0:ye - y0, xs - x0:xe - x0].astype(np.float32)
    u = (xx * np.cos(angle) + yy * np.sin(angle)) / major
    v = (-xx * np.sin(angle) + yy * np.cos(angle)) / minor
    phi = np.arctan2(v, u)
    rho = np.sqrt(u * u + v * v) / (1 + 0.08 * np.cos(2 * phi + phases[0]) + 0.06 * np.cos(3 * phi + phases[1]))
    outer = np.clip((1 - rho) * outer_r / 1.5 + 0.5, 0, 1)
    inner = np.clip((lumen_r / outer_r - rho) * outer_r / 1.5 + 0.5, 0, 1) if gland else 0 * outer
    box = np.s_[ys:ye, xs:xe]
    np.maximum(epi[box], outer - inner, out=epi[box])
    np.maximum(lumen[box], inner, out=lumen[box])
    np.maximum(cyto[box], (outer - inner) * (1 - clear), out=cyto[box])


def _gland_cells(gen: np.random.Generator, outline: _Outline, spacing: float, centre_y: float,
                 centre_x: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One ring of columnar cells between the lumen and the outer border, long axes radial.
    Returns positions y, x and orientations (n,)."""
    outer_r, lumen_r, major, minor, angle, phases, _ = outline
    ring = (lumen_r + outer_r) / 2 / outer_r
    n_cells = max(6, int(2 * np.pi * ring * outer_r / (0.8 * spacing)))
    around = np.arange(n_cells) * 2 * np.pi / n_cells + gen.uniform(0, 2 * np.pi)
    radius = ring * (1 + 0.08 * np.cos(2 * around + phases[0]) + 0.06 * np.cos(3 * around + phases[1]))
    along, across = radius * major * np.cos(around), radius * minor * np.sin(around)
    cell_y = centre_y + along * np.sin(angle) + across * np.cos(angle)
    cell_x = centre_x + along * np.cos(angle) - across * np.sin(angle)
    return cell_y, cell_x, np.arctan2(cell_y - centre_y, cell_x - centre_x)


def _nest_cells(gen: np.random.Generator, outline: _Outline, spacing: float, centre_y: float,
                centre_x: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A solid nest of cells on a jittered hexagonal lattice, randomly oriented.
    Returns positions y, x and orientations (n,)."""
    _, _, major, minor, angle, _, half = outline
    lattice_y, lattice_x = np.meshgrid(np.arange(-half, half, spacing * 0.87), np.arange(-half, half, spacing),
                                       indexing="ij")
    lattice_x = lattice_x + (np.arange(lattice_y.shape[0])[:, None] % 2) * spacing / 2
    dy = lattice_y.ravel() + gen.normal(0, 0.12 * spacing, lattice_y.size)
    dx = lattice_x.ravel() + gen.normal(0, 0.12 * spacing, lattice_y.size)
    inside = np.hypot((dx * np.cos(angle) + dy * np.sin(angle)) / major,
                      (-dx * np.sin(angle) + dy * np.cos(angle)) / minor) < 0.85
    cell_y, cell_x = centre_y + dy[inside], centre_x + dx[inside]
    return cell_y, cell_x, gen.uniform(0, np.pi, cell_y.size)


def _stamp_cells(gen: np.random.Generator, maps: tuple[np.ndarray, np.ndarray, np.ndarray], cells, aspect: float,
                 nucleus_scale: float, clear: float, halo_amount: float, p_wrinkled: float, spacing: float,
                 um: float) -> None:
    """Stamp the tumour cells' nuclei (3.6 um radius times the scale, jittered), their perinuclear halo and, when
    the cytoplasm is cleared, their membranes, into ``maps`` = (nuclei, halo, cytoplasm) in place."""
    nuc, halo, cyto = maps
    cell_y, cell_x, orient = cells
    orient = np.broadcast_to(orient, cell_y.shape)
    radii = 3.6 * um * nucleus_scale * np.exp(gen.normal(0, 0.12, cell_y.size))
    aspects = np.clip(aspect * np.exp(gen.normal(0, 0.1, cell_y.size)), 1, 5)
    wrinkled, values = gen.random(cell_y.size) < p_wrinkled, gen.uniform(0.8, 1.1, cell_y.size)
    for k in range(cell_y.size):
        _paste(nuc, _nucleus(radii[k], aspects[k], orient[k], wrinkled[k]), cell_y[k], cell_x[k], values[k])
        if halo_amount > 0.05:
            _paste(halo, _nucleus(radii[k] * 1.5, aspects[k], orient[k]), cell_y[k], cell_x[k], halo_amount)
        if clear > 0.2:  # cell membranes show when the cytoplasm is cleared
            _paste(cyto, _nucleus(spacing * 0.55, 1.1, orient[k], ring=True), cell_y[k], cell_x[k], 0.9 * clear)


def _units(gen: np.random.Generator, spec: SlideSpec, cfg: SynthConfig, cy: np.ndarray, cx: np.ndarray,
           carry: list[np.ndarray], density: float) -> tuple[np.ndarray, ...]:
    """Draw the carcinoma units centred on (cy, cx): glands (a ring of columnar cells around a lumen) or solid
    nests; ``carry[t][i]``: unit i shows task t's class morphology (else the neutral one).

    Returns epithelium, lumen, cytoplasm eosin, nuclei and perinuclear halo maps. Shape: 5 x (H, W) float32.
    """
    um = 1.0 / cfg.mpp
    effect_gland, effect_rcc, _ = task_effects(cfg)
    epi, lumen, cyto, nuc, halo = (np.zeros((cfg.height, cfg.width), np.float32) for _ in range(5))
    neutral = _RCC.mean(0)
    for i in range(len(cy)):
        p_gland = 0.5 + effect_gland * ((_GLAND_P[spec.labels[0]] if carry[0][i] else 0.5) - 0.5)
        rcc = neutral + (effect_rcc * (_RCC[spec.labels[1]] - neutral) if carry[1][i] else 0)
        nucleus_scale, aspect, clear, halo_amount, p_wrinkled = rcc
        gland = gen.random() < p_gland
        outline = _unit_outline(gen, gland, nucleus_scale, um)
        _paint_unit((epi, lumen, cyto), outline, gland, clear, cy[i], cx[i])
        spacing = (9 + 4 * clear) * nucleus_scale * um / np.sqrt(density)  # cell spacing
        if gland:
            cells, cell_aspect = _gland_cells(gen, outline, spacing, cy[i], cx[i]), 1.25 * aspect
        else:
            cells, cell_aspect = _nest_cells(gen, outline, spacing, cy[i], cx[i]), aspect
        _stamp_cells(gen, (nuc, halo, cyto), cells, cell_aspect, nucleus_scale, clear, halo_amount, p_wrinkled,
                     spacing, um)
    return epi, lumen, cyto, nuc, halo


# ------------------------------------------------------------------------------- stroma and its cells
def _stroma(gen: np.random.Generator, grid: _Grid) -> tuple[np.ndarray, np.ndarray]:
    """Fibres as the level lines of a smooth field ``psi`` (about 6 um apart), patchy; returns ``psi`` (grid) and
    the stroma's eosin amount (H, W)."""
    um, step, shape = grid.px_per_um, grid.step, grid.shape
    psi = _field(gen, grid.cells, 100 * um / step)
    phase = _up(psi, shape, step) * (2 * np.pi * 100 / 6) + 1.2 * _up(_field(gen, grid.cells, 1.5), shape, step)
    fibres = np.square(np.square(0.5 + 0.5 * np.sin(phase)))
    fibres *= np.clip(0.6 + 0.5 * _up(_field(gen, grid.cells, 1.2), shape, step), 0, 1)
    stroma = 0.6 * (0.55 + 0.7 * fibres) * (0.8 + 0.2 * _up(_field(gen, grid.cells, 30 * um / step), shape, step))
    return psi, stroma


def _fibroblasts(gen: np.random.Generator, dense: np.ndarray, grid: _Grid, area_mm2: float, tissue: np.ndarray,
                 epi: np.ndarray, lumen: np.ndarray, psi: np.ndarray) -> None:
    """Stamp fibroblasts (700 per mm2 of stroma: elongated dark nuclei along the fibres) into ``dense``."""
    um = grid.px_per_um
    n_fibroblasts = gen.poisson(700 * area_mm2)
    fy, fx = gen.uniform(0, grid.height, n_fibroblasts), gen.uniform(0, grid.width, n_fibroblasts)
    iy, ix = fy.astype(int), fx.astype(int)
    in_stroma = (tissue[iy, ix] > 0.5) & (epi[iy, ix] + lumen[iy, ix] < 0.1)
    along_fibre = _at(np.arctan2(*np.gradient(psi)), fy, fx, grid.step) + np.pi / 2 + gen.normal(0, 0.15, n_fibroblasts)
    radii = gen.uniform(2.6, 3.4, n_fibroblasts)[in_stroma] * um
    for y, x, angle, radius in zip(fy[in_stroma], fx[in_stroma], along_fibre[in_stroma], radii):
        _paste(dense, _nucleus(radius, gen.uniform(3.5, 5), angle), y, x, 0.8)


def _lymphocytes(gen: np.random.Generator, dense: np.ndarray, grid: _Grid, area_mm2: float, tissue: np.ndarray,
                 epi: np.ndarray, lumen: np.ndarray, psi: np.ndarray, label_map: np.ndarray, cfg: SynthConfig,
                 label: int, effect: float) -> None:
    """Stamp lymphocytes (round dark nuclei) into ``dense``: thinned Poisson points, denser in the stroma than in
    the epithelium, times the ``brca_like`` class factor in the part of the tissue that carries the label."""
    um, step = grid.px_per_um, grid.step
    bound = 1500 * np.exp(1.6 * effect + 1.6)  # bound of the density (per mm2)
    n_points = gen.poisson(bound * area_mm2)
    ly, lx = gen.uniform(0, grid.height, n_points), gen.uniform(0, grid.width, n_points)
    iy, ix = ly.astype(int), lx.astype(int)
    carries = _top(np.where(tissue[iy, ix] > 0.5, _at(label_map, ly, lx, step), -np.inf),
                   cfg.label_fraction * np.mean(tissue[iy, ix] > 0.5))
    factor = np.where(carries, np.exp(effect * _BRCA_LOG[label]), 1.0)
    density = (1500 - 1100 * epi[iy, ix]) * np.exp(gen.normal(0, 0.25) + 0.5 * np.clip(_at(psi, ly, lx, step), -2, 2))
    kept = gen.random(n_points) * bound < density * factor * tissue[iy, ix] * (1 - lumen[iy, ix])
    for y, x, radius in zip(ly[kept], lx[kept], gen.uniform(2.6, 3.1, n_points)[kept] * um):
        _paste(dense, _nucleus(radius, gen.uniform(1, 1.15), 0.0), y, x, 1.0)


# ----------------------------------------------------------------------------------------------- stains
def _stains(gen: np.random.Generator, um: float, tissue: np.ndarray, stroma: np.ndarray, maps: tuple[np.ndarray, ...],
            dense: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hematoxylin and eosin concentrations (H, W): hematoxylin in the nuclei (with chromatin texture in the
    tumour nuclei), eosin in the stroma and the tumour cells' cytoplasm, less where nuclei are."""
    epi, lumen, cyto, nuc, halo = maps
    texture = ndimage.gaussian_filter(gen.standard_normal(tissue.shape, dtype=np.float32), 0.7 * um)
    texture /= texture.std() + 1e-6
    all_nuclei = np.clip(np.maximum(nuc, dense), 0, 1)
    conc_h = tissue * (1.45 * nuc * (1 + 0.3 * texture) + 1.7 * dense + 0.08 * (1 - lumen) + 0.12 * epi)
    conc_e = tissue * (np.clip(1 - epi - lumen, 0, 1) * stroma + 0.6 * epi * np.clip(cyto, 0, 1) * (1 - halo)
                       + 0.04 * lumen) * (1 - 0.75 * all_nuclei) * (1 + 0.08 * texture)
    return conc_h, conc_e


def _artefacts(gen: np.random.Generator, shape: tuple[int, int], um: float, step: int, cells: tuple[int, int]):
    """Draw one or two artefacts: a tissue fold (stain doubled along a wavy band), a pen stroke (green, blue or black
    ink) and an out-of-focus region.

    Returns (fold factor on the stain concentrations or None, ink map or None, ink OD (3,), blur weight or None);
    maps have shape (H, W).
    """
    height, width = shape
    fold = ink = blur = None
    ink_od = np.zeros(3, np.float32)
    for kind in gen.choice(3, gen.integers(1, 3), replace=False):
        if kind == 0:  # fold
            angle = gen.uniform(0, np.pi)
            y0, x0 = gen.uniform(0.3, 0.7) * height, gen.uniform(0.3, 0.7) * width
            across = (np.arange(width)[None, :] - x0) * np.cos(angle) + (np.arange(height)[:, None] - y0) * np.sin(angle)
            across = np.abs(across + 15 * um * _up(_field(gen, cells, 40 * um / step), shape, step))
            fold = 1 + 0.9 * np.clip((gen.uniform(20, 60) * um - across) / (3 * um), 0, 1)
        elif kind == 1:  # pen stroke
            ink = np.zeros(shape, np.float32)
            x = np.linspace(gen.uniform(0, 0.3), gen.uniform(0.7, 1), 200) * width
            y = (gen.uniform(0.2, 0.8) + gen.uniform(0.05, 0.2) * np.sin(x / width * gen.uniform(3, 9)
                                                                         + gen.uniform(0, 6))) * height
            stamp = _nucleus(gen.uniform(12, 25) * um, 1.0, 0.0)
            for point_y, point_x in zip(y, x):
                _paste(ink, stamp, point_y, point_x, 1.0)
            ink_od = _INKS[gen.integers(3)] * gen.uniform(0.6, 1.0)
        else:  # out of focus
            blur = np.clip(_up(_field(gen, cells, 80 * um / step), shape, step) - 0.8, 0, 1)
    return fold, ink, ink_od, blur


def _scan(gen: np.random.Generator, conc_h: np.ndarray, conc_e: np.ndarray, style: CenterStyle, h_amount: float,
          e_amount: float, um: float, ink=None, ink_od=None, blur=None) -> np.ndarray:
    """Beer-Lambert with the slide's stain vectors, then the scanner (out-of-focus region, blur or sharpening,
    noise), one channel at a time (keeps the arrays (H, W)). Shape: (H, W, 3) uint8."""
    h_vector = h_amount * _H * np.exp((style.h_tilt + gen.normal(0, 0.03)) * np.array([1, 0, -1]))
    e_vector = e_amount * _E * np.exp((style.e_tilt + gen.normal(0, 0.03)) * np.array([1, 0, -1]))
    white = style.white * np.array(style.cast)
    height, width = conc_h.shape
    out = np.empty((height, width, 3), np.uint8)
    for channel in range(3):
        od = conc_h * np.float32(h_vector[channel])
        od += conc_e * np.float32(e_vector[channel])
        if ink is not None:
            od += ink * np.float32(ink_od[channel])
        light = np.exp(-od) * np.float32(white[channel])
        if blur is not None:
            light += (ndimage.gaussian_filter(light, 3 * um) - light) * blur
        if style.sharpness > 0:
            light = ndimage.gaussian_filter(light, style.sharpness)
        elif style.sharpness < 0:
            light += np.float32(-2 * style.sharpness) * (light - ndimage.gaussian_filter(light, 1.0))
        light += gen.standard_normal((height, width), dtype=np.float32) * np.float32(style.noise)
        out[..., channel] = np.clip(np.rint(light), 0, 255)
    return out


# ------------------------------------------------------------------------------------------------ a slide
def render_slide(spec: SlideSpec, style: CenterStyle, cfg: SynthConfig) -> np.ndarray:
    """Draw one slide at level 0: tissue, morphology of its classes, stains, artefacts, scanner.

    Shape: (cfg.height, cfg.width, 3) uint8.
    """
    gen = rng(cfg.seed, _SLIDE, spec.index)
    um, effect_brca = 1.0 / cfg.mpp, task_effects(cfg)[2]
    step = max(2, int(round(8 * um)))  # grid of the smooth fields: one cell per 8 um
    grid = _Grid(cfg.height, cfg.width, um, step, (cfg.height // step + 2, cfg.width // step + 2))
    density = gen.uniform(0.85, 1.15)  # per-slide nuisances
    h_amount = np.exp(style.h_amount + gen.normal(0, 0.06))
    e_amount = np.exp(style.e_amount + gen.normal(0, 0.06))
    islands, threshold, tissue = _tissue(gen, grid)
    tumour, label_maps = _field(gen, grid.cells, 120 * um / step), [_field(gen, grid.cells, 70 * um / step)
                                                                     for _ in TASKS]
    inside = islands > threshold + 0.1
    tumour_threshold = np.quantile(tumour[inside], 1 - gen.uniform(0.45, 0.75)) if inside.any() else np.inf
    cy, cx = _unit_centres(gen, grid, density, islands, threshold, tumour, tumour_threshold)
    carry = [_top(_at(m, cy, cx, step), cfg.label_fraction) for m in label_maps[:2]]
    units = _units(gen, spec, cfg, cy, cx, carry, density)
    epi, lumen = units[0], units[1]
    psi, stroma = _stroma(gen, grid)
    dense = np.zeros(grid.shape, np.float32)  # fibroblasts and lymphocytes: dark, homogeneous nuclei
    area_mm2 = cfg.height * cfg.width * (cfg.mpp / 1000) ** 2
    _fibroblasts(gen, dense, grid, area_mm2, tissue, epi, lumen, psi)
    _lymphocytes(gen, dense, grid, area_mm2, tissue, epi, lumen, psi, label_maps[2], cfg, spec.labels[2], effect_brca)
    conc_h, conc_e = _stains(gen, um, tissue, stroma, units, dense)
    fold, ink, ink_od, blur = _artefacts(gen, grid.shape, um, step, grid.cells) if spec.artefacts else (None,) * 4
    if fold is not None:
        conc_h, conc_e = conc_h * fold, conc_e * fold
    return _scan(gen, conc_h, conc_e, style, h_amount, e_amount, um, ink, ink_od, blur)
