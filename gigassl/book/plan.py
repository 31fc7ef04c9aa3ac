
"""The run plan's contract: the execution names and the files one page writes for another, declared once.

``experiments.yml`` names the executions; the pages' functions (:mod:`gigassl.book.stages`, :mod:`gigassl.book.experiments`,
:mod:`gigassl.book.analyses`, :mod:`gigassl.book.results`) read each other's outputs under ``<run_dir>/<execution>/`` and
``figures_dir``. The names and files they rely on are the constants below, and :func:`check` (run by the tests and at
the start of ``gigassl run``) proves that the plan still defines every name a notebook of the plan reads, so that
renaming an execution in ``experiments.yml`` fails in the first second, naming the old name, the new one and the fix.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

# ------------------------------------------------------------------------------------------ executions
COHORT = "cohort"
TILE_ENCODER = "tile_encoder"
TILE_ENCODER_CHECKS = "tile_encoder_checks"  # the tile encoder's checks: writes MOCO_RETRIEVAL for the results page
BANK_MOCO_SHARED = "bank_moco_shared"  # the bank the main run, the baselines and the ablations read
SSL_FULL = "ssl_full"  # the main run (the paper's setting)
SSL_REF = "ssl_ref"  # the reference of the ablations
SSL_TILES = "ssl_T{tiles_per_view}"  # a grid: one run per T (Fig. 3A)
SSL_POOL = "ssl_pool{pool}"  # a grid: one run per unlabelled pool size, at the ablation regime's steps
SSL_EPOCHS = "ssl_epochs{pool}"  # the same pools at the ablation regime's epochs (about equal passes per slide)
DEEPMIL = "deepmil"
# the experiment pages whose per-split table (``<run_dir>/<page>/splits.csv``) the results page reads
LINEAR_PROBE = "linear_probe"
TINY_DATASETS = "tiny_datasets"
ABLATION_AUGMENTATION = "ablation_augmentation"
ABLATION_TILES = "ablation_tiles"
ABLATION_VIEWS = "ablation_views"
ABLATION_DEEPMIL_AGGREGATOR = "ablation_deepmil_aggregator"
INDEPENDENT_CENTRES = "independent_centres"
# the training runs whose diagnostics the results page reads by name (its claims' arms)
SSL_NO_SLIDE_AUG = "ssl_no_slide_aug"
SSL_NS = "ssl_ns"
SSL_IMAGENET = "ssl_imagenet"
SSL_IMAGENET_NS = "ssl_imagenet_ns"
SSL_INDEPENDENT_CENTRES = "ssl_independent_centres"
SSL_ATTENTION = "ssl_attention"
SSL_RANDOM_INIT = "ssl_random_init"  # the MoCo arm whose aggregator starts random, as the ImageNet arm's does
BANK_IMAGENET_SHARED = "bank_imagenet_shared"  # the ImageNet tile embeddings: AverageMIL on ImageNet features

# ------------------------------------------------------------------------- files a page writes for another
MANIFEST = f"{COHORT}/manifest.csv"  # every page after the cohort
COORDS = f"{COHORT}/coords"  # the tiles' coordinates and thumbnails
SURVIVAL = f"{COHORT}/synthetic/survival.csv"  # the synthetic cohort's survival outcome (gigassl synth): evaluations page
MOCO_CHECKPOINT = f"{TILE_ENCODER}/moco/checkpoint.pt"  # the tile embedder of the MoCo banks and the SSL runs
SPLITS = "splits.csv"  # an experiment page's per-split table, in its own folder
DEEPMIL_TABLE2_SPLITS = "table2_splits.csv"  # in the DeepMIL page's folder: read by the linear-probe page
DEEPMIL_FIG2_SPLITS = "fig2_splits.csv"  # in the DeepMIL page's folder: read by the tiny-datasets page
EMBEDDINGS = "embeddings.h5"  # a training run's slide embeddings, in its own folder
# tables of figures_dir (``<name>.csv``, written by :func:`gigassl.book.figures.save_table`) that another page reads
DEEPMIL_FEW_TILES = "deepmil_few_tiles"  # DeepMIL page -> linear-probe page
DEEPMIL_VS_AVERAGEMIL = "deepmil_vs_averagemil"  # linear-probe page -> results page
SPEED = "speed"  # linear-probe page -> results page
MOCO_RETRIEVAL = "moco_retrieval"  # tile-encoder checks page -> results page
REPRESENTATIONS = "representations"  # representations page -> results page


def table_path(figures_dir: str | os.PathLike, name: str) -> Path:
    """Where a page's table ``name`` (e.g. :data:`SPEED`) lies: ``<figures_dir>/<name>.csv``."""
    return Path(figures_dir) / f"{name}.csv"


def project_root(run_dir: str | os.PathLike) -> Path:
    """The project a run folder belongs to: ``gigassl run`` lays runs out as ``<root>/runs/<profile>`` (the
    ``run_dir`` every execution receives), and ``<root>`` holds ``experiments.yml``, ``notebooks/`` and the files
    the plan's ``inputs`` name (e.g. ``benchmarks/results/seeds.csv``)."""
    return Path(run_dir).parent.parent


@dataclass(frozen=True)
class Declaration:
    """A name of :mod:`gigassl.book.plan`: the notebook whose executions it names (``writer``) and the notebooks that read
    it (``readers``); the plan must define it while one of them is in the plan."""

    constant: str
    name: str
    writer: str
    readers: tuple[str, ...]


_STAGES = ("01_tile_encoder", "02_augmentation_bank", "03_train_gigassl", "04_slide_embeddings", "05_linear_probe",
           "06_tiny_datasets", "07_ablation_augmentation", "08_ablation_tiles", "09_ablation_views",
           "10_ablation_deepmil_aggregator", "11_independent_centres", "14_unlabelled_pool", "15_representations",
           "16_deepmil", "18_evaluations", "20_tile_encoder_checks")
_TRAIN = "03_train_gigassl"
DECLARATIONS = (
    Declaration("COHORT", COHORT, "00_cohort", _STAGES),
    Declaration("TILE_ENCODER", TILE_ENCODER, "01_tile_encoder", ("02_augmentation_bank", _TRAIN,
                                                                   "20_tile_encoder_checks")),
    Declaration("TILE_ENCODER_CHECKS", TILE_ENCODER_CHECKS, "20_tile_encoder_checks", ("12_results",)),
    Declaration("BANK_MOCO_SHARED", BANK_MOCO_SHARED, "02_augmentation_bank", _STAGES[3:]),
    Declaration("SSL_FULL", SSL_FULL, _TRAIN, ("04_slide_embeddings", "05_linear_probe", "06_tiny_datasets",
                                               "09_ablation_views", "12_results", "15_representations",
                                               "18_evaluations")),
    Declaration("SSL_REF", SSL_REF, _TRAIN, ("08_ablation_tiles", "12_results", "14_unlabelled_pool")),
    Declaration("SSL_TILES", SSL_TILES, _TRAIN, ("08_ablation_tiles",)),
    Declaration("SSL_POOL", SSL_POOL, _TRAIN, ("14_unlabelled_pool",)),
    Declaration("SSL_EPOCHS", SSL_EPOCHS, _TRAIN, ("14_unlabelled_pool",)),
    Declaration("DEEPMIL", DEEPMIL, "16_deepmil", ("05_linear_probe", "06_tiny_datasets")),
    *(Declaration(constant, name, writer, ("12_results",)) for constant, name, writer in (
        ("LINEAR_PROBE", LINEAR_PROBE, "05_linear_probe"), ("TINY_DATASETS", TINY_DATASETS, "06_tiny_datasets"),
        ("ABLATION_AUGMENTATION", ABLATION_AUGMENTATION, "07_ablation_augmentation"),
        ("ABLATION_TILES", ABLATION_TILES, "08_ablation_tiles"),
        ("ABLATION_VIEWS", ABLATION_VIEWS, "09_ablation_views"),
        ("ABLATION_DEEPMIL_AGGREGATOR", ABLATION_DEEPMIL_AGGREGATOR, "10_ablation_deepmil_aggregator"),
        ("INDEPENDENT_CENTRES", INDEPENDENT_CENTRES, "11_independent_centres"),
        ("SSL_NO_SLIDE_AUG", SSL_NO_SLIDE_AUG, _TRAIN), ("SSL_NS", SSL_NS, _TRAIN),
        ("SSL_IMAGENET", SSL_IMAGENET, _TRAIN), ("SSL_IMAGENET_NS", SSL_IMAGENET_NS, _TRAIN),
        ("SSL_INDEPENDENT_CENTRES", SSL_INDEPENDENT_CENTRES, _TRAIN), ("SSL_ATTENTION", SSL_ATTENTION, _TRAIN),
        ("SSL_RANDOM_INIT", SSL_RANDOM_INIT, _TRAIN))),
    Declaration("BANK_IMAGENET_SHARED", BANK_IMAGENET_SHARED, "02_augmentation_bank", ("07_ablation_augmentation",)),
)


def grid_runs(run_dir: str | os.PathLike, template: str) -> list[Path]:
    """The folders under ``run_dir`` of the executions of a grid entry (``template``: e.g. :data:`SSL_TILES`),
    sorted by name."""
    prefix = template.split("{", 1)[0]
    return sorted(Path(run_dir).glob(f"{prefix}*"))


def grid_value(path: str | os.PathLike, template: str) -> str:
    """The grid value in the name of one of :func:`grid_runs`' folders (``ssl_pool60`` -> ``"60"``)."""
    return Path(path).name[len(template.split("{", 1)[0]):]


def check(entries: list[dict], where: str = "experiments.yml") -> None:
    """Raise :class:`ConfigError` when the plan's ``entries`` (the ``executions`` of ``experiments.yml``, grids
    unexpanded) lack a name that :data:`DECLARATIONS` declares and a notebook of the plan reads.

    The message names the declared name, the constant, the plan's undeclared executions of the same notebook (the
    likely new name) and both fixes.
    """
    defined = {str(e.get(key)) for e in entries if isinstance(e, dict) for key in ("name", "group") if key in e}
    notebooks = {str(e.get("notebook")) for e in entries if isinstance(e, dict)}
    declared = {d.name for d in DECLARATIONS}
    for d in DECLARATIONS:
        readers = sorted(notebooks & set(d.readers))
        if d.name in defined or not readers:
            continue
        candidates = [str(e["name"]) for e in entries if isinstance(e, dict) and "name" in e
                      and str(e["name"]) not in declared and e.get("notebook") == d.writer]
        renamed = f" The plan's undeclared executions of notebooks/{d.writer}.py: {candidates}." if candidates else ""
        raise ConfigError(
            f"{where} has no execution {d.name!r}, which gigassl/book/plan.py declares as {d.constant} and "
            f"{', '.join(readers)} read{'s' if len(readers) == 1 else ''}.{renamed} Fix: rename the execution back "
            f"to {d.name!r} in {where}, or set {d.constant} = <its new name> in gigassl/book/plan.py.")


def name_pattern(template: str) -> re.Pattern:
    """A regular expression matching the names a (grid) name template expands to."""
    parts = re.split(r"\{[^}]*\}", template)
    return re.compile(".+".join(re.escape(p) for p in parts) + r"\Z")
