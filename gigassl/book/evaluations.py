"""The book's page on the field's evaluations (issue #26): survival, few-shot, retrieval, patients and unseen centres,
for Giga-SSL, AverageMIL and DeepMIL on the run's cohort.

The slide embeddings go through :func:`gigassl.evaluation.headtohead.evaluate`, the function of ``gigassl
evaluate``: every representation on identical splits and draws, built from the labels and the seed, with the same
fixed probe (the paper's C, L2 rows) for every set. Beside it, what needs a model rather than a set of embeddings:
Giga-SSL's early fusion of a patient's slides (:func:`gigassl.embed.embed_cases`) and DeepMIL trained on each
unseen-centre split (:func:`gigassl.evaluation.baselines.run_deepmil`), paired with the others on the same splits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import Profile
from ..errors import ManifestError
from ..evaluation.compare import DRAW_INTERVALS, UNDECIDED, corrected_t, head_to_head, paired_draws
from ..evaluation.headtohead import evaluate
from ..evaluation.labels import task_table
from ..evaluation.patients import case_labels, patient_runs
from ..evaluation.splits import centre_splits
from ..evaluation.survival import kaplan_meier, logrank, survival_risks
from ..manifest import labelled_ids, task_columns
from .plan import BANK_MOCO_SHARED, EMBEDDINGS, SSL_FULL, SURVIVAL
from .stages import cohort_manifest

# what the page does not run, and why (said on the page beside the results)
NOT_RUN = {
    ("deepmil", "few_shot"): "DeepMIL is trained end to end, not probed: 20 draws x 5 K x 3 classifiers x 3 tasks would "
                             "be 900 trainings, on 2 to 32 slides each",
    ("deepmil", "survival"): "this project's DeepMIL has a classification head only (no Cox loss)",
    ("deepmil", "retrieval"): "DeepMIL gives a prediction, not a slide embedding to retrieve with",
    ("deepmil", "patients"): "the page's DeepMIL runs give per-split AUCs, not the per-slide probabilities late fusion "
                             "averages",
}


@dataclass(frozen=True)
class FieldEvaluations:
    """What :func:`field_evaluations` returns: every run (the tidy table of :mod:`gigassl.evaluation.headtohead`,
    DeepMIL's unseen-centre rows and Giga-SSL's early fusion included), every pair with its interval and verdict,
    the survival test slides' risk groups (for Kaplan-Meier curves), and what was not run."""

    runs: pd.DataFrame
    pairs: pd.DataFrame
    risks: pd.DataFrame
    not_run: pd.DataFrame

    def table(self, evaluation: str) -> pd.DataFrame:
        """:func:`summary_table` of one evaluation (unseen centres: the held-out centres, one row each)."""
        part = self.runs[self.runs["evaluation"] == evaluation]
        if evaluation == "unseen_centres":
            part = part[part["setting"].str.startswith("held_out:") & (part["setting"] != "held_out:all")]
        return summary_table(part)

    def pair_table(self) -> pd.DataFrame:
        """Every pair, with the columns a reader needs."""
        return self.pairs[["evaluation", "task", "setting", "metric", "a", "b", "n_draws", "mean_a", "mean_b",
                           "difference", "ci_low", "ci_high", "interval", "verdict", "p_holm", "corrected_verdict"]]


def page_labels(run_dir) -> pd.DataFrame:
    """The labelled slides of the cohort (``slide_id, case_id, center`` and the tasks) with the survival outcome
    ``time, event`` of the synthetic cohort's ``survival.csv`` (:data:`gigassl.book.plan.SURVIVAL`) when the cohort has
    one (a cohort of your own slides has none: the page says so)."""
    manifest = cohort_manifest(run_dir)
    labelled = manifest[manifest["slide_id"].isin(set(labelled_ids(manifest)))]
    path = Path(run_dir) / SURVIVAL
    if not path.is_file():
        return labelled.reset_index(drop=True)
    survival = pd.read_csv(path, dtype={"slide_id": str, "case_id": str})[["slide_id", "time", "event"]]
    return labelled.merge(survival, on="slide_id", how="left", validate="one_to_one")


def _early_fusion(config: Profile, run_dir, train: str, bank: str, labels: pd.DataFrame) -> tuple[list, np.ndarray]:
    """Giga-SSL's patient embeddings by early fusion (views across a patient's slides) with the run's model."""
    from ..bankstore import PackedBank
    from ..config import MapConfig
    from ..devices import resolve_device
    from ..embed import case_indices, embed_cases
    from ..train import load_checkpoint

    device = resolve_device(config.embed.device)
    model, state = load_checkpoint(Path(run_dir) / train / "checkpoint.pt", device)
    packed = PackedBank(Path(run_dir) / bank)
    cases = case_indices(labels, packed, list(packed.ids))  # the grouping of `gigassl embed --cases`
    return embed_cases(model, packed, cases, config.embed.views, config.embed.tiles_per_view,
                       MapConfig(**state["config"]["maps"]), config.embed.seed, config.embed.batch_views, device)


def _deepmil_unseen_centres(config: Profile, bank_dir: Path, labels: pd.DataFrame, task: str) -> pd.DataFrame:
    """DeepMIL trained on every held-out-centre split of :func:`gigassl.evaluation.splits.centre_splits` (the splits
    of :func:`gigassl.evaluation.centres.unseen_centre_runs`), as rows of the runs table (AUROC only)."""
    from ..evaluation.baselines import run_deepmil

    frame = task_table(labels, task)
    held, _ = centre_splits(frame)
    if not held:
        return pd.DataFrame()
    table = run_deepmil(bank_dir, labels, task, splits=held, budgets=(1.0,), train_sizes=(), config=config.deepmil,
                        probe_config=config.probe)
    rows, by_name = [], {split.name: split for split in held}
    for _, row in table.iterrows():
        split = by_name[str(row["split"])]
        rows.append({"method": "deepmil", "evaluation": "unseen_centres", "task": task, "setting": split.name,
                     "draw": 0, "metric": "auroc", "value": float(row["auc"]),
                     "centre": split.name.split(":", 1)[1], "n_train": len(split.train_ids),
                     "n_test": len(split.test_ids), "note": ""})
    return pd.DataFrame(rows)


def field_evaluations(config: Profile, run_dir, tasks=None, train: str = SSL_FULL, bank: str = BANK_MOCO_SHARED,
                      deepmil: bool = True, early_fusion: bool = True) -> FieldEvaluations:
    """The page's evaluations of Giga-SSL (``<run_dir>/<train>/embeddings.h5``), AverageMIL (the mean of the plain
    tile embeddings of ``<run_dir>/<bank>``) and, on unseen centres, DeepMIL; ``config.evaluate`` sets the splits
    and draws (the same for every representation)."""
    from ..evaluation.baselines import average_embeddings
    from ..evaluation.protocol import load_embeddings

    labels = page_labels(run_dir)
    tasks = list(tasks or task_columns(cohort_manifest(run_dir)))
    ids = list(labels["slide_id"])
    named = {"gigassl": load_embeddings(Path(run_dir) / train / EMBEDDINGS),
             "averagemil": average_embeddings(Path(run_dir) / bank, ids)}
    runs, risks = [], []
    early = {"gigassl": _early_fusion(config, run_dir, train, bank, labels)} if early_fusion else None
    for task in tasks:
        result = evaluate(named, labels, task, evaluations=("few_shot", "retrieval", "unseen_centres"),
                          config=config.evaluate)
        runs.append(result.runs)
        runs.append(patient_runs(named, labels, task, early=early, n_splits=config.evaluate.n_splits,
                                 test_fraction=config.evaluate.test_fraction, seed=config.evaluate.seed))
        if deepmil:
            runs.append(_deepmil_unseen_centres(config, Path(run_dir) / bank, labels, task))
    if {"time", "event"} <= set(labels.columns):
        runs.append(evaluate(named, labels, None, evaluations=("survival",), config=config.evaluate, time="time",
                             event="event").runs)
        for name, (rep_ids, matrix) in named.items():
            risks.append(survival_risks(rep_ids, matrix, labels, n_splits=config.evaluate.n_splits,
                                        test_fraction=config.evaluate.test_fraction,
                                        seed=config.evaluate.seed).assign(method=name))
    table = pooled_centres(pd.concat([r for r in runs if len(r)], ignore_index=True))
    ratio = config.evaluate.test_fraction / (1.0 - config.evaluate.test_fraction)
    pairs = head_to_head(table, ["gigassl", "averagemil", "deepmil"], test_train_ratio=ratio,
                         n_bootstrap=config.evaluate.n_bootstrap, seed=config.evaluate.seed)
    pairs = holm_pairs(table, pairs, ratio)
    not_run = pd.DataFrame([{"method": m, "evaluation": e, "why": why} for (m, e), why in NOT_RUN.items()])
    return FieldEvaluations(table, pairs, pd.concat(risks, ignore_index=True) if risks else pd.DataFrame(), not_run)


def holm_pairs(runs: pd.DataFrame, pairs: pd.DataFrame, test_train_ratio: float, alpha: float = 0.05) -> pd.DataFrame:
    """``pairs`` with a p-value per pair and Holm's correction across the page (the results page's
    :func:`gigassl.book.verdicts.holm`): ``p_value`` from the t statistic of the pair's per-draw differences, with
    the Nadeau-Bengio corrected standard error where the pair's interval is corrected (:data:`DRAW_INTERVALS`) and
    the plain one (s / sqrt(J)) where it is a bootstrap; NaN with fewer than two draws (never counted).
    ``corrected_verdict``: the verdict where Holm's adjusted p-value is at most ``alpha``, else undecided."""
    from scipy import stats

    from .verdicts import holm

    p_values = []
    for row in pairs.itertuples():
        draws = paired_draws(runs, row.a, row.b)
        mine = draws[(draws["evaluation"] == row.evaluation) & (draws["task"] == row.task)
                     & (draws["setting"] == row.setting) & (draws["metric"] == row.metric)]
        d = mine["difference"].dropna().to_numpy(float)
        if len(d) < 2:
            p_values.append(np.nan)
            continue
        if DRAW_INTERVALS.get(row.evaluation, "bootstrap") == "corrected":
            mean, se, df = corrected_t(d, test_train_ratio)
        else:
            mean, se, df = d.mean(), d.std(ddof=1) / np.sqrt(len(d)), len(d) - 1
        p_values.append(0.0 if se == 0 and mean != 0 else 1.0 if se == 0 else
                        float(2.0 * stats.t.sf(abs(mean) / se, df)))
    adjusted = holm(p_values)
    verdict = [v if (not np.isnan(p) and p <= alpha) else UNDECIDED for v, p in zip(pairs["verdict"], adjusted)]
    return pairs.assign(p_value=p_values, p_holm=adjusted, corrected_verdict=verdict)


def pooled_centres(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` plus, per representation and task, every held-out centre's AUROC again under the setting
    ``held_out:all`` with the centre as the draw, so that two representations are paired over the centres (one
    held-out centre is one draw: no interval of its own)."""
    held = runs[(runs["evaluation"] == "unseen_centres") & runs["setting"].str.startswith("held_out:")
                & runs["value"].notna()]
    if held.empty:
        return runs
    centres = sorted(held["setting"].unique())
    pooled = held.assign(setting="held_out:all", draw=held["setting"].map({c: i for i, c in enumerate(centres)}))
    return pd.concat([runs, pooled], ignore_index=True)


def summary_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Each representation's mean per (evaluation, task, setting, metric) over draws, one column per method (an
    empty table for no rows)."""
    if runs.empty:
        return pd.DataFrame(columns=["evaluation", "task", "setting", "metric"])
    mean = runs.groupby(["evaluation", "task", "setting", "metric", "method"], sort=False)["value"].mean()
    return mean.unstack("method").reset_index()


def fewshot_curve_table(runs: pd.DataFrame, metric: str = "auroc") -> pd.DataFrame:
    """The few-shot rows as curves: classifier, K, task, method, mean and std of ``metric`` over draws."""
    part = runs[(runs["evaluation"] == "few_shot") & (runs["metric"] == metric)].copy()
    part[["classifier", "K"]] = part["setting"].str.extract(r"^(\w+):K=(\d+)$")
    part["K"] = part["K"].astype(int)
    return (part.groupby(["classifier", "K", "task", "method"])["value"].agg(["mean", "std", "count"])
            .reset_index())


def kaplan_meier_table(risks: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Kaplan-Meier curves of the predicted low- and high-risk groups (test slides of every split, pooled: a slide
    counts once per split that tests it) and each split's log-rank p-value, per representation.

    Returns: (curves: method, group, time, survival), (tests: method, draw, p_value)."""
    if risks.empty:
        return pd.DataFrame(), pd.DataFrame()
    curves, tests = [], []
    for method, part in risks.groupby("method", sort=False):
        for group, rows in part.groupby("group"):
            t, s = kaplan_meier(rows["time"], rows["event"])
            curves.append(pd.DataFrame({"method": method, "group": int(group), "time": t, "survival": s}))
        for draw, rows in part.groupby("draw"):
            tests.append({"method": method, "draw": int(draw),
                          "p_value": logrank(rows["time"], rows["event"], rows["group"])})
    return pd.concat(curves, ignore_index=True), pd.DataFrame(tests)


def evaluations_finding(pairs: pd.DataFrame, runs: pd.DataFrame) -> str:
    """One sentence from the run: how many of Giga-SSL's paired comparisons with AverageMIL are decided either way,
    and the survival concordances."""
    mine = pairs[(pairs["a"] == "gigassl") & (pairs["b"] == "averagemil")] if {"a", "b"} <= set(pairs.columns) \
        else pairs.iloc[0:0]
    if mine.empty:
        raise ManifestError("No Giga-SSL/AverageMIL pair in the evaluations' table: the page cannot say anything.")
    verdicts = mine["verdict"].astype(str)
    better = int(verdicts.str.startswith("gigassl").sum())
    worse = int(verdicts.str.startswith("averagemil").sum())
    text = (f"Giga-SSL against AverageMIL over {len(mine)} paired comparisons (few-shot, retrieval, patients, unseen "
            f"centres, survival): {better} decided for Giga-SSL, {worse} for AverageMIL, "
            f"{len(mine) - better - worse} undecided")
    if "corrected_verdict" in mine.columns:
        corrected = mine["corrected_verdict"].astype(str)
        text += (f" ({int(corrected.str.startswith('gigassl').sum())} and "
                 f"{int(corrected.str.startswith('averagemil').sum())} after Holm's correction across the page)")
    text += "."
    harrell = runs[(runs["evaluation"] == "survival") & (runs["setting"] == "harrell")]
    if harrell.empty:
        text += " No survival outcome in this cohort: survival was not evaluated."
    else:
        means = harrell.groupby("method")["value"].mean()
        text += " Survival (Harrell's C, mean over splits): " + ", ".join(
            f"{m} {v:.3f}" for m, v in means.items()) + "."
    return text
