"""The training monitor: linear probes and label-free diagnostics of the slide embeddings every k epochs (Fig. 3C).

Sec. 5, Fig. 3C: "with an attention-MIL aggregator, linear AUC decreases as SSL training proceeds; with the sparse CNN
it does not". :func:`training_monitor` gives :func:`gigassl.train.train` a :class:`gigassl.train.Monitor` that embeds
the bank's labelled slides with R views (:func:`gigassl.embed.embed_bank`) and probes them under both protocols;
``train`` writes its rows to ``monitor.csv``. :func:`monitor_table` turns that file into per-split and per-epoch
tables. Used by ``gigassl train --monitor-labels CSV --monitor-task COLUMN`` and the book's training pages.
"""

from __future__ import annotations

import os

import pandas as pd

from .. import validate
from ..bankstore import PackedBank
from ..config import MapConfig
from ..devices import resolve_device
from ..errors import ConfigError


def training_monitor(labels, tasks: list[str], maps: MapConfig, views: int, tiles: int, probe=None, seed: int = 0,
                     device: str = "cpu", diagnostics: bool = True):
    """A training monitor: every k epochs, embed the bank's slides with R views and record

    - for each task, the linear probe under both protocols (generated case-grouped splits, 100% budget), one row per
      protocol and split: ``kind="probe"``, task, protocol, budget, split, auc (the data of Fig. 3C);
    - with ``diagnostics``, one row ``kind="diagnostics"`` of :func:`gigassl.evaluation.diagnostics.diagnose` on the bank's
      slides labelled for any of ``tasks`` (alignment between two embeddings made with different view seeds, centre
      predictability grouped by case).

    ``labels``: a manifest (path or frame) with ``slide_id``, ``case_id``, ``center`` and the task columns.
    """
    from ..config import ProbeConfig
    from ..embed import embed_bank
    from ..train import Monitor
    from . import diagnostics as diag
    from .labels import load_labels
    from .probe import PROTOCOLS
    from .protocol import run_probe
    from .splits import make_splits

    probe = probe or ProbeConfig()
    if not tasks:
        raise ConfigError("The training monitor (--monitor-labels) needs the task columns to probe, and none was "
                          "given: add --monitor-task COLUMN (repeatable), e.g. --monitor-task nsclc_like.")
    device = resolve_device(device)  # "auto" (the paper profile's) becomes a real device before any tensor moves
    if isinstance(labels, (str, os.PathLike)):
        validate.existing_file(labels, "Monitor label table (--monitor-labels)",
                               "give a CSV with slide_id, case_id, center and the --monitor-task columns.")
    frame = pd.read_csv(labels, dtype={"slide_id": str, "case_id": str}) if isinstance(labels, (str, os.PathLike)) \
        else pd.DataFrame(labels)
    labelled = {}
    for task in tasks:  # the splits of every task made now: a table too small fails here, not after an epoch
        table = load_labels(frame, task)
        make_splits(table, n_splits=probe.n_splits, test_fraction=probe.test_fraction, seed=probe.seed)
        labelled[task] = set(table["slide_id"])
    meta = frame.set_index("slide_id")

    def fn(model, bank: PackedBank, epoch: int) -> list[dict]:
        rows = []
        for task in tasks:
            ids = [sid for sid in bank.ids if sid in labelled[task]]
            emb = embed_bank(model, bank, bank.indices(ids), views, tiles, maps, seed, device=device)
            for protocol in PROTOCOLS:
                table = run_probe((ids, emb), frame, task, n_splits=probe.n_splits, budgets=(1.0,), train_sizes=(),
                                  config=probe, protocol=protocol)
                rows += [{"kind": "probe", "task": task, "protocol": r.protocol, "budget": r.budget,
                          "split": r.split, "auc": r.auc} for r in table.itertuples()]
        if diagnostics:  # on the labelled slides, the ones the book compares
            ids = [sid for sid in bank.ids if sid in set().union(*labelled.values())]
            index = bank.indices(ids)
            first = embed_bank(model, bank, index, views, tiles, maps, seed, device=device)
            second = embed_bank(model, bank, index, views, tiles, maps, seed + 1, device=device)
            part = meta.loc[ids]
            centres = part["center"].astype(str).to_numpy() if "center" in part else None
            groups = part["case_id"].astype(str).to_numpy() if "case_id" in part else None
            rows.append({"kind": "diagnostics", **diag.diagnose(first, second, centres, groups, seed=seed)})
        return rows

    return Monitor(fn)


def monitor_table(monitor: pd.DataFrame, method: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The probe rows of a ``monitor.csv`` as a per-split tidy table whose method is ``<method>@<epoch>`` (the input
    of :func:`gigassl.book.paper.fig3`), and the mean AUC per epoch for plotting: (per_split, per_epoch)."""
    probe = monitor[monitor["kind"] == "probe"]
    per_split = probe.assign(method=[f"{method}@{int(e)}" for e in probe["epoch"]])
    per_epoch = probe.groupby(["protocol", "epoch", "task"])["auc"].agg(auc_mean="mean", auc_std="std").reset_index()
    return per_split, per_epoch.assign(aggregator=method)
