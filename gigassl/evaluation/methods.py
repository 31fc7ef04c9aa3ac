"""The methods of Table 2 by name: what ``gigassl probe --method gigassl|averagemil|deepmil`` runs.

:func:`run_method` runs one method on your labels (generated or given splits, the budgets of the probe config) or
on the authors' TCGA splits (``tcga_task``): the linear probe on slide embeddings (:func:`gigassl.evaluation.protocol.run_probe`,
:func:`gigassl.evaluation.tcga.run_tcga`), or a baseline on a bank's plain tile embeddings (:mod:`gigassl.evaluation.baselines`).
:func:`summary_text` is the summary the command prints. The command line only parses its options and calls these.
"""

from __future__ import annotations

import pandas as pd

from ..config import DeepMILConfig, ProbeConfig, choice
from ..errors import GigasslError

METHODS = ("gigassl", "averagemil", "deepmil")
SUMMARY_COLUMNS = ("method", "protocol", "task", "budget", "n_splits", "auc_mean", "auc_std", "ci_low", "ci_high",
                   "cpu_seconds")


def run_method(method: str = "gigassl", *, embeddings=None, ids=None, bank=None, labels=None, task: str | None = None,
               tcga_task: str | None = None, splits=None, allow_case_overlap: bool = False, protocol: str = "paper",
               probe: ProbeConfig = ProbeConfig(), deepmil: DeepMILConfig = DeepMILConfig(), out=None) -> pd.DataFrame:
    """One method over splits: the tidy table of every split's result (:data:`gigassl.evaluation.protocol.COLUMNS`).

    Args:
        method: ``gigassl`` (the linear probe on ``embeddings``, with ``ids`` for a ``.npy``), ``averagemil`` or
            ``deepmil`` (on ``bank``, a folder of gigassl banks or TRIDENT/CLAM features).
        labels, task: the label CSV and its column; or ``tcga_task``: the authors' labels and splits (every
            budget of theirs; ``probe.n_splits`` of each).
        splits: a folder of ``split_<k>.csv``; None: ``probe.n_splits`` generated splits (case-grouped,
            stratified). The budgets are ``probe.budgets`` and ``probe.train_sizes``.
        protocol: ``paper`` or ``fair`` (gigassl and averagemil on your labels).
        deepmil: the DeepMIL config (``method="deepmil"``).

    Raises:
        GigasslError: an input the method needs is missing (the error names the option).
    """
    choice(method, METHODS, "method", "Pass one of them to --method.")
    if tcga_task:
        from .tcga import run_tcga, run_tcga_baseline

        if method == "gigassl":
            if not embeddings:
                raise GigasslError("--tcga-task with the gigassl method needs --embeddings (and --ids for a .npy).")
            return run_tcga(embeddings, tcga_task, ids_path=ids, n_splits=probe.n_splits, config=probe, out=out)
        return run_tcga_baseline(_need_bank(bank, method), tcga_task, method=method, n_splits=probe.n_splits,
                                 config=probe, deepmil=deepmil, out=out)
    if not labels or not task:
        raise GigasslError("gigassl probe needs --labels CSV and --task COLUMN (or --tcga-task).")
    common = dict(splits=splits, n_splits=probe.n_splits, budgets=probe.budgets, train_sizes=probe.train_sizes,
                  allow_case_overlap=allow_case_overlap, out=out)
    if method == "gigassl":
        from .protocol import run_probe

        if not embeddings:
            raise GigasslError("--method gigassl needs --embeddings FILE (gigassl embed).")
        return run_probe(embeddings, labels, task, ids_path=ids, config=probe, protocol=protocol, **common)
    if method == "averagemil":
        from .baselines import run_averagemil

        return run_averagemil(_need_bank(bank, method), labels, task, config=probe, protocol=protocol, **common)
    from .baselines import run_deepmil

    return run_deepmil(_need_bank(bank, method), labels, task, config=deepmil, probe_config=probe, **common)


def _need_bank(bank, method: str):
    if not bank:
        raise GigasslError(f"--method {method} needs --bank DIR (the plain tile embeddings of gigassl bank, "
                           "or a folder of TRIDENT/CLAM features).")
    return bank


def summary_text(table: pd.DataFrame, probe: ProbeConfig = ProbeConfig()) -> str:
    """The summary of a result table, one row per method, protocol, task and budget: mean and std of the AUC over
    splits and the bootstrap interval (``probe.n_bootstrap`` resamples, ``probe.seed``)."""
    from .metrics import summarize

    summary = summarize(table, n_bootstrap=probe.n_bootstrap, seed=probe.seed)
    return summary[list(SUMMARY_COLUMNS)].to_string(index=False, float_format=lambda v: f"{v:.3f}")
