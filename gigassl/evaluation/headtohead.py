"""Any slide embeddings, head to head (issue #26 item 5): ``gigassl evaluate``.

Several sets of slide embeddings of one cohort (Giga-SSL's, TITAN's, PRISM's, mean pooling's, ABMIL's ...; any
format :func:`gigassl.io.read_embeddings` reads: gigassl's ``.h5``, CSV, parquet, TRIDENT's
``slide_features_<encoder>/`` folders, a ``.npy`` with its ids) and one label table go through the same
evaluations on identical splits and draws, built once from the labels and the seed, never from a representation:

- ``random_splits``: the linear probe over ``n_splits`` case-grouped stratified splits (Sec. 4.2;
  :func:`random_splits_runs`);
- ``few_shot``, ``retrieval``, ``patients``, ``unseen_centres``: :mod:`gigassl.evaluation.fewshot`,
  ``retrieval``, ``patients``, ``centres``;
- ``survival`` (with the time and event columns): :mod:`gigassl.evaluation.survival`.

Slides: every set is restricted to the labelled slides that all sets share; a set that lacks labelled slides is
evaluated on that intersection with a warning naming how many each set lacks (and ``coverage.csv`` records it),
so that all are still scored on the same slides. A set that shares no labelled slide is refused (an id mismatch).

Outputs of :func:`evaluate` (``out``): ``runs.csv`` (every row, :data:`gigassl.evaluation.compare.RUN_COLUMNS`),
``pairs.csv`` (every pair of sets per evaluation, task, setting and metric: mean difference, interval over draws,
verdict; :func:`gigassl.evaluation.compare.head_to_head`), ``coverage.csv``, ``splits/split_<k>.csv`` (the random
splits, in the authors' format) and ``head_to_head.png`` (:func:`figure`; needs the ``book`` extra).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import EvaluateConfig, ProbeConfig, choice
from ..errors import ConfigError, GigasslError, ManifestError, format_ids, suggest
from ..files import write_csv_atomic
from .compare import RUN_COLUMNS, head_to_head, higher_is_better, paired_interval
from .labels import load_labels
from .protocol import load_embeddings, probe_plan
from .splits import Split, make_splits, write_splits

EVALUATIONS = ("random_splits", "few_shot", "retrieval", "patients", "unseen_centres", "survival")
# where each evaluation's runs come from: (module under gigassl.evaluation, function)
RUNNERS = {"random_splits": ("headtohead", "random_splits_runs"), "few_shot": ("fewshot", "fewshot_runs"),
           "retrieval": ("retrieval", "retrieval_runs"), "patients": ("patients", "patient_runs"),
           "unseen_centres": ("centres", "unseen_centre_runs"), "survival": ("survival", "survival_runs")}
FIGURE = "head_to_head.png"


def parse_named(pairs, what: str = "--embeddings") -> dict[str, str]:
    """``["NAME=PATH", ...]`` as ``{NAME: PATH}`` in the order given.

    Raises:
        ConfigError: an item without ``=``, an empty name or path, or a name given twice (the item named).
    """
    named: dict[str, str] = {}
    for item in pairs or ():
        name, sep, path = str(item).partition("=")
        name, path = name.strip(), path.strip()
        if not sep or not name or not path:
            raise ConfigError(f"{what} {item!r} is not NAME=PATH: give each set a name and its file, e.g. "
                              f"{what} gigassl=embeddings.h5 titan=slide_features_titan.")
        if name in named:
            raise ConfigError(f"{what}: the name {name!r} is given twice ({named[name]} and {path}); give each set "
                              "its own name.")
        named[name] = path
    return named


def read_sets(paths: dict, ids: dict | None = None) -> dict[str, tuple[list[str], np.ndarray]]:
    """Read every set ``{name: path or (ids, matrix)}`` (``ids``: ``{name: ids.npy}`` for ``.npy`` matrices) as
    ``{name: (slide ids, (S, D) matrix)}`` (:func:`gigassl.evaluation.protocol.load_embeddings`: numbers, finite,
    ids unique).

    Raises:
        ConfigError: an ids file named for a set that is not given.
        ManifestError, DataError: a file that cannot be read as slide embeddings (the file named).
    """
    ids = dict(ids or {})
    stray = sorted(set(ids) - set(paths))
    if stray:
        raise ConfigError(f"--ids names {stray}, which no --embeddings NAME=PATH gives; the sets are "
                          f"{list(paths)}. Use the same NAME in both.")
    return {name: load_embeddings(path, ids.get(name)) for name, path in paths.items()}


def shared_slides(named: dict, labels: pd.DataFrame, files: dict | None = None):
    """Every set restricted to the labelled slides all sets share, and the label table restricted to them.

    Args:
        named: ``{name: (ids, (S, D) matrix)}``. labels: a label table (``slide_id`` column).
        files: ``{name: path}`` to name the files in the messages.

    Returns: (named restricted, in the label table's slide order; labels restricted; coverage: one row per set with
    file, n_slides, n_labelled (its labelled slides), n_lacking (labelled slides it lacks), lacking (the first ids)).

    Warns (UserWarning) when a set lacks labelled slides: the evaluation runs on the intersection.

    Raises:
        ManifestError: a set that shares no slide with the label table, or no slide shared by all sets.
    """
    files = files or {}
    labelled = [str(s).strip() for s in labels["slide_id"]]
    rows, common = [], set(labelled)
    for name, (ids, _) in named.items():
        have = set(ids)
        lacking = [s for s in labelled if s not in have]
        rows.append({"name": name, "file": str(files.get(name, "")), "n_slides": len(ids),
                     "n_labelled": len(labelled) - len(lacking), "n_lacking": len(lacking),
                     "lacking": format_ids(lacking) if lacking else ""})
        if len(lacking) == len(labelled):
            raise ManifestError(suggest(
                f"Set {name!r} ({files.get(name, 'given')}) shares no slide with the label table: its "
                f"{len(ids)} ids ({format_ids(list(ids), 3)}) are none of the {len(labelled)} labelled slides "
                f"({format_ids(labelled, 3)}).",
                "make the ids identical (no folder, no file extension, same case)",
                "or give the label table of this cohort"))
        common &= have
    coverage = pd.DataFrame(rows)
    short = coverage[coverage["n_lacking"] > 0]
    if len(common) == 0:
        raise ManifestError(f"The sets share no labelled slide ({'; '.join(f'{r.name}: {r.n_labelled}' for r in coverage.itertuples())} labelled slides each); nothing can be compared on identical slides.")
    if len(short):
        warnings.warn(
            f"Evaluating on the {len(common)} labelled slides every set has: "
            + "; ".join(f"{r.name} ({r.file or 'given'}) lacks {r.n_lacking} of the {len(labelled)} ({r.lacking})"
                        for r in short.itertuples())
            + ". Embed those slides with every representation to compare on all of them.", UserWarning, stacklevel=2)
    keep = labels[[s in common for s in labelled]].reset_index(drop=True)
    order = [str(s).strip() for s in keep["slide_id"]]
    restricted = {}
    for name, (ids, matrix) in named.items():
        row = {s: i for i, s in enumerate(ids)}
        restricted[name] = (order, np.asarray(matrix)[[row[s] for s in order]])
    return restricted, keep, coverage


def split_digest(split: Split) -> str:
    """A short fingerprint of a split's training and test ids (equal digests: identical splits)."""
    text = "train:" + ",".join(split.train_ids) + "|test:" + ",".join(split.test_ids)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def random_splits(labels, task: str, *, n_splits: int = 10, test_fraction: float = 0.25, seed: int = 0) -> list[Split]:
    """The random splits of :func:`random_splits_runs`, from the labels and the seed only
    (:func:`gigassl.evaluation.splits.make_splits`: case-grouped, stratified)."""
    return make_splits(load_labels(labels, task), n_splits, test_fraction, seed)


def random_splits_runs(named: dict, labels, task: str, *, n_splits: int = 10, test_fraction: float = 0.25,
                       protocol: str = "fair", config: ProbeConfig | None = None, seed: int = 0) -> pd.DataFrame:
    """The linear probe of every representation on the same random splits (Sec. 4.2): the runs table.

    Args:
        named: ``{name: (ids, (S, D) matrix)}``. labels: a label table with ``slide_id``, ``case_id`` and ``task``.
        n_splits, test_fraction: the splits (:func:`random_splits`; the paper's 10, Sec. 4.2).
        protocol: ``fair`` (:class:`gigassl.evaluation.probe.TunedLinearProbe`: preprocessing and C chosen on each
            split's training slides, the same procedure for every set) or ``paper`` (l2 and C = ``config.C``, the
            paper's probe of Giga-SSL embeddings).
        config: C, max_iter and the fair protocol's grid (default :class:`ProbeConfig`).

    Returns: :data:`RUN_COLUMNS` + n_train, n_test, split_digest; ``evaluation="random_splits"``, ``setting``
    ``"probe:<protocol>"``, ``draw`` the split index, metric ``auroc``.
    """
    frame = load_labels(labels, task)
    plan = make_splits(frame, n_splits, test_fraction, seed)
    config = replace(config or ProbeConfig(), n_splits=int(n_splits), test_fraction=float(test_fraction),
                     seed=int(seed))
    digests = [split_digest(s) for s in plan]
    tables = []
    for name, pair in named.items():
        table = probe_plan(pair, frame, plan, task=task, method=name, config=config, protocol=protocol)
        tables.append(pd.DataFrame({
            "method": name, "evaluation": "random_splits", "task": task, "setting": f"probe:{protocol}",
            "draw": range(len(plan)), "metric": "auroc", "value": table["auc"].to_numpy(float),
            "n_train": table["n_train"].to_numpy(), "n_test": table["n_test"].to_numpy(), "split_digest": digests}))
    return pd.concat(tables, ignore_index=True)


def _runner(evaluation: str):
    module, function = RUNNERS[evaluation]
    try:
        return getattr(importlib.import_module(f"gigassl.evaluation.{module}"), function)
    except (ImportError, AttributeError):
        raise GigasslError(f"The evaluation {evaluation!r} needs gigassl.evaluation.{module}.{function}, which this "
                           f"version of gigassl lacks; leave it out (--evaluations "
                           f"{' '.join(e for e in EVALUATIONS if e != evaluation)}).") from None


def _run(evaluation: str, named: dict, labels: pd.DataFrame, task, settings: dict, seed: int) -> pd.DataFrame:
    """One evaluation's runs: its runner called with the settings it takes (by their names in its signature)."""
    runner = _runner(evaluation)
    accepted = inspect.signature(runner).parameters
    return runner(named, labels, task, **{k: v for k, v in settings.items() if k in accepted}, seed=seed)


def available() -> tuple[str, ...]:
    """The evaluations whose runner this version of gigassl has (:data:`RUNNERS`)."""
    out = []
    for evaluation in EVALUATIONS:
        try:
            _runner(evaluation)
        except GigasslError:
            continue
        out.append(evaluation)
    return tuple(out)


def _settings(evaluation: str, config: EvaluateConfig, time, event) -> dict:
    """The keyword arguments of an evaluation's runner, from the config (the runner's own names)."""
    probe = ProbeConfig(seed=config.seed)
    return {
        "random_splits": dict(n_splits=config.n_splits, test_fraction=config.test_fraction,
                              protocol=config.protocol, config=probe),
        "few_shot": dict(ks=config.shots, n_draws=config.draws, classifiers=config.classifiers,
                         neighbours=config.neighbours, config=probe),
        "retrieval": dict(ks=config.top_k),
        "patients": dict(n_splits=config.n_splits, test_fraction=config.test_fraction, config=probe),
        "unseen_centres": dict(config=probe),
        "survival": dict(time=time, event=event, n_splits=config.n_splits, test_fraction=config.test_fraction),
    }[evaluation]


def applicable(labels: pd.DataFrame, time: str | None = None, event: str | None = None) -> tuple[str, ...]:
    """The evaluations a label table allows: all but ``unseen_centres`` (needs a ``center`` column with two centres
    or more) and ``survival`` (needs ``time`` and ``event``)."""
    out = []
    for evaluation in EVALUATIONS:
        if evaluation == "unseen_centres" and ("center" not in labels or labels["center"].nunique() < 2):
            continue
        if evaluation == "survival" and not (time and event):
            continue
        out.append(evaluation)
    return tuple(out)


@dataclass(frozen=True)
class HeadToHead:
    """What :func:`evaluate` returns: ``runs`` (every row), ``pairs`` (every pair of sets), ``coverage`` (the
    slides of each set) and the files written (``paths``: name -> path; empty without ``out``)."""

    runs: pd.DataFrame
    pairs: pd.DataFrame
    coverage: pd.DataFrame
    paths: dict


def _read_label_table(labels) -> pd.DataFrame:
    if isinstance(labels, pd.DataFrame):
        return labels.assign(slide_id=labels["slide_id"].astype(str).str.strip())
    from .. import validate

    validate.existing_file(labels, "Label table", "give a CSV with slide_id, case_id and the task columns.",
                           ManifestError)
    try:
        frame = pd.read_csv(labels, dtype={"slide_id": str, "case_id": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ManifestError(f"Label table {labels} is not a readable CSV file: {err}") from None
    if "slide_id" not in frame.columns:
        raise ManifestError(f"Label table {labels} has no column 'slide_id'; it has {list(frame.columns)}.")
    return frame.assign(slide_id=frame["slide_id"].astype(str).str.strip())


def evaluate(named_paths: dict, labels, task: str | None, *, ids: dict | None = None, evaluations=None,
             config: EvaluateConfig = EvaluateConfig(), time: str | None = None, event: str | None = None,
             out=None) -> HeadToHead:
    """Every set of slide embeddings through the same evaluations on identical splits and draws (issue #26).

    Args:
        named_paths: ``{name: path}`` of each set (any format of :func:`gigassl.io.read_embeddings`), or
            ``{name: (ids, matrix)}``.
        labels: a label CSV or frame: ``slide_id``, ``case_id`` (the patient), the ``task`` column, and
            optionally ``center`` and the survival ``time``/``event`` columns.
        task: the classification column (None: survival only).
        ids: ``{name: ids.npy}`` for the sets given as ``.npy`` matrices.
        evaluations: a subset of :data:`EVALUATIONS`; None: every one the labels allow (:func:`applicable`) and
            this version has (:func:`available`).
        config: the settings of every evaluation (:class:`gigassl.config.EvaluateConfig`).
        out: a folder for runs.csv, pairs.csv, coverage.csv, splits/ and the figure.

    Raises:
        ConfigError: fewer than two sets for a comparison is fine (no pairs); an unknown evaluation, or one the
            labels do not allow (no task, no time/event, fewer than two centres).
        ManifestError: a set that shares no slide with the labels (see :func:`shared_slides`).
    """
    table = _read_label_table(labels)
    allowed = applicable(table, time, event)
    if evaluations is None:  # every one the labels allow and this version has
        have = available()
        evaluations = tuple(e for e in allowed if e in have and (task or e == "survival"))
    for evaluation in evaluations:
        choice(evaluation, EVALUATIONS, "evaluation", "Pass some of them to --evaluations.")
        if evaluation not in allowed or (evaluation != "survival" and not task):
            need = {"survival": "--time and --event columns", "unseen_centres": "a `center` column with two centres "
                    "or more"}.get(evaluation, "--task COLUMN")
            raise ConfigError(f"The evaluation {evaluation!r} needs {need} in the labels; the table has "
                              f"{list(table.columns)}. Give it, or leave {evaluation!r} out of --evaluations.")
    if not evaluations:
        raise ConfigError("No evaluation to run: give --task COLUMN (classification) or --time and --event (survival).")
    files = {n: p for n, p in named_paths.items() if not isinstance(p, tuple)}
    named = read_sets(named_paths, ids)
    named, table, coverage = shared_slides(named, table, files)
    tables = [_run(e, named, table, None if e == "survival" else task, _settings(e, config, time, event), config.seed)
              for e in evaluations]
    runs = pd.concat(tables, ignore_index=True)
    ratio = config.test_fraction / (1.0 - config.test_fraction)
    pairs = head_to_head(runs, list(named), test_train_ratio=ratio, n_bootstrap=config.n_bootstrap, seed=config.seed)
    paths = {}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        for name, frame in (("runs", runs), ("pairs", pairs), ("coverage", coverage)):
            paths[name] = out / f"{name}.csv"
            write_csv_atomic(frame, paths[name])
        if "random_splits" in evaluations:
            paths["splits"] = out / "splits"
            write_splits(random_splits(table, task, n_splits=config.n_splits, test_fraction=config.test_fraction,
                                       seed=config.seed), paths["splits"])
        drawn = figure(runs, out / FIGURE, n_bootstrap=config.n_bootstrap, seed=config.seed)
        if drawn is not None:
            paths["figure"] = drawn
    return HeadToHead(runs, pairs, coverage, paths)


def summarize_runs(runs: pd.DataFrame, n_bootstrap: int = 2000, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Each representation's mean metric per (evaluation, task, setting, metric) with a percentile bootstrap
    interval of the mean over draws (NaN with fewer than two draws): the points of :func:`figure`."""
    rows = []
    for key, group in runs.groupby(["evaluation", "task", "setting", "metric", "method"], sort=False, dropna=False):
        values = group["value"].to_numpy(float)
        low, high = paired_interval(values, n_bootstrap, level, seed=seed)
        rows.append({**dict(zip(("evaluation", "task", "setting", "metric", "method"), key)),
                     "n_draws": int((~np.isnan(values)).sum()), "mean": float(np.nanmean(values)),
                     "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows)


def figure(runs: pd.DataFrame, path, n_bootstrap: int = 2000, seed: int = 0):
    """One figure, a panel per evaluation: each representation's mean of the evaluation's first metric per setting,
    with its bootstrap interval over draws (:func:`summarize_runs`). Written to ``path``; returns it, or None
    (with a message) when matplotlib, a dependency of the ``book`` extra only, is absent."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f'No figure: matplotlib is absent (it comes with the book extra: pip install "gigassl[book]"); the '
              f"CSVs are written.")
        return None
    summary = summarize_runs(runs, n_bootstrap, seed=seed)
    evaluations = list(dict.fromkeys(summary["evaluation"]))
    methods = list(dict.fromkeys(runs["method"]))
    fig, axes = plt.subplots(1, len(evaluations), figsize=(4.2 * len(evaluations), 3.6), squeeze=False)
    for ax, evaluation in zip(axes[0], evaluations):
        rows = summary[summary["evaluation"] == evaluation]
        metric = rows["metric"].iloc[0]
        rows = rows[rows["metric"] == metric]
        settings = list(dict.fromkeys(rows["setting"]))
        width = 0.8 / max(len(methods), 1)
        for m, method in enumerate(methods):
            mine = rows[rows["method"] == method].set_index("setting").reindex(settings)
            x = np.arange(len(settings)) + (m - (len(methods) - 1) / 2) * width
            error = np.vstack([mine["mean"] - mine["ci_low"], mine["ci_high"] - mine["mean"]])
            ax.errorbar(x, mine["mean"], yerr=np.nan_to_num(error), fmt="o", capsize=3, label=method)
        ax.set_xticks(np.arange(len(settings)), settings, rotation=45 if len(settings) > 3 else 0, ha="right"
                      if len(settings) > 3 else "center", fontsize=8)
        ax.set_title(evaluation.replace("_", " "))
        ax.set_ylabel(f"{metric} ({'higher' if higher_is_better(metric) else 'lower'} is better)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def survival_probe(embeddings, labels, time: str, event: str, *, ids_path=None, name: str = "embeddings",
                   config: EvaluateConfig = EvaluateConfig(), out=None) -> pd.DataFrame:
    """The survival probe on one embeddings file (``gigassl probe --time T --event E``): the runs table of
    :func:`evaluate` with the survival evaluation only; ``out``: a CSV of it."""
    result = evaluate({name: embeddings}, labels, None, ids={name: ids_path} if ids_path else None,
                      evaluations=("survival",), config=config, time=time, event=event)
    if out is not None:
        write_csv_atomic(result.runs, out)
    return result.runs
