"""The book's experiments as functions: Table 2, Fig. 2, Table 3, Fig. 3, Table 4, DeepMIL and the pool.

Each function runs one page's probes over the training runs of a plan (``run_dir``: ``runs/<profile>``, laid out
by ``experiments.yml``) and returns its tables as data: every method sees the same splits
(:func:`gigassl.evaluation.protocol.probe_runs`), every comparison is paired over them (:func:`gigassl.evaluation.compare.paired`), and
the per-split table is written to ``<out_dir>/splits.csv`` for the results page. The notebooks only set the
parameters, call these and draw (``tests/test_notebooks.py``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .. import io
from ..evaluation.compare import paired
from ..config import Profile
from ..manifest import labelled_ids, task_columns
from ..evaluation.metrics import summarize
from .plan import (BANK_MOCO_SHARED, DEEPMIL, DEEPMIL_FIG2_SPLITS, DEEPMIL_TABLE2_SPLITS, EMBEDDINGS, SPLITS, SSL_FULL,
                   SSL_EPOCHS, SSL_POOL, SSL_REF, SSL_TILES, grid_runs, grid_value)
from ..evaluation.probe import PROTOCOLS
from ..evaluation.protocol import probe_runs
from ..evaluation.splits import budget_name
from .stages import cohort_manifest


def _write_splits(splits: pd.DataFrame, out_dir) -> None:
    splits.to_csv(Path(out_dir) / SPLITS, index=False)


def _boot(config: Profile) -> dict:
    return dict(n_bootstrap=config.probe.n_bootstrap, seed=config.probe.seed)


def _label(pairs: pd.DataFrame, head: pd.Series, *columns: str) -> pd.DataFrame:
    """Pairs with a ``comparison`` column: ``head`` then ``columns``, joined by `` | `` (the rows of a forest plot)."""
    label = head
    for column in columns:
        label = label + " | " + pairs[column]
    return pairs.assign(comparison=label)


def split_table(run_dir, name: str) -> pd.DataFrame:
    """The per-split table an experiment page wrote (``<run_dir>/<name>/splits.csv``), budgets as strings."""
    return pd.read_csv(Path(run_dir) / name / SPLITS, dtype={"budget": str})


def _deepmil_splits(run_dir, name: str) -> list[pd.DataFrame]:
    """The DeepMIL page's per-split table, once per probe protocol (no linear probe: the same under both)."""
    deep = pd.read_csv(Path(run_dir) / DEEPMIL / name, dtype={"budget": str, "split": str})
    return [deep.assign(protocol=protocol) for protocol in PROTOCOLS]


# ----------------------------------------------------------------------------------------------- Table 2
@dataclass(frozen=True)
class Table2:
    """The linear-probe page (Sec. 4.2-4.3, Table 2): per-split AUCs, the summary, the paired differences, the fair
    protocol's choices, DeepMIL against AverageMIL, the calibration check and the time of each method."""

    splits: pd.DataFrame
    table: pd.DataFrame
    pairs: pd.DataFrame
    choices: pd.DataFrame
    deepmil_vs_averagemil: pd.DataFrame
    calibration: pd.DataFrame
    speed: pd.DataFrame


def run_table2(config: Profile, run_dir, out_dir, tasks=None, train: str = SSL_FULL,
           bank: str = BANK_MOCO_SHARED) -> Table2:
    """Giga-SSL's linear probe (``<run_dir>/<train>/embeddings.h5``), AverageMIL (the mean of the plain tile
    embeddings of ``<run_dir>/<bank>``) and DeepMIL (the DeepMIL page's splits) at the profile's label budgets,
    under both probe protocols."""
    from ..evaluation.baselines import average_embeddings
    from .paper import CALIBRATION_BAND

    manifest = cohort_manifest(run_dir)
    tasks = tasks or task_columns(manifest)
    average = average_embeddings(Path(run_dir) / bank, labelled_ids(manifest))
    named = {"gigassl": (Path(run_dir) / train / EMBEDDINGS, "l2"), "averagemil": (average, "standard")}
    tables = [probe_runs(named, manifest, tasks, config=config.probe, n_splits=config.probe.n_splits,
                         budgets=tuple(config.probe.budgets), train_sizes=())]
    splits = pd.concat(tables + _deepmil_splits(run_dir, DEEPMIL_TABLE2_SPLITS), ignore_index=True)
    _write_splits(splits, out_dir)
    summary = summarize(splits, **_boot(config))
    table = summary[["protocol", "task", "budget", "method", "n_splits", "auc_mean", "auc_std", "ci_low", "ci_high",
                     "n_train", "n_test", "cpu_seconds"]].sort_values(["protocol", "task", "budget", "method"])
    pairs = pd.concat([paired(splits, "gigassl", baseline, **_boot(config)) for baseline in ("averagemil", "deepmil")],
                      ignore_index=True)
    chosen = splits[(splits["protocol"] == "fair") & splits["method"].isin(["gigassl", "averagemil"])]
    choices = chosen.groupby(["method", "preprocessing", "C"]).size().rename("splits").reset_index()
    versus = paired(splits[splits["protocol"] == "paper"], "deepmil", "averagemil", **_boot(config))
    calibration = table[(table["method"] == "averagemil") & (table["budget"] == "full")
                        & (table["protocol"] == "paper")][["task", "auc_mean", "auc_std"]]
    calibration = calibration.assign(within_0_65_0_92=calibration["auc_mean"].between(*CALIBRATION_BAND))
    full = splits[(splits["budget"] == "full") & (splits["protocol"] == "paper")]
    speed = full.groupby("method", sort=False)[["cpu_seconds", "wall_seconds"]].mean().reset_index()
    probe_cpu = float(speed.loc[speed["method"] == "gigassl", "cpu_seconds"].iloc[0])
    speed["x linear probe"] = speed["cpu_seconds"] / probe_cpu
    pairs = _label(pairs, pairs["a"] + " - " + pairs["b"], "task", "budget", "protocol")
    return Table2(splits, table, pairs, choices, versus, calibration, speed)


def deepmil_finding(few_tiles: pd.DataFrame, versus: pd.DataFrame) -> str:
    """The few-tile check and DeepMIL minus AverageMIL at 100% of the labels, in one sentence."""
    return (f"few-tile check: DeepMIL {few_tiles['auc_a'].iloc[0]:.3f} against AverageMIL "
            f"{few_tiles['auc_b'].iloc[0]:.3f} ({few_tiles['verdict'].iloc[0]}); on the demo's tasks at 100%: "
            + "; ".join(f"{r.task} {r.difference:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}] ({r.verdict})"
                        for r in versus[versus["budget"] == "full"].itertuples()))


def calibration_table() -> pd.DataFrame:
    """The calibration runs of the synthetic cohort (:func:`gigassl.book.paper.calibration_history`), one row per step,
    generator change and encoder, one column per task (AverageMIL's AUC)."""
    from .paper import calibration_history as history

    return history().pivot_table(index=["step", "synth_changes", "encoder"], columns="task",
                                 values="auc_mean").reset_index()


# ------------------------------------------------------------------------------------------------- Fig. 2
@dataclass(frozen=True)
class TinyDatasets:
    """The tiny-datasets page (Sec. 4.3, Fig. 2): per-split AUCs, Giga-SSL minus DeepMIL per training size and
    task, and the paper's Fig. 2 claims (the mean over tasks) per protocol."""

    splits: pd.DataFrame
    gains: pd.DataFrame
    claims: pd.DataFrame


def tiny_datasets(config: Profile, run_dir, out_dir, tasks=None, train: str = SSL_FULL) -> TinyDatasets:
    """Giga-SSL's linear probe against DeepMIL (the DeepMIL page's splits) on training sets of exactly N slides
    (the profile's ``train_sizes``)."""
    from ..book import paper

    manifest = cohort_manifest(run_dir)
    tasks = tasks or task_columns(manifest)
    tables = [probe_runs({"gigassl": (Path(run_dir) / train / EMBEDDINGS, "l2")}, manifest, tasks,
                         config=config.probe, n_splits=config.probe.n_splits, budgets=(),
                         train_sizes=tuple(config.probe.train_sizes))]
    splits = pd.concat(tables + _deepmil_splits(run_dir, DEEPMIL_FIG2_SPLITS), ignore_index=True)
    _write_splits(splits, out_dir)
    gains = paired(splits, "gigassl", "deepmil", **_boot(config))
    gains = gains.assign(train_size=gains["budget"].astype(int)).sort_values(["protocol", "task", "train_size"])
    claims = pd.concat([paper.fig2(splits, protocol=p) for p in PROTOCOLS], ignore_index=True)
    return TinyDatasets(splits, gains, claims)


# ------------------------------------------------------------------------------------------------ Table 3
# What the ImageNet arm differs in besides its encoder: the encoders' feature sizes (gigassl.encoders).
FEATURE_DIMS = "tile features 1280-d (EfficientNet-Lite0, ImageNet) vs 256-d (ResNet18 to layer3, MoCo)"
AGGREGATOR_START = "aggregator start: random vs the tile embedder's layer4"


@dataclass(frozen=True)
class Contrast:
    """One paired comparison of the augmentation page: ``a`` minus ``b`` (names of the page's arms), the one
    ``factor`` they are meant to differ in, and what else differs (``also``, empty when nothing)."""

    a: str
    b: str
    factor: str
    also: str = ""


# The one-factor reference of a variant when it is not ``full``: the ImageNet arms start their aggregator at random
# (EfficientNet-Lite0 has no layer4), so they are set against the MoCo arm trained the same way with a random start.
REFERENCES = {
    "imagenet": Contrast("imagenet", "random_init", "tile encoder (Giga-SSL, both aggregators start random)",
                         FEATURE_DIMS),
    "imagenet_ns": Contrast("imagenet_ns", "random_init", "tile encoder and tile augmentation not shared (the "
                            "paper's Giga-SSLim NS against Giga-SSL: two factors)", FEATURE_DIMS),
}
# AverageMIL on each encoder's plain tile embeddings tells the encoder's part from the SSL's part: the encoder alone
# (AverageMIL ImageNet - AverageMIL MoCo) and SSL on one encoder (Giga-SSL - AverageMIL, same tile features; both
# Giga-SSL arms with a random aggregator start).
CONTROLS = (
    Contrast("averagemil_imagenet", "averagemil_moco", "tile encoder (AverageMIL)", FEATURE_DIMS),
    Contrast("imagenet", "averagemil_imagenet", "SSL on the ImageNet tile features",
             "paper protocol only: L2 vs standard scaling"),
    Contrast("random_init", "averagemil_moco", "SSL on the MoCo tile features",
             "paper protocol only: L2 vs standard scaling"),
)


def variant_contrast(variant: str, variants) -> Contrast:
    """The comparison of ``variant`` on the augmentation page: against its one-factor reference
    (:data:`REFERENCES`) when that arm is among ``variants``, else against ``full``, with what else differs (an
    ImageNet arm against ``full`` differs in its encoder and its aggregator start: both are said)."""
    reference = REFERENCES.get(variant)
    if reference is None:
        return Contrast(variant, "full", variant)
    if reference.b in variants:
        return reference
    return Contrast(variant, "full", reference.factor.split(" (")[0], f"{AGGREGATOR_START}; {reference.also}")


@dataclass(frozen=True)
class AugmentationAblation:
    """The augmentation ablation (Sec. 5, Table 3): per-split AUCs, the table, each variant minus its reference
    (``full``, or the arm that differs from it in one factor: :func:`variant_contrast`), the AverageMIL controls
    (:data:`CONTROLS`), the centre shortcut (neighbours sharing the centre or a label) and the embeddings of each
    variant."""

    splits: pd.DataFrame
    table: pd.DataFrame
    pairs: pd.DataFrame
    shortcut: pd.DataFrame
    embeddings: dict = field(repr=False)
    controls: pd.DataFrame = field(default_factory=pd.DataFrame)

    def wide(self, variants) -> pd.DataFrame:
        """The AUC table with one column per variant (and per AverageMIL control the page probed)."""
        wide = self.table.pivot_table(index=["protocol", "task", "regime"], columns="variant", values="auc_mean")
        return wide[list(variants) + [c for c in wide.columns if c not in variants]]

    def shortcut_wide(self, variants) -> pd.DataFrame:
        """The neighbour agreement with one column per variant."""
        return self.shortcut.pivot(index="attribute", columns="variant",
                                   values="neighbours_sharing_it")[list(variants)]


def _contrast_pairs(splits: pd.DataFrame, contrasts, config: Profile) -> pd.DataFrame:
    """Each contrast's ``a - b`` paired over splits (:func:`gigassl.evaluation.compare.paired`), with its factor
    and what else differs (columns ``factor``, ``also_differs``)."""
    frames = [paired(splits, c.a, c.b, **_boot(config)).assign(factor=c.factor, also_differs=c.also)
              for c in contrasts]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def augmentation_ablation(config: Profile, run_dir, out_dir, variants: dict, tasks=None,
                          neighbours: int = 5, baselines: dict | None = None) -> AugmentationAblation:
    """Each variant (``{variant: training run}``, with ``full`` the reference) probed at 100% of the labels and on
    the profile's smallest training set; each minus its reference (:func:`variant_contrast`), paired; and for each,
    the fraction of each slide's ``neighbours`` nearest neighbours that share its centre or label, against chance.

    ``baselines``: ``{name: bank}`` (e.g. ``{"averagemil_moco": "bank_moco_shared", "averagemil_imagenet":
    "bank_imagenet_shared"}``): AverageMIL (the mean of the bank's plain tile embeddings) probed on the same splits,
    and the contrasts of :data:`CONTROLS` whose two arms the page has (``controls``).
    """
    from ..evaluation.baselines import average_embeddings
    from ..evaluation.diagnostics import label_agreement_chance, neighbour_agreement

    manifest = cohort_manifest(run_dir)
    tasks = tasks or task_columns(manifest)
    smallest = min(config.probe.train_sizes)
    named = {variant: (Path(run_dir) / run / EMBEDDINGS, "l2") for variant, run in variants.items()}
    for name, bank in (baselines or {}).items():
        named[name] = (average_embeddings(Path(run_dir) / bank, labelled_ids(manifest)), "standard")
    splits = probe_runs(named, manifest, tasks, budgets=(1.0,), train_sizes=(smallest,), config=config.probe,
                        n_splits=config.probe.n_splits)
    _write_splits(splits, out_dir)
    summary = summarize(splits, n_bootstrap=0)
    table = summary.assign(variant=summary["method"], regime=summary["budget"].map(
        {"full": "100%", budget_name(size=smallest): f"{smallest} WSI"}))  # the paper's smallest: 50 WSI
    table = table[["protocol", "variant", "task", "regime", "n_train", "auc_mean", "auc_std"]]
    pairs = _contrast_pairs(splits, [variant_contrast(v, variants) for v in variants if v != "full"], config)
    controls = _contrast_pairs(splits, [c for c in CONTROLS if {c.a, c.b} <= set(named)], config)
    if len(controls):
        controls = _label(controls, controls["a"] + " - " + controls["b"], "task", "budget", "protocol")
    rows, embeddings = [], {}
    for variant, run in variants.items():
        ids, emb, _ = io.read_embeddings(Path(run_dir) / run / EMBEDDINGS)
        frame = manifest.set_index("slide_id").loc[ids].reset_index()
        labelled = frame[tasks].notna().any(axis=1).to_numpy()
        emb, frame = emb[labelled], frame[labelled].reset_index(drop=True)
        embeddings[variant] = (emb, frame)
        for column in ["center"] + tasks:
            rows.append({"variant": variant, "attribute": column,
                         "neighbours_sharing_it": neighbour_agreement(emb, frame[column], k=neighbours),
                         "chance": label_agreement_chance(frame[column], k=neighbours)})
    label = pairs["a"].where(pairs["b"] == "full", pairs["a"] + " - " + pairs["b"])
    return AugmentationAblation(splits, table, _label(pairs, label, "task", "budget", "protocol"),
                                pd.DataFrame(rows), embeddings, controls)


def controls_finding(controls: pd.DataFrame, protocol: str = "fair") -> str:
    """The AverageMIL controls (:data:`CONTROLS`) in one sentence per contrast under ``protocol``: its factor, the
    mean difference over tasks and regimes, and how many of its intervals are decided either way."""
    if controls is None or controls.empty:
        return "No AverageMIL control was probed."
    part = controls[controls["protocol"] == protocol]
    said = []
    for (factor, a, b), rows in part.groupby(["factor", "a", "b"], sort=False):
        above, below = int((rows["ci_low"] > 0).sum()), int((rows["ci_high"] < 0).sum())
        said.append(f"{factor} ({a} - {b}): mean {rows['difference'].mean():+.3f} AUC, above 0 in {above}, below 0 "
                    f"in {below} of {len(rows)}")
    return f"Encoder or SSL, under the {protocol} protocol: " + "; ".join(said) + "."


# ------------------------------------------------------------------------------------------------- Fig. 3
def _curve_table(splits: pd.DataFrame, column: str) -> pd.DataFrame:
    """Mean and std AUC per protocol, task and method, the method's number (``T5`` -> 5) in ``column``."""
    summary = summarize(splits, n_bootstrap=0)
    summary = summary.assign(**{column: summary["method"].str[1:].astype(int)})
    return summary[["protocol", column, "task", "auc_mean", "auc_std"]].sort_values(["protocol", "task", column])


def tiles_ablation(config: Profile, run_dir, out_dir, tasks=None, runs=None) -> pd.DataFrame:
    """Fig. 3A: the training runs with different T (``runs``; None: ``ssl_ref`` and every ``ssl_T<k>``), each named
    by the T its embeddings record, probed at 100% of the labels. Returns AUC per protocol, T and task."""
    manifest = cohort_manifest(run_dir)
    tasks = tasks or task_columns(manifest)
    runs = runs or [SSL_REF] + [p.name for p in grid_runs(run_dir, SSL_TILES)]
    named = {}
    for run in runs:
        path = Path(run_dir) / run / EMBEDDINGS
        named[f"T{int(io.read_embeddings(path)[2]['tiles_per_view'])}"] = (path, "l2")
    splits = probe_runs(named, manifest, tasks, budgets=(1.0,), train_sizes=(), config=config.probe,
                        n_splits=config.probe.n_splits)
    _write_splits(splits, out_dir)
    return _curve_table(splits, "tiles_per_view")


def views_ablation(config: Profile, run_dir, out_dir, views, tasks=None, train: str = SSL_FULL,
                   bank: str = BANK_MOCO_SHARED) -> pd.DataFrame:
    """Fig. 3B: the slides embedded by one trained model with each number of views R in ``views``
    (``<out_dir>/R<r>.h5``), probed at 100% of the labels. Returns AUC per protocol, R and task."""
    from ..embed import embed_slides

    manifest = cohort_manifest(run_dir)
    tasks = tasks or task_columns(manifest)
    named = {f"R{r}": (embed_slides(Path(run_dir) / bank, Path(run_dir) / train / "checkpoint.pt",
                                    Path(out_dir) / f"R{r}.h5", dataclasses.replace(config.embed, views=r),
                                    progress=False), "l2") for r in views}
    splits = probe_runs(named, manifest, tasks, budgets=(1.0,), train_sizes=(), config=config.probe,
                        n_splits=config.probe.n_splits)
    _write_splits(splits, out_dir)
    return _curve_table(splits, "views")


def aggregator_ablation(run_dir, out_dir, runs: dict) -> tuple[pd.DataFrame, dict]:
    """Fig. 3C: the monitors of SSL runs with different aggregators (``{aggregator: run}``): the mean probe AUC per
    protocol, epoch and task (per-split rows to ``<out_dir>/splits.csv``), and each run's training log."""
    from ..evaluation.monitor import monitor_table

    per_split, per_epoch = zip(*(monitor_table(pd.read_csv(Path(run_dir) / run / "monitor.csv"), aggregator)
                                 for aggregator, run in runs.items()))
    _write_splits(pd.concat(per_split, ignore_index=True), out_dir)
    logs = {aggregator: pd.read_csv(Path(run_dir) / run / "log.csv") for aggregator, run in runs.items()}
    return pd.concat(per_epoch, ignore_index=True), logs


# ------------------------------------------------------------------------------------------------ Table 4
@dataclass(frozen=True)
class IndependentCentres:
    """The generalisation page (Sec. 5, Table 4): the probe centres, per-split AUCs and the table."""

    probe_centres: list
    n_probe_slides: int
    splits: pd.DataFrame
    table: pd.DataFrame

    def describe(self) -> str:
        return (f"probe centres {self.probe_centres}: {self.n_probe_slides} slides; the independent model never saw "
                "them")

    def wide(self) -> pd.DataFrame:
        return self.table.pivot_table(index=["protocol", "task", "regime"], columns="model", values="auc_mean")


def independent_centres(config: Profile, run_dir, out_dir, models: dict, tasks=None,
                        train_size: int | None = None) -> IndependentCentres:
    """The models (``{model: run}``: ``full`` trained on every slide, ``independent`` on the other centres) probed on
    the slides of the probe centres (:func:`gigassl.evaluation.centres.centre_holdout`) at 100% and on a training set of
    ``train_size`` slides (None: the profile's smallest; 0: none)."""
    from ..evaluation.centres import centre_holdout

    manifest = cohort_manifest(run_dir)
    tasks = tasks or task_columns(manifest)
    probe_centres = centre_holdout(manifest, seed=config.probe.seed)
    probe_slides = manifest[manifest["center"].isin(probe_centres)]
    smallest = min(config.probe.train_sizes) if train_size is None else train_size
    named = {model: (Path(run_dir) / run / EMBEDDINGS, "l2") for model, run in models.items()}
    splits = probe_runs(named, probe_slides, tasks, budgets=(1.0,), train_sizes=(smallest,) if smallest else (),
                        config=config.probe, n_splits=config.probe.n_splits)
    _write_splits(splits, out_dir)
    summary = summarize(splits, n_bootstrap=0)
    table = summary.assign(model=summary["method"], regime=summary["budget"].map(
        {"full": "100%", budget_name(size=smallest or 1): f"{smallest} WSI"}))
    table = table[["protocol", "model", "task", "regime", "n_train", "auc_mean", "auc_std"]]
    return IndependentCentres(list(probe_centres), len(probe_slides), splits, table)


# ----------------------------------------------------------------------------------------- unlabelled pool
@dataclass(frozen=True)
class UnlabelledPool:
    """The pool page: per-split AUCs, the summary per regime and pool size (with each run's steps and passes over
    a slide), and, per regime, the largest pool against no pool and against AverageMIL, paired."""

    splits: pd.DataFrame
    summary: pd.DataFrame
    gain: pd.DataFrame


# the pool study's two regimes: the grid of each, and the name of its methods' suffix
POOL_REGIMES = {"same steps": (SSL_POOL, "U"), "same epochs": (SSL_EPOCHS, "E")}


def _steps_run(run: Path) -> int:
    """The optimizer steps a training run made (the rows of its ``steps.csv``)."""
    return len(pd.read_csv(run / "steps.csv", usecols=["step"]))


def unlabelled_pool(config: Profile, run_dir, out_dir, tasks=None, bank: str = BANK_MOCO_SHARED,
                    no_pool: str = SSL_REF) -> UnlabelledPool:
    """Giga-SSL trained with 0 (``no_pool``) and more unlabelled slides, and AverageMIL, probed on the same labelled
    slides and splits at 100% of the labels, in two regimes (:data:`POOL_REGIMES`): every ``ssl_pool<U>`` run at
    the steps of ``no_pool`` (a bigger pool: fewer passes over each slide) and every ``ssl_epochs<U>`` run at its
    epochs (a bigger pool: more steps, about the same passes). The summary gives each run's steps and passes
    (steps x batch / slides trained on); the methods are ``gigassl_U<pool>`` and ``gigassl_E<pool>``
    (``gigassl_U0``: ``no_pool``, in both regimes). The paired differences have the results page's interval (the
    corrected resampled t-interval of Nadeau & Bengio over the overlapping splits)."""
    from ..evaluation.baselines import average_embeddings

    manifest = cohort_manifest(run_dir)
    tasks = tasks or task_columns(manifest)
    labelled = labelled_ids(manifest)
    reference = Path(run_dir) / no_pool
    named = {"gigassl_U0": (reference / EMBEDDINGS, "l2")}
    runs = {"gigassl_U0": ("", 0, reference)}
    for regime, (template, letter) in POOL_REGIMES.items():
        for path in sorted(grid_runs(run_dir, template), key=lambda p: int(grid_value(p, template))):
            pool = int(grid_value(path, template))
            named[f"gigassl_{letter}{pool}"] = (path / EMBEDDINGS, "l2")
            runs[f"gigassl_{letter}{pool}"] = (regime, pool, path)
    named["averagemil"] = (average_embeddings(Path(run_dir) / bank, labelled), "standard")
    splits = probe_runs(named, manifest, tasks, budgets=(1.0,), train_sizes=(), config=config.probe,
                        n_splits=config.probe.n_splits)
    _write_splits(splits, out_dir)
    summary = summarize(splits, **_boot(config))
    rows = []
    for method, (regime, pool, path) in runs.items():
        steps = _steps_run(path)
        for r in (POOL_REGIMES if not regime else (regime,)):
            rows.append({"method": method, "regime": r, "pool": pool, "steps": steps,
                         "passes": round(steps * config.train.batch_size / (len(labelled) + pool), 1)})
    summary = summary.merge(pd.DataFrame(rows), on="method", how="left")
    summary = summary[["protocol", "regime", "method", "pool", "steps", "passes", "task", "auc_mean", "auc_std",
                       "ci_low", "ci_high"]]
    gains = []
    for regime, (_, letter) in POOL_REGIMES.items():
        members = [m for m, (r, _, _) in runs.items() if r == regime]
        if members:
            largest = max(members, key=lambda m: runs[m][1])
            gains += [paired(splits, largest, "gigassl_U0", interval="corrected").assign(regime=regime),
                      paired(splits, largest, "averagemil", interval="corrected").assign(regime=regime)]
    gain = pd.concat(gains, ignore_index=True) if gains else pd.DataFrame()
    return UnlabelledPool(splits, summary, gain)


# ------------------------------------------------------------------------------------------------ DeepMIL
@dataclass(frozen=True)
class DeepMILPage:
    """The DeepMIL page: per-split AUCs at the label budgets (Table 2) and on tiny training sets (Fig. 2), and the
    learning curves of the Table 2 fits."""

    table2: pd.DataFrame
    fig2: pd.DataFrame
    curves: pd.DataFrame
    n_splits: int

    def describe(self) -> str:
        return (f"DeepMIL on {self.table2['split'].nunique()} of the probe's {self.n_splits} splits, "
                f"{self.table2['task'].nunique()} tasks: {len(self.table2)} fits for Table 2, {len(self.fig2)} for "
                "Fig. 2")

    def stopping(self) -> pd.DataFrame:
        """Where early stopping kept the state (best_step) and the steps run, per task and budget."""
        return self.table2.groupby(["task", "budget"])[["best_step", "steps"]].describe().round(0)


def deepmil(config: Profile, run_dir, out_dir, tasks=None, bank: str = BANK_MOCO_SHARED) -> DeepMILPage:
    """Gated attention MIL trained from scratch on the plain tile embeddings of ``<run_dir>/<bank>`` over the
    probe's splits (``<out_dir>/table2_splits.csv``, ``fig2_splits.csv``, ``deepmil_curves.csv``)."""
    from ..evaluation.baselines import run_deepmil

    manifest = cohort_manifest(run_dir)
    tasks = tasks or task_columns(manifest)
    bank_dir = Path(run_dir) / bank
    common = dict(config=config.deepmil, probe_config=config.probe, n_splits=config.probe.n_splits)
    curves = []
    table = pd.concat([run_deepmil(bank_dir, manifest, task, budgets=tuple(config.probe.budgets), train_sizes=(),
                                   curves=curves, **common) for task in tasks], ignore_index=True)
    table.to_csv(Path(out_dir) / DEEPMIL_TABLE2_SPLITS, index=False)
    tiny = pd.concat([run_deepmil(bank_dir, manifest, task, budgets=(), train_sizes=tuple(config.probe.train_sizes),
                                  **common) for task in tasks], ignore_index=True)
    tiny.to_csv(Path(out_dir) / DEEPMIL_FIG2_SPLITS, index=False)
    curves_frame = pd.DataFrame(curves)
    curves_frame.to_csv(Path(out_dir) / "deepmil_curves.csv", index=False)
    return DeepMILPage(table, tiny, curves_frame, config.probe.n_splits)


def deepmil_few_tiles(config: Profile) -> pd.DataFrame:
    """The check that the DeepMIL baseline trains: a task carried by two of 64 tiles per bag
    (:func:`gigassl.evaluation.baselines.few_tile_task`), DeepMIL minus AverageMIL, paired over the probe's splits."""
    from ..evaluation.baselines import few_tile_task, run_averagemil, run_deepmil

    bags, few = few_tile_task(seed=config.probe.seed)
    budgets = tuple(config.probe.budgets)
    check = pd.concat([run_averagemil(bags, few, "few_tiles", config=config.probe, n_splits=config.probe.n_splits,
                                      budgets=budgets, train_sizes=()),
                       run_deepmil(bags, few, "few_tiles", budgets=budgets, train_sizes=(), config=config.deepmil,
                                   probe_config=config.probe, n_splits=config.probe.n_splits)])
    return paired(check.assign(protocol="paper"), "deepmil", "averagemil", **_boot(config))


# ----------------------------------------------------------------------------------------- representations
def run_diagnostics(run_dir: str | os.PathLike, slide_ids, centres=None, groups=None, device: str = "cpu",
                    seed: int = 0) -> dict:
    """The diagnostics (:func:`gigassl.evaluation.diagnostics.diagnose`) of a training run's slide embeddings
    (``run_dir/embeddings.h5``) on ``slide_ids``, the alignment measured against a second embedding of the same
    slides with the same R and T and another view seed (:func:`gigassl.embed.embed_bank`).
    """
    from ..bankstore import PackedBank
    from ..config import MapConfig
    from ..embed import embed_bank
    from ..evaluation.diagnostics import diagnose
    from ..train import load_checkpoint

    run_dir = Path(run_dir)
    ids, emb, attrs = io.read_embeddings(run_dir / EMBEDDINGS)
    model, state = load_checkpoint(run_dir / "checkpoint.pt", device)
    bank = PackedBank(state["bank"]["dir"])
    position = {sid: i for i, sid in enumerate(ids)}
    rows = [position[s] for s in slide_ids]
    second = embed_bank(model, bank, bank.indices(list(slide_ids)), int(attrs["views"]), int(attrs["tiles_per_view"]),
                        MapConfig(**state["config"]["maps"]), int(attrs["seed"]) + 1, device=device)
    return diagnose(emb[rows], second, centres, groups, seed=seed)


def representations(config: Profile, run_dir, runs, bank: str = BANK_MOCO_SHARED) -> pd.DataFrame:
    """The label-free diagnostics (:func:`gigassl.evaluation.diagnostics.diagnose`) of AverageMIL and of every training run of
    ``runs`` that exists, on the labelled slides: one row per representation."""
    from ..evaluation.baselines import average_embeddings, average_halves, load_bags
    from ..evaluation.diagnostics import alignment, diagnose

    manifest = cohort_manifest(run_dir)
    ids = labelled_ids(manifest)
    meta = manifest.set_index("slide_id").loc[ids]
    centres, cases = meta["center"].astype(str).to_numpy(), meta["case_id"].astype(str).to_numpy()
    bags = load_bags(Path(run_dir) / bank, ids)
    first, second = average_halves(bags, ids, seed=config.embed.seed)
    average = diagnose(average_embeddings(bags, ids)[1], centres=centres, groups=cases, seed=config.probe.seed)
    rows = [{"representation": "averagemil", **average, "alignment": alignment(first, second)}]
    rows += [{"representation": run, **run_diagnostics(Path(run_dir) / run, ids, centres, cases,
                                                         seed=config.probe.seed)}
             for run in runs if (Path(run_dir) / run / "checkpoint.pt").exists()]
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------- resources
def resources(run_dir, profile: str, exclude: str = "resources") -> tuple[pd.DataFrame, str]:
    """The runner's record of every execution of a run (``<run_dir>/runner.json``) that finished: wall time and
    peak memory, without ``exclude`` (the page that reads it); and one sentence with the total and the machine."""
    state = json.loads((Path(run_dir) / "runner.json").read_text())
    frame = pd.DataFrame([{"name": name, "notebook": r["notebook"], "seconds": r["seconds"],
                           "peak_memory_mb": r["peak_memory_mb"], "finished": r["finished"]}
                          for name, r in state.items() if r.get("status") == "ok" and name != exclude])
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}"
    return frame, (f"profile {profile}: {len(frame)} executions, {frame['seconds'].sum() / 60:.1f} minutes in all, "
                   f"on {machine}")


def by_task(table: pd.DataFrame, index: str) -> pd.DataFrame:
    """A curve table (:func:`tiles_ablation`, :func:`views_ablation`) with one AUC column per protocol and task."""
    return table.pivot_table(index=index, columns=["protocol", "task"], values="auc_mean")
