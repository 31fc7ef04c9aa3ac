"""The book's stage pages as functions: the cohort, the tile embedder, the bank, the training, the slide embeddings.

Each function does one page's work over the folders of a run (``run_dir``: ``runs/<profile>`` for the book, laid
out by ``experiments.yml``) and returns what the page shows; the notebooks under ``notebooks/`` only set the
parameters, call these and draw (the rule is in ``tests/test_notebooks.py``). The stages themselves are the
modules these call (:mod:`gigassl.tiling`, :mod:`gigassl.moco`, :mod:`gigassl.bank`, :mod:`gigassl.train`,
:mod:`gigassl.embed`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import io
from .plan import COHORT, MANIFEST, MOCO_CHECKPOINT
from ..config import EncoderConfig, Profile, TrainConfig, override
from ..manifest import labelled_ids, pool_ids, task_columns



def cohort_manifest(run_dir: str | os.PathLike) -> pd.DataFrame:
    """The manifest every page after the cohort reads (``<run_dir>/cohort/manifest.csv``), ids as strings."""
    return pd.read_csv(Path(run_dir) / MANIFEST, dtype={"slide_id": str, "case_id": str})


# ---------------------------------------------------------------------------------------------------- cohort
def make_cohort(config: Profile, out_dir: str | os.PathLike, manifest=None):
    """Sec. 4.1: the cohort's slides and tiles. Synthesises the profile's cohort when ``manifest`` is None, tiles
    every slide into ``<out_dir>/coords`` and writes ``<out_dir>/manifest.csv`` (absolute paths).

    Returns: (manifest frame, the tiling's :class:`gigassl.batch.BatchReport`).
    """
    from ..manifest import read_manifest
    from ..cohorts.synth import synthesize
    from ..tiling import tile_cohort

    out = Path(out_dir)
    if manifest is None:
        manifest = synthesize(out / "synthetic", config.synth, progress=False)
    report = tile_cohort(manifest, out / "coords", config.tile, progress=False)
    frame = read_manifest(manifest)
    frame.to_csv(out / "manifest.csv", index=False)
    return frame, report


def example_slide(config: Profile, frame: pd.DataFrame, slide_id: str | None = None) -> pd.Series:
    """The manifest row of ``slide_id``; None: the first slide the synthetic plan gave an artefact (fold, pen mark,
    blur: :func:`gigassl.cohorts.synth.plan_cohort`), or the first slide when the cohort is not the profile's synthetic
    one."""
    from ..cohorts.synth import plan_cohort

    rows = frame.set_index("slide_id", drop=False)
    if slide_id is not None:
        return rows.loc[slide_id]
    plan = plan_cohort(config.synth)
    marked = [s for s in plan.loc[plan["artefacts"], "slide_id"] if s in rows.index]
    return rows.loc[marked[0] if marked else frame["slide_id"].iloc[0]]


def cohort_counts(frame: pd.DataFrame, coords_dir: str | os.PathLike, failed) -> pd.DataFrame:
    """Slides, cases, centres, mean tiles per slide, failures and the count of every label: (what, value)."""
    tiles = {s: len(io.read_coords(Path(coords_dir) / f"{s}.h5")[0]) for s in frame["slide_id"] if s not in failed}
    rows = [{"what": "slides", "value": len(frame)}, {"what": "cases", "value": frame["case_id"].nunique()},
            {"what": "centres", "value": frame["center"].nunique() if "center" in frame else 0},
            {"what": "tiles per slide (mean)", "value": round(sum(tiles.values()) / max(1, len(tiles)), 1)},
            {"what": "slides that failed tiling", "value": len(failed)}]
    for task in task_columns(frame):
        for label, count in frame[task].value_counts().items():
            rows.append({"what": f"{task} = {label}", "value": int(count)})
    return pd.DataFrame(rows)


def cohort_finding(counts: pd.DataFrame) -> str:
    """The cohort in one sentence, from :func:`cohort_counts`."""
    value = counts.set_index("what")["value"]
    return (f"{value['slides']} slides of {value['cases']} cases from {value['centres']} centres, "
            f"{value['tiles per slide (mean)']} tiles per slide on average; {value['slides that failed tiling']} "
            "failed tiling.")


def slides_by_centre(frame: pd.DataFrame) -> pd.DataFrame:
    """Slides per centre and label of the first task (empty when the manifest has no ``center`` column)."""
    if "center" not in frame:
        return pd.DataFrame()
    by_centre = pd.crosstab(frame["center"], [frame[t] for t in task_columns(frame)[:1]])
    by_centre["slides"] = frame["center"].value_counts().sort_index()
    return by_centre


# -------------------------------------------------------------------------------------------- tile embedder
def pretrain(config: Profile, run_dir: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Sec. 4.1: MoCo v2 on the tiles of the labelled cohort (``<out_dir>/moco``); returns the checkpoint."""
    from ..moco import pretrain_tiles

    cohort = Path(run_dir) / COHORT
    labelled = labelled_ids(cohort_manifest(run_dir))
    return pretrain_tiles(cohort / "manifest.csv", cohort / "coords", Path(out_dir) / "moco", config.moco,
                          config.augment, device=config.encoder.device, progress=False, slide_ids=labelled)


def moco_heldout(config: Profile, run_dir: str | os.PathLike, encoder_dir: str | os.PathLike) -> tuple[pd.DataFrame, int]:
    """The label-free check of MoCo: for the random init (epoch 0) and every checkpoint of the tile-encoder execution
    ``encoder_dir`` (its ``moco/``), the retrieval of the other augmented view among tiles of slides MoCo never saw
    (the unlabelled pool; the labelled slides when there is none; :func:`gigassl.moco.retrieval_curve`).

    Returns: (the curve, one row per epoch, with ``held_out_slides``; the number of held-out tiles).
    """
    from ..moco import heldout_tiles, retrieval_curve

    cohort = Path(run_dir) / COHORT
    manifest = cohort / "manifest.csv"
    frame = cohort_manifest(run_dir)
    labelled, pool = labelled_ids(frame), pool_ids(frame)
    heldout = heldout_tiles(manifest, cohort / "coords", pool or labelled, config.moco.heldout_tiles,
                            config.moco.seed)
    curve = retrieval_curve(Path(encoder_dir) / "moco", heldout, config.encoder, config.augment, seed=config.moco.seed,
                            n_bootstrap=config.probe.n_bootstrap)
    return curve.assign(held_out_slides=bool(pool)), len(heldout)


def plain_embeddings(config: Profile, run_dir: str | os.PathLike, folder: str | os.PathLike,
                     weights: str | os.PathLike | None) -> Path:
    """The plain embeddings (``gigassl bank --augmentations 0``) of every tissue tile of the labelled slides with the
    profile's tile embedder at ``weights`` (None: its random init) into ``folder``; returns ``folder``. The MoCo ones
    (``tile_encoder/plain_moco``) are reused by the MoCo banks and by the encoder comparison."""
    from ..bank import build_bank

    cohort = Path(run_dir) / COHORT
    plain = dataclasses.replace(config.bank, augmentations=0)
    encoder = dataclasses.replace(config.encoder, weights=None if weights is None else str(weights))
    build_bank(cohort / "manifest.csv", cohort / "coords", folder, plain, encoder, config.augment, progress=False,
               slide_ids=labelled_ids(cohort_manifest(run_dir)))
    return Path(folder)


def encoder_comparison(config: Profile, run_dir: str | os.PathLike, out_dir: str | os.PathLike,
                       moco_plain: str | os.PathLike, tasks=None) -> pd.DataFrame:
    """AverageMIL with the MoCo tile embedder against its random init: the MoCo plain embeddings ``moco_plain``
    (:func:`plain_embeddings`, written by the tile-encoder page) and the random init's (``<out_dir>/plain_random``),
    probed over the profile's splits at 100% of the labels. Returns one row per task: random init, MoCo and their
    difference (AUC)."""
    from ..evaluation.baselines import run_averagemil
    from ..evaluation.metrics import summarize

    labels = pd.read_csv(Path(run_dir) / COHORT / "manifest.csv")
    folders = {"random init": plain_embeddings(config, run_dir, Path(out_dir) / "plain_random", None),
               "MoCo": Path(moco_plain)}
    rows = []
    for name, folder in folders.items():
        for task in tasks or task_columns(labels):
            table = run_averagemil(folder, labels, task, n_splits=config.probe.n_splits, budgets=(1.0,),
                                   train_sizes=(), config=config.probe)
            summary = summarize(table, n_bootstrap=config.probe.n_bootstrap, seed=config.probe.seed)
            rows.append({"encoder": name, "task": task, "auc_mean": summary["auc_mean"].iloc[0],
                         "auc_std": summary["auc_std"].iloc[0]})
    useful = pd.DataFrame(rows).pivot(index="task", columns="encoder", values="auc_mean").reset_index()
    useful["MoCo - random"] = useful["MoCo"] - useful["random init"]
    return useful


def pretrain_finding(log: pd.DataFrame) -> str:
    """The tile-encoder page's finding in one sentence, from MoCo's per-epoch log (``moco/log.csv``: ``epoch``,
    ``loss``)."""
    first, last = log.iloc[0], log.iloc[-1]
    return (f"MoCo trained {int(last.epoch) + 1 - int(first.epoch)} epochs; its mean training loss (against a "
            f"queue whose negatives get harder) went from {first.loss:.3f} (epoch {int(first.epoch)}) to "
            f"{last.loss:.3f} (epoch {int(last.epoch)}). Whether the encoder learnt "
            "is checked on the next page, against fixed negatives on held-out tiles and with labels.")


def moco_finding(curve: pd.DataFrame, useful: pd.DataFrame, n_heldout: int) -> str:
    """The tile-embedder page's finding in one sentence, from :func:`moco_heldout` and :func:`encoder_comparison`."""
    last, first = curve.iloc[-1], curve.iloc[0]
    return (f"On {n_heldout} held-out tiles, MoCo's loss with fixed negatives goes from {first.infonce:.3f} (random "
            f"init) to {last.infonce:.3f} at epoch {int(last.epoch)} (chance {first.chance_infonce:.3f}); top-1 "
            f"retrieval from {first.top1:.4f} to {last.top1:.4f} (chance {first.chance_top1:.4f}; gain "
            f"{last.gain:+.4f} [{last.ci_low:+.4f}, {last.ci_high:+.4f}], {last.verdict}). MoCo beats the random "
            f"encoder's AverageMIL on {int((useful['MoCo - random'] > 0).sum())} of {len(useful)} tasks "
            f"(mean difference {useful['MoCo - random'].mean():+.3f} AUC).")


# ------------------------------------------------------------------------------------------------------ bank
def bank_encoder(config: Profile, encoder: str, run_dir: str | os.PathLike) -> EncoderConfig:
    """The tile embedder of a bank: ``moco`` (the run's MoCo ResNet18) or ``imagenet`` (EfficientNet-Lite0 with
    ImageNet weights: the Giga-SSLim ablation, Table 3)."""
    from ..config import choice

    choice(encoder, ("moco", "imagenet"), "the bank page's encoder")
    if encoder == "moco":
        return dataclasses.replace(config.encoder, name="resnet18", weights=str(Path(run_dir) / MOCO_CHECKPOINT))
    return dataclasses.replace(config.encoder, name="efficientnet_lite0", weights=None)


def make_bank(config: Profile, run_dir: str | os.PathLike, out_dir: str | os.PathLike, encoder: str = "moco",
              pool: bool = False, plain_from: str | None = None, **augment):
    """Sec. 3.2: the augmentation bank of the cohort (the labelled slides, and the unlabelled pool with ``pool``).

    Args:
        encoder: the page's tile embedder, ``moco`` or ``imagenet`` (:func:`bank_encoder`).
        pool: also the slides of the unlabelled pool (SSL only).
        plain_from: an execution under ``run_dir`` whose plain embeddings (same encoder) are reused.
        **augment: :class:`gigassl.config.AugmentConfig` fields over the profile's (:func:`gigassl.config.override`:
            None keeps the profile's value), e.g. ``mode="independent"`` (NS, Table 3).

    Returns: the :class:`gigassl.batch.BatchReport`.
    """
    from ..bank import build_bank

    cohort = Path(run_dir) / COHORT
    manifest = cohort_manifest(run_dir)
    return build_bank(cohort / "manifest.csv", cohort / "coords", out_dir, config.bank,
                      bank_encoder(config, encoder, run_dir), override(config.augment, **augment),
                      progress=False, slide_ids=None if pool else labelled_ids(manifest),
                      plain_from=plain_from and Path(run_dir) / plain_from)


def bank_summary(out_dir: str | os.PathLike, report) -> pd.DataFrame:
    """One row: slides, A, N, F, the encoder, the augmentation mode and the failures of a bank."""
    bank_files = sorted(Path(out_dir).glob("*.h5"))
    first = io.read_bank(bank_files[0])
    return pd.DataFrame([{"slides": len(bank_files), "draws A": first.features.shape[0],
                          "tiles per draw N": first.features.shape[1], "feature dim F": first.features.shape[2],
                          "encoder": first.attrs["encoder"], "mode": first.attrs["augmentation_mode"],
                          "failures": len(report.failed)}])


def bank_finding(summary: pd.DataFrame) -> str:
    """A bank in one sentence, from :func:`bank_summary`."""
    row = summary.iloc[0]
    return (f"{row['slides']} slides, A = {row['draws A']} draws of N = {row['tiles per draw N']} tiles each, "
            f"F = {row['feature dim F']} ({row['encoder']}, {row['mode']} augmentation); {row['failures']} failures.")


# --------------------------------------------------------------------------------------------------- training
@dataclass(frozen=True)
class TrainingRun:
    """What :func:`train_ssl` made: the checkpoint, the embeddings of the labelled slides, the config it trained
    with (batch size clamped to the slides) and a sentence saying on which slides."""

    checkpoint: Path
    embeddings: Path
    config: TrainConfig
    slides: str


def train_ssl(config: Profile, run_dir: str | os.PathLike, out_dir: str | os.PathLike, bank: str,
              pool: int | None = 0, monitor_task: str = "nsclc_like", exclude_probe_centres: bool = False,
              encoder_weights: str | None = MOCO_CHECKPOINT, **train_changes) -> TrainingRun:
    """Sec. 3.1 Steps 3-6 and Sec. 4.2: Giga-SSL trained on the bank ``<run_dir>/<bank>``, then every labelled slide
    embedded (R views of T plain tiles).

    Args:
        pool: page parameter: unlabelled pool slides added to the labelled cohort (None: the bank's whole pool).
        monitor_task: page parameter: the label column the monitor probes (with ``monitor_every``).
        exclude_probe_centres: page parameter: train only on the centres absent from the probe slides (Table 4,
            :func:`gigassl.evaluation.centres.centre_holdout`).
        encoder_weights: page parameter: under ``run_dir``, the tile embedder whose layer4 starts the aggregator
            (None: none).
        **train_changes: :class:`gigassl.config.TrainConfig` fields, and those of its ``maps``, over the profile's
            (:func:`gigassl.config.override`: None keeps the profile's value; an unknown name is a ConfigError), e.g.
            ``steps``, ``tiles_per_view``, ``aggregator``, ``bn_views``, ``slide_aug``: what an ablation changes.

    The batch size is the profile's, or the number of slides when there are fewer.
    """
    from ..bank import bank_slide_ids
    from ..embed import embed_slides
    from ..evaluation.monitor import training_monitor
    from ..manifest import ssl_slide_ids
    from ..evaluation.centres import centre_holdout
    from ..train import train

    train_config = override(config.train, **train_changes)
    bank_dir = Path(run_dir) / bank
    manifest = cohort_manifest(run_dir)
    excluded = centre_holdout(manifest, seed=config.probe.seed) if exclude_probe_centres else ()
    slides = ssl_slide_ids(manifest, pool=pool, exclude_centres=excluded, available=bank_slide_ids(bank_dir))
    train_config = dataclasses.replace(train_config, batch_size=min(train_config.batch_size, len(slides)))
    said = (f"SSL on {len(slides)} slides ({len(set(slides) - set(labelled_ids(manifest)))} of them from the "
            f"unlabelled pool){'; probe centres ' + str(list(excluded)) + ' excluded' if excluded else ''}")
    watch = None
    if train_config.monitor_every:
        watch = training_monitor(manifest, [monitor_task], train_config.maps, views=max(1, config.embed.views // 5),
                                 tiles=train_config.tiles_per_view, probe=config.probe, seed=config.embed.seed,
                                 device=train_config.device)
    checkpoint = train(bank_dir, out_dir, train_config,
                       encoder_weights=encoder_weights and str(Path(run_dir) / encoder_weights),
                       slide_ids=slides, monitor=watch, progress=False, overwrite=True)  # the runner owns out_dir
    embed_config = dataclasses.replace(config.embed, tiles_per_view=train_config.tiles_per_view)
    embeddings = embed_slides(bank_dir, checkpoint, Path(out_dir) / "embeddings.h5", embed_config, progress=False,
                              slide_ids=labelled_ids(manifest))
    return TrainingRun(Path(checkpoint), Path(embeddings), train_config, said)


def chance_loss(batch_size: int) -> float:
    """NT-Xent's value when two views of a slide are no closer than views of other slides: log(2B - 1)."""
    return math.log(2 * batch_size - 1)


def training_finding(log: pd.DataFrame, batch_size: int) -> str:
    """The last epoch of a training log in one sentence: loss against log(2B - 1), and the label-free diagnostics."""
    chance = chance_loss(batch_size)
    return (f"{int(log.step.iloc[-1])} steps in {len(log)} epochs; last epoch: loss {log.loss.iloc[-1]:.3f} "
            f"(log(2B - 1) = {chance:.3f}), alignment {log.alignment.iloc[-1]:.3f}, uniformity "
            f"{log.uniformity.iloc[-1]:.3f}, mean cosine of W {log.mean_cosine.iloc[-1]:.3f}, effective rank of W "
            f"{log.effective_rank.iloc[-1]:.1f}")


def monitor_over_training(out_dir: str | os.PathLike) -> pd.DataFrame:
    """The monitor of a run (``monitor.csv``) per epoch: the fair protocol's mean probe AUC beside the diagnostics
    of the slide embeddings (empty when the run was not monitored)."""
    path = Path(out_dir) / "monitor.csv"
    if not path.exists():
        return pd.DataFrame()
    monitor = pd.read_csv(path)
    diagnostics = monitor[monitor["kind"] == "diagnostics"].dropna(axis=1, how="all")
    fair = monitor[(monitor["kind"] == "probe") & (monitor["protocol"] == "fair")]
    probe = fair.groupby("epoch")["auc"].mean().rename("probe_auc").reset_index()
    return diagnostics.merge(probe, on="epoch")


# ------------------------------------------------------------------------------------------ slide embeddings
@dataclass(frozen=True)
class SlideEmbeddings:
    """The embeddings of a training run with the manifest rows of their slides, in the same order."""

    path: Path
    ids: list
    matrix: np.ndarray
    attrs: dict
    manifest: pd.DataFrame

    def describe(self) -> str:
        """Slides, dimension, R, T and the range of the row norms, in one sentence."""
        norms = np.linalg.norm(self.matrix, axis=1)
        return (f"{len(self.ids)} slides, {self.matrix.shape[1]}-d, R = {self.attrs['views']} views of T = "
                f"{self.attrs['tiles_per_view']} tiles; row norms {norms.min():.4f}-{norms.max():.4f}")


def run_embeddings(run_dir: str | os.PathLike, train: str) -> SlideEmbeddings:
    """The slide embeddings the training run ``<run_dir>/<train>`` wrote (``embeddings.h5``)."""
    path = Path(run_dir) / train / "embeddings.h5"
    ids, matrix, attrs = io.read_embeddings(path)
    manifest = pd.read_csv(Path(run_dir) / MANIFEST).set_index("slide_id").loc[ids].reset_index()
    return SlideEmbeddings(path, ids, matrix, attrs, manifest)


def standardized_average(bank_dir: str | os.PathLike, ids) -> np.ndarray:
    """AverageMIL's slide embeddings (the mean of the plain tile embeddings), standard-scaled over the slides, as
    its probe sees them: (S, F)."""
    from ..evaluation.baselines import average_embeddings

    _, average = average_embeddings(bank_dir, ids)
    return (average - average.mean(0)) / (average.std(0) + 1e-8)


def embedding_reproducibility(config: Profile, run_dir: str | os.PathLike, train: str, bank: str,
                              out_dir: str | os.PathLike, embeddings: SlideEmbeddings) -> pd.DataFrame:
    """Embeds the run's slides again with the same checkpoint, R, T and seed (``<out_dir>/again.h5``) and compares
    with the run's embeddings: equal bit for bit on a CPU, and the largest difference."""
    from ..embed import embed_slides

    attrs = embeddings.attrs
    again = dataclasses.replace(config.embed, views=int(attrs["views"]), tiles_per_view=int(attrs["tiles_per_view"]),
                                seed=int(attrs["seed"]))
    same = io.read_embeddings(embed_slides(Path(run_dir) / bank, Path(run_dir) / train / "checkpoint.pt",
                                           Path(out_dir) / "again.h5", again, progress=False,
                                           slide_ids=embeddings.ids))[1]
    emb = embeddings.matrix
    return pd.DataFrame([{"slides": len(embeddings.ids), "dimension": emb.shape[1], "views R": attrs["views"],
                          "tiles per view T": attrs["tiles_per_view"],
                          "same seed, same embeddings (bit for bit on a CPU)": bool(np.array_equal(same, emb)),
                          "largest difference": float(np.abs(same - emb).max()),
                          "size of the embedding file (kB)": round(embeddings.path.stat().st_size / 1024, 1)}])
