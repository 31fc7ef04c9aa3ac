"""The paper's Table 2 protocol on TCGA, with the authors' label tables and splits (Sec. 4.2, 4.3, Fig. 2).

``gigassl probe --embeddings embeddings.npy --ids ids.npy --tcga-task brca`` runs the linear probe on the
authors' released slide embeddings (or any embeddings of the same TCGA slides) over their 10 splits of each
budget: ``full`` and ``25p`` (Table 2), ``100`` and ``50`` (and ``250`` for tnbc; Fig. 2).

Packaged data (``gigassl.data/tcga``, see data/README.md): ``tables/<task>.csv`` (``ID``, ``label``,
``case_id``) and ``splits/<task>/<budget>/split_<k>.csv``. Two properties of those splits are kept, and
recorded, rather than silently changed:

- some patients have slides on both sides of a split: this path passes ``allow_case_overlap=True`` and the
  table's ``case_overlap`` column counts them per split;
- the kidney ``full`` splits name 7 slides that have no row in the kidney label table; as the authors' code
  did (it matched split ids against the table), they are left out, with a warning, and counted per split in
  the column ``n_dropped``.

Slide ids. The released ``ids.npy`` (``released_embedding_ids.npy`` here) holds exactly the tables' ``ID``
format: the TCGA barcode, a dot and the slide UUID, without a file extension (``TCGA-A7-A6VV-01Z-00-DX1.07AE...``;
the kidney UUIDs are lower-case, as in the GDC file names). Embeddings made by other tools may name slides
differently; :func:`match_ids` maps them to the table ids: exact match first, then ignoring the folder, a
slide/feature file extension (.svs, .h5, ...) and letter case, then by the barcode alone (the part before
the first dot), each step only where the match is one-to-one.
"""

from __future__ import annotations

import os
import warnings
from importlib.resources import files
from pathlib import Path

import numpy as np
import pandas as pd

from .. import io
from ..config import DeepMILConfig, ProbeConfig, choice
from ..errors import ConfigError
from .protocol import load_embeddings, probe_plan
from .labels import load_labels, normalize_id
from .splits import Split, read_splits
from ..files import write_csv_atomic

TASKS = ("lung", "brca", "kidney", "mhrd", "thrd", "tnbc")
BUDGETS = ("full", "25p", "250", "100", "50")  # the order of the result table


def tcga_root():
    """The packaged TCGA folder (an ``importlib.resources`` Traversable)."""
    return files("gigassl.data") / "tcga"


def _task(task: str) -> str:
    return choice(task, TASKS, "TCGA task", "Pass one of them to --tcga-task.")


def tcga_labels(task: str) -> pd.DataFrame:
    """The authors' label table of ``task`` as a manifest-like frame: ``slide_id``, ``case_id``, ``<task>``."""
    with (tcga_root() / "tables" / f"{_task(task)}.csv").open("r") as fh:
        table = pd.read_csv(fh, dtype=str)
    return table.rename(columns={"ID": "slide_id", "label": task})[["slide_id", "case_id", task]]


def tcga_budgets(task: str) -> list[str]:
    """The budgets with split folders for ``task``: full, 25p, (250,) 100, 50."""
    present = {entry.name for entry in (tcga_root() / "splits" / _task(task)).iterdir() if entry.is_dir()}
    return [b for b in BUDGETS if b in present]


def released_ids() -> list[str]:
    """The 11,642 slide ids of the authors' released embeddings, in row order."""
    with (tcga_root() / "released_embedding_ids.npy").open("rb") as fh:
        return [str(i) for i in np.load(fh, allow_pickle=False)]


def _unique_index(values, key) -> dict[str, str]:
    index: dict[str, list[str]] = {}
    for value in values:
        index.setdefault(key(value), []).append(value)
    return {k: v[0] for k, v in index.items() if len(v) == 1}


def match_ids(available, wanted) -> dict[str, str]:
    """Map each ``wanted`` id (a table ID) to the ``available`` id (an embedding id) naming the same slide.

    Steps, each only one-to-one: exact; :func:`gigassl.evaluation.labels.normalize_id` (no folder, no extension, any
    case); the barcode alone (normalised id before its first dot). Unmatched ids are left out.
    """
    available = [str(a) for a in available]
    exact = set(available)
    mapping = {w: w for w in wanted if w in exact}
    used = set(mapping.values())
    for key in (normalize_id, lambda i: normalize_id(i).split(".")[0]):
        rest = [w for w in wanted if w not in mapping]
        if not rest:
            break
        have = _unique_index([a for a in available if a not in used], key)
        want = _unique_index(rest, key)
        for k, w in want.items():
            if k in have:
                mapping[w] = have[k]
                used.add(have[k])
    return mapping


def tcga_protocol(task: str, budgets=None, n_splits: int | None = None) -> tuple[pd.DataFrame, list[Split], dict]:
    """The label frame (:func:`gigassl.evaluation.labels.load_labels`), the splits of every budget, and dropped counts.

    Args:
        budgets: budget names (default: all of :func:`tcga_budgets`); n_splits: keep the first n of each.

    Returns: (labels, plan, dropped) where ``dropped[(budget, split name)]`` counts split ids without a label
    row (left out, as in the authors' code; see the module docstring).
    """
    labels = load_labels(tcga_labels(task), task)
    known = set(labels["slide_id"])
    available = tcga_budgets(task)
    budgets = list(budgets) if budgets is not None else available
    unknown = [b for b in budgets if b not in available]
    if unknown:
        raise ConfigError(f"TCGA task {task!r} has no budget(s) {unknown}; allowed: {', '.join(available)}.")
    plan, dropped = [], {}
    for budget in budgets:
        splits = read_splits(tcga_root() / "splits" / task / budget, budget=budget)
        for split in splits[: n_splits or len(splits)]:
            train = tuple(i for i in split.train_ids if i in known)
            test = tuple(i for i in split.test_ids if i in known)
            dropped[(budget, split.name)] = len(split.train_ids) + len(split.test_ids) - len(train) - len(test)
            plan.append(Split(train, test, split.name, budget))
    total = sum(dropped.values())
    if total:
        warnings.warn(
            f"TCGA {task}: {total} split entries name slides without a row in the label table; they are left out "
            "as in the authors' code (counted per split in the column n_dropped)."
        )
    return labels, plan, dropped


def run_tcga(embeddings, task: str, *, ids_path=None, budgets=None, n_splits: int | None = None,
             preprocessing: str = "l2", method: str = "gigassl", config: ProbeConfig = ProbeConfig(),
             out=None) -> pd.DataFrame:
    """Table 2 / Fig. 2 protocol of one TCGA task: ``gigassl probe --embeddings F --ids IDS.npy --tcga-task T``.

    Args:
        embeddings: ``embeddings.npy`` (with ``ids_path``), a gigassl HDF5 file, or (ids, (S, D) matrix); ids
            are mapped to the table's by :func:`match_ids`.
        budgets: budget names (default all: full, 25p, [250,] 100, 50); n_splits: first n splits of each.
        preprocessing: ``"l2"`` (Giga-SSL; the released embeddings are already unit-norm, so it changes nothing).

    Returns: the tidy table (allow_case_overlap=True: the case_overlap column counts shared patients) with the
    extra column ``n_dropped``. Raises ManifestError listing split slides absent from the embeddings.
    """
    ids, matrix = load_embeddings(embeddings, ids_path)
    labels, plan, dropped = tcga_protocol(task, budgets, n_splits)
    mapping = match_ids(ids, list(labels["slide_id"]))
    row = {sid: i for i, sid in enumerate(ids)}
    names = list(mapping)
    table = probe_plan((names, matrix[[row[mapping[n]] for n in names]]), labels, plan, task=task,
                       preprocessing=preprocessing, method=method, config=config, allow_case_overlap=True)
    table["n_dropped"] = [dropped[(b, s)] for b, s in zip(table["budget"], table["split"])]
    if out is not None:
        write_csv_atomic(table, out)
    return table


def run_tcga_baseline(bank, task: str, *, method: str = "averagemil", budgets=None, n_splits: int | None = None,
                      config: ProbeConfig = ProbeConfig(), deepmil: DeepMILConfig = DeepMILConfig(),
                      out=None) -> pd.DataFrame:
    """AverageMIL or DeepMIL on the authors' TCGA splits (``--tcga-task T --method averagemil|deepmil --bank DIR``).

    Args:
        bank: a folder of ``<slide>.h5`` (gigassl banks or TRIDENT/CLAM features; file names are mapped to
            the table ids by :func:`match_ids`) or a {slide_id: (M, F)} dict.
        method: ``averagemil`` or ``deepmil``.

    Returns: the tidy table, with case_overlap and n_dropped as in :func:`run_tcga`.
    """
    from .baselines import load_bags, run_averagemil, run_deepmil

    choice(method, ("averagemil", "deepmil"), "TCGA baseline method", "Pass --method averagemil or deepmil.")
    labels, plan, dropped = tcga_protocol(task, budgets, n_splits)
    used = sorted({i for s in plan for i in (*s.train_ids, *s.test_ids)})
    if isinstance(bank, (str, os.PathLike)):
        if not Path(bank).is_dir():
            raise ConfigError(f"Bank folder {bank} does not exist; give the folder of <slide>.h5 files (--bank DIR).")
        mapping = match_ids(list(io.feature_files(bank)), used)
        found = [i for i in used if i in mapping]
        max_tiles = deepmil.max_tiles if method == "deepmil" else None
        loaded = load_bags(bank, [mapping[i] for i in found], max_tiles, deepmil.seed)
        bank = {i: loaded[mapping[i]] for i in found}
    frame = labels.rename(columns={"label": task})
    common = dict(splits=plan, budgets=(1.0,), allow_case_overlap=True)
    if method == "averagemil":
        table = run_averagemil(bank, frame, task, config=config, **common)
    else:
        table = run_deepmil(bank, frame, task, config=deepmil, probe_config=config, **common)
    table["n_dropped"] = [dropped[(b, s)] for b, s in zip(table["budget"], table["split"])]
    if out is not None:
        write_csv_atomic(table, out)
    return table
