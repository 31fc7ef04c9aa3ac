"""Synthetic cohort of H&E-like pyramidal TIFF slides with three known slide-level tasks (``gigassl synth``): the
plan of the cohort (cases, centres, labels, label noise, artefacts) and :func:`synthesize`, which draws its slides.

Each slide is drawn procedurally at its level-0 magnification (``mpp`` um/px; 0.5 in ``demo``, about 20x): tissue
islands on glass, carcinoma units (glands around a lumen, or solid nests) in a fibrous eosinophilic stroma with
fibroblasts and lymphocytes. Hematoxylin and eosin concentrations are composed in optical density space and turned
into colour by Beer-Lambert (``RGB = white * exp(-(c_H * h + c_E * e))``), so a centre's stain vectors, stain amounts
and scanner change every pixel of its slides. The pixels are drawn by :mod:`gigassl.cohorts.render`; slides are tiled JPEG
pyramidal TIFFs (:func:`gigassl.cohorts.tiff.write_pyramid_tiff`).

The tasks mimic the paper's subtyping tasks (Sec. 4.2, Tab. 1, after Chen et al.), one mechanism each, so that they
are independent; each acts on many small regions of a slide and is subtle in any one tile:

- ``nsclc_like`` ``glandular | solid`` (50/50 %, like LUAD/LUSC): architecture, the probability that a tumour unit
  is a gland rather than a solid nest: 0.5 +/- 0.45 * effect_size.
- ``rcc_like`` ``clear_cytoplasm | large_nuclei | wrinkled_halo`` (55/32/13 %, like the RCC subtypes): the tumour
  cells' nuclear size and elongation, cytoplasm clearing, perinuclear halo and wrinkled outline (table ``gigassl.cohorts.render._RCC``).
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

Survival outcome (``survival.csv`` beside the manifest: ``slide_id, case_id, time, event``, one row a labelled
slide; :func:`plan_survival`), a time-to-event label of known mechanism for the survival probe
(:mod:`gigassl.evaluation.survival`). The design, fixed before any probe was run:

- factor: the nuclear size of the case's true ``rcc_like`` class (the tumour cells' nucleus scale of
  ``gigassl.cohorts.render._RCC``: 0.80 clear_cytoplasm, 1.30 large_nuclei, 1.00 wrinkled_halo, like nuclear grade
  in renal carcinoma), standardised with the class priors' mean and sd: ``z`` = -0.83, +1.40, +0.06
  (:func:`survival_factor`). It follows the morphology (the true class), not the manifest label after label noise.
- hazard: exponential event times of hazard ``h0 * exp(beta * z)``, ``beta`` = :data:`SURVIVAL_BETA` = 0.8 per sd,
  ``h0 = ln 2 / 60`` per month (median survival 5 years at ``z = 0``); times in months.
- censoring at random: independent exponential censoring times of rate ``3/7 * h0`` (30 % of ``z = 0`` cases
  censored; about 32 % of a cohort); ``time = min(event time, censoring time)``, ``event = 1`` when the event came
  first.
- one time and event per case (its one or two slides share them); pool slides have none.
- ``beta`` was calibrated on the oracle only: the generating factor's own Harrell C is about 0.69 on thousands of
  cases (ties within a class count half), never on a representation's probe.
- drawn from the rng stream ``_SURVIVAL`` (5), so slides, pixels, labels and ``manifest.csv`` are bit-identical to
  a cohort drawn without it; the outcome is not a manifest column (those are read as tasks).
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm  # not tqdm.auto, which warns in kernels without ipywidgets

from ..config import SynthConfig
from .render import _RCC, TASKS, CenterStyle, SlideSpec, render_slide
from .tiff import write_pyramid_tiff
from ..devices import die_with_parent
from ..seeding import rng
from ..files import write_csv_atomic, write_text_atomic

PRIORS: dict[str, tuple[float, ...]] = {
    "nsclc_like": (0.5, 0.5), "rcc_like": (0.55, 0.32, 0.13), "brca_like": (0.8, 0.2),
}
COLUMNS = ("slide_id", "path", "case_id", "center", *TASKS)

_COHORT, _CENTERS, _POOL, _SURVIVAL = 1, 2, 4, 5  # rng streams (3: a slide's pixels, gigassl.cohorts.render)
SURVIVAL_TASK = "rcc_like"  # the survival outcome's factor: the nuclear size of this task's true class
SURVIVAL_BETA = 0.8  # log hazard ratio per sd of the factor (oracle Harrell C about 0.69)
SURVIVAL_MEDIAN = 60.0  # months: median event time at factor z = 0 (h0 = ln 2 / SURVIVAL_MEDIAN)
CENSORING_RATIO = 3 / 7  # censoring rate / h0: 30 % of z = 0 cases censored
SURVIVAL_FILE = "survival.csv"


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


def survival_factor(classes) -> np.ndarray:
    """The survival outcome's factor ``z`` of cases of true ``rcc_like`` classes (names): their nuclear size
    (``_RCC[:, 0]``) standardised with the mean and sd under the class priors. Shape: (n_cases,) -> (n_cases,)."""
    size = dict(zip(TASKS[SURVIVAL_TASK], _RCC[:, 0]))
    prior = np.array(PRIORS[SURVIVAL_TASK])
    levels = _RCC[:, 0]
    mean = float(prior @ levels)
    sd = float(np.sqrt(prior @ (levels - mean) ** 2))
    return (np.array([size[c] for c in classes], float) - mean) / sd


def draw_survival(z, generator: np.random.Generator, beta: float = SURVIVAL_BETA) -> tuple[np.ndarray, np.ndarray]:
    """Times (months) and events of cases of factor ``z`` (module docstring): exponential event times of hazard
    ``h0 * exp(beta * z)``, independent exponential censoring of rate ``CENSORING_RATIO * h0``; ``event`` is True
    where the event came first. Drawn from ``generator``: event times, then censoring times.
    Shape: z (n,) -> time (n,) float, event (n,) bool."""
    z = np.asarray(z, float)
    h0 = np.log(2.0) / SURVIVAL_MEDIAN
    event_time = generator.exponential(1.0 / (h0 * np.exp(beta * z)))
    censor_time = generator.exponential(1.0 / (CENSORING_RATIO * h0), len(z))
    time = np.maximum(np.round(np.minimum(event_time, censor_time), 2), 0.01)
    return time, event_time <= censor_time


def plan_survival(config: SynthConfig, frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """The survival outcome of the labelled slides (module docstring): columns ``slide_id, case_id, time, event``
    (months; 1 = event, 0 = censored), one row a slide, a case's slides sharing its draw. ``frame`` is
    :func:`plan_cohort`'s (computed when None). Drawn from ``rng(seed, _SURVIVAL)``: the cohort does not change."""
    frame = plan_cohort(config) if frame is None else frame
    labelled = frame.iloc[: config.n_slides]
    cases = labelled.drop_duplicates("case_id")
    time, event = draw_survival(survival_factor(cases[f"true_{SURVIVAL_TASK}"]), rng(config.seed, _SURVIVAL))
    index = {case: i for i, case in enumerate(cases["case_id"])}
    rows = [index[c] for c in labelled["case_id"]]
    return pd.DataFrame({"slide_id": labelled["slide_id"].to_numpy(), "case_id": labelled["case_id"].to_numpy(),
                         "time": time[rows], "event": event[rows].astype(int)})


def synthesize(out_dir, config: SynthConfig, progress: bool = True) -> Path:
    """Write ``out_dir/slides/*.tiff``, ``out_dir/manifest.csv``, ``out_dir/cohort.json`` and ``out_dir/survival.csv``
    (:func:`plan_survival`); return the manifest path.

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
    write_csv_atomic(plan_survival(config, frame), out / SURVIVAL_FILE)
    info = {"config": dataclasses.asdict(config), "tasks": TASKS, "priors": PRIORS,
            "centers": {f"C{i:02d}": dataclasses.asdict(s) for i, s in enumerate(styles)},
            "flipped_cases": {t: sorted(set(frame.case_id[frame[t] != frame[f"true_{t}"]])) for t in TASKS}}
    write_text_atomic(out / "cohort.json", json.dumps(info, indent=1) + "\n")
    return manifest


def _make_slide(job: tuple[SlideSpec, CenterStyle, SynthConfig]) -> None:
    """Draw one slide and write it (worker entry point)."""
    spec, style, cfg = job
    write_pyramid_tiff(spec.path, render_slide(spec, style, cfg), cfg.mpp, cfg.n_levels, cfg.tiff_tile, style.quality)
