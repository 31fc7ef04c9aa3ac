"""The analysis of the study of issue #24 (the design's ``protocol`` and ``comparisons``, studies/mechanisms.yml), on
the scores table of :func:`gigassl.book.study.run_study` (one row per run and test slide).

- Per cell, pool and method: the ROC AUC of each (generator seed, SSL seed), their mean over SSL seeds then over
  generator seeds (the cell's AUC), its 95% interval from a bootstrap of the test slides stratified by generator
  seed (every SSL seed's AUC recomputed on the same resample; :func:`bootstrap_aucs`), and the spread over seeds.
- Comparisons (:data:`PAIRS`, per cell at its main pool): the difference of AUCs, paired on the same resamples; a
  two-sided bootstrap p-value; Holm-Bonferroni across every comparison of every cell (one family); verdict
  ``better`` / ``worse`` when the adjusted p is below 0.05 *and* the difference's interval excludes 0, else
  ``undecided``.
- The predictions beside the outcomes, and a paragraph per mechanism: sentences computed from these tables.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from .verdicts import holm

ALPHA, CHANCE = 0.05, 0.5
# (method, against): the design's comparisons, per cell
PAIRS = [("gigassl", "averagemil"), ("gigassl", "deepmil"), ("gigassl_local", "averagemil"),
         ("gigassl_local", "deepmil"), ("random_aggregator", "averagemil"), ("random_aggregator", "deepmil"),
         ("gigassl", "random_aggregator")]
NAMES = {"oracle": "the oracle", "averagemil": "AverageMIL", "deepmil": "DeepMIL", "gigassl": "Giga-SSL",
         "gigassl_local": "Giga-SSL with local views", "gigassl_random16": "Giga-SSL with T = 16 random tiles",
         "random_aggregator": "the untrained aggregator", "random_aggregator_local": "the untrained aggregator with "
                                                                                    "local views"}


def resampled_auc(score: np.ndarray, label: np.ndarray, index: np.ndarray) -> np.ndarray:
    """ROC AUC (ties count half) of ``score`` against binary ``label`` on each row of resample indices ``index``.
    Shape: (n,), (n,), (B, n) -> (B,); NaN for a resample with one class only."""
    s, y = score[index], label[index].astype(bool)
    ranks = rankdata(s, axis=1)
    n1 = y.sum(axis=1)
    n0 = y.shape[1] - n1
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((ranks * y).sum(axis=1) - n1 * (n1 + 1) / 2) / (n1 * n0)


def seed_points(scores: pd.DataFrame) -> dict:
    """{(cell, pool, method): pd.Series of the AUC per generator seed (mean over its SSL seeds), indexed by
    generator seed}: the units over which :func:`seed_interval` runs."""
    out = {}
    for (cell, pool, method), arm in scores.groupby(["cell", "pool", "method"], sort=False):
        per_run = {(g, s): float(resampled_auc(run.score.to_numpy(float), run.label.to_numpy(int),
                                               np.arange(len(run))[None])[0])
                   for (g, s), run in arm.groupby(["generator_seed", "ssl_seed"])}
        frame = pd.Series(per_run)
        out[(cell, int(pool), method)] = frame.groupby(level=0).mean()
    return out


def seed_interval(values, level: float = 0.95) -> tuple[float, float]:
    """The t-interval of the mean of ``values`` (one per generator seed: cohort, training set and the SSL seeds
    averaged inside): mean -+ t(level, n - 1) sd / sqrt(n). (NaN, NaN) with fewer than 2 values."""
    from scipy.stats import t

    values = np.asarray(values, float)
    if len(values) < 2:
        return float("nan"), float("nan")
    half = t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return float(values.mean() - half), float(values.mean() + half)


def bootstrap_aucs(scores: pd.DataFrame, n_bootstrap: int = 2000, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """(the AUC table, the bootstrap draws). The table: one row per (cell, mechanism, pool, method) with ``auc``
    (mean over generator seeds of the mean over SSL seeds), ``low``, ``high`` (2.5 and 97.5 percentiles of the
    same mean over resamples: the test slides' sampling, the runs fixed), ``seed_sd`` (sd of the per-run AUCs; NaN
    with one), ``seed_low``, ``seed_high`` (:func:`seed_interval` over the generator seeds: the cohorts and their
    training sets, SSL seeds averaged inside; NaN with one generator seed), ``n_runs``. The draws:
    {(cell, pool, method): (n_bootstrap,) array}. The test slides of each generator seed are resampled with
    ``rng(seed, generator seed)``, the same indices for every method and SSL seed (so differences are paired)."""
    from ..seeding import rng

    rows, draws = [], {}
    for cell, frame in scores.groupby("cell", sort=False):
        # the test slides of each generator seed (every run of the seed scores the same ones), resampled once
        resample = {g: rng(seed, int(g)).integers(0, part.slide_id.nunique(), size=(n_bootstrap, part.slide_id.nunique()))
                    for g, part in frame.groupby("generator_seed")}
        for (pool, method), arm in frame.groupby(["pool", "method"], sort=False):
            point, per_g_point, per_g_boot = [], [], []
            for g, by_g in arm.groupby("generator_seed"):
                seed_point, seed_boot = [], []
                for _, run in by_g.groupby("ssl_seed"):
                    run = run.sort_values("slide_id")
                    s, y = run.score.to_numpy(float), run.label.to_numpy(int)
                    seed_point.append(float(resampled_auc(s, y, np.arange(len(s))[None])[0]))
                    seed_boot.append(resampled_auc(s, y, resample[g]))
                point += seed_point
                per_g_point.append(np.mean(seed_point))
                per_g_boot.append(np.nanmean(seed_boot, axis=0))
            draw = np.nanmean(per_g_boot, axis=0)
            draws[(cell, int(pool), method)] = draw
            rows.append({"cell": cell, "mechanism": frame.mechanism.iloc[0], "pool": int(pool), "method": method,
                         "auc": float(np.mean(per_g_point)), "low": float(np.nanpercentile(draw, 2.5)),
                         "high": float(np.nanpercentile(draw, 97.5)),
                         "seed_sd": float(np.std(point, ddof=1)) if len(point) > 1 else float("nan"),
                         **dict(zip(("seed_low", "seed_high"), seed_interval(per_g_point))),
                         "n_runs": len(point)})
    return pd.DataFrame(rows), draws


def main_pool(table: pd.DataFrame, cell: str, method: str) -> int | None:
    """The pool of ``method`` in ``cell`` that the comparisons use: its largest (None: the method did not run)."""
    rows = table[(table.cell == cell) & (table.method == method)]
    return int(rows.pool.max()) if len(rows) else None


def comparisons(table: pd.DataFrame, draws: dict, pairs=PAIRS, alpha: float = ALPHA,
                seeds: dict | None = None) -> pd.DataFrame:
    """Every pair of :data:`PAIRS` that both ran, in every cell: ``difference`` (AUC of method - AUC of against),
    ``low``, ``high`` (its paired bootstrap interval), ``p`` (two-sided bootstrap p-value, (k + 1) / (B + 1) on each
    side), ``p_holm`` (Holm across all the rows: one family), ``verdict`` (better / worse / undecided: the design's
    rule). With ``seeds`` (:func:`seed_points`): ``seed_low``, ``seed_high`` (:func:`seed_interval` of the paired
    per-generator-seed differences) and ``seeds_agree`` (a decided verdict whose seed interval also excludes 0 on
    its side; NaN for an undecided one), descriptive: the verdict stays the design's."""
    rows = []
    for cell in table.cell.unique():
        for method, against in pairs:
            pa, pb = main_pool(table, cell, method), main_pool(table, cell, against)
            if pa is None or pb is None:
                continue
            auc = table.set_index(["cell", "pool", "method"]).auc
            rows.append({"cell": cell, "method": method, "against": against,
                         **_paired_row(draws[(cell, pa, method)] - draws[(cell, pb, against)],
                                       auc[(cell, pa, method)] - auc[(cell, pb, against)])})
    out = pd.DataFrame(rows, columns=["cell", "method", "against", "difference", "low", "high", "p"])
    out["p_holm"] = holm(out.p.to_numpy()) if len(out) else []
    out["verdict"] = [cell_verdict(r.difference, r.low, r.high, r.p_holm, alpha) for r in out.itertuples()]
    if seeds is not None:
        out = with_seed_intervals(out, table, seeds)
    return out


def with_seed_intervals(pairs: pd.DataFrame, table: pd.DataFrame, seeds: dict) -> pd.DataFrame:
    """``pairs`` with ``seed_low``, ``seed_high`` (the t-interval over generator seeds of the paired differences, at
    each method's main pool; an ``against`` of the form ``"<method> in <cell>"`` names the other cell's arm) and
    ``seeds_agree`` (see :func:`comparisons`)."""
    low, high, agree = [], [], []
    for r in pairs.itertuples():
        other_cell, other = r.cell, r.against
        if " in " in str(r.against):
            other, other_cell = r.against.split(" in ")
        a = seeds.get((r.cell, main_pool(table, r.cell, r.method), r.method))
        b = seeds.get((other_cell, main_pool(table, other_cell, other), other))
        d = (a - b).dropna() if a is not None and b is not None else pd.Series(dtype=float)
        lo, hi = seed_interval(d.to_numpy())
        low.append(lo)
        high.append(hi)
        agree.append(float("nan") if r.verdict == "undecided" or np.isnan(lo)
                     else bool(lo > 0 if r.verdict == "better" else hi < 0))
    return pairs.assign(seed_low=low, seed_high=high, seeds_agree=agree)


def _paired_row(d: np.ndarray, difference: float) -> dict:
    """difference, its paired bootstrap interval and two-sided p ((k + 1) / (B + 1) on each side) from draws ``d``."""
    d = d[~np.isnan(d)]
    side = min((np.sum(d <= 0) + 1), (np.sum(d >= 0) + 1)) / (len(d) + 1)
    return {"difference": float(difference), "low": float(np.percentile(d, 2.5)),
            "high": float(np.percentile(d, 97.5)), "p": float(min(1.0, 2 * side))}


def factor_effects(scores: pd.DataFrame, varied: pd.DataFrame, n_bootstrap: int = 2000, seed: int = 0,
                   pairs=PAIRS, alpha: float = ALPHA) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The design's sensitivity: what a nuisance factor changes. ``varied``: the scores of the sensitivity cells
    (``M1+center_shift``, :func:`gigassl.book.study.sensitivity_grid`); ``scores``: the main grid's, of which only
    the same runs are kept (the base cell, the varied runs' generator seeds, SSL seeds, pools and methods): the two
    arms differ in the factor alone, on the same test slides and labels, so their AUCs are paired on the same
    resamples. Returns (the AUC table of both arms, :func:`bootstrap_aucs`'s columns; the comparisons: per varied
    cell and method the AUC with the factor minus without (``kind`` factor, ``against`` names the base cell), and
    the design's pairs inside each varied cell (``kind`` method), with Holm across these rows: a family of its own,
    apart from the main map's). Raises ValueError when a varied run's test slides or labels are not its base
    cell's."""
    from .study import base_cell

    arms = []
    for cell, part in varied.groupby("cell", sort=False):
        keys = part[["generator_seed", "pool", "method", "ssl_seed"]].drop_duplicates()
        base = scores[scores.cell == base_cell(cell)].merge(keys, on=list(keys.columns))
        for (g, pool, method, s), run in part.groupby(["generator_seed", "pool", "method", "ssl_seed"]):
            other = base[(base.generator_seed == g) & (base.pool == pool) & (base.method == method)
                         & (base.ssl_seed == s)]
            mine = run.sort_values("slide_id")[["slide_id", "label"]].to_numpy()
            if not np.array_equal(mine, other.sort_values("slide_id")[["slide_id", "label"]].to_numpy()):
                raise ValueError(f"The {method} run of {cell} at generator seed {g}, SSL seed {s}, pool {pool} "
                                 f"has no run of {base_cell(cell)} on the same test slides and labels in the main "
                                 "grid's scores: run the full grid first (benchmarks/study.py).")
        arms += [base, part]
    table, draws = bootstrap_aucs(pd.concat(arms, ignore_index=True), n_bootstrap, seed)
    auc = table.set_index(["cell", "pool", "method"]).auc
    rows = []
    for cell in varied.cell.unique():
        for r in table[table.cell == cell].itertuples():
            key, other = (cell, r.pool, r.method), (base_cell(cell), r.pool, r.method)
            rows.append({"kind": "factor", "cell": cell, "method": r.method, "against": f"{r.method} in {other[0]}",
                         **_paired_row(draws[key] - draws[other], auc[key] - auc[other])})
        inside = comparisons(table[table.cell == cell], draws, pairs, alpha)
        rows += [{"kind": "method", **row} for row in inside.drop(columns=["p_holm", "verdict"]).to_dict("records")]
    out = pd.DataFrame(rows, columns=["kind", "cell", "method", "against", "difference", "low", "high", "p"])
    out["p_holm"] = holm(out.p.to_numpy()) if len(out) else []
    out["verdict"] = [cell_verdict(r.difference, r.low, r.high, r.p_holm, alpha) for r in out.itertuples()]
    return table, with_seed_intervals(out, table, seed_points(pd.concat(arms, ignore_index=True)))


def cell_verdict(difference: float, low: float, high: float, p_holm: float, alpha: float = ALPHA) -> str:
    """better / worse when the Holm-adjusted p is below ``alpha`` and the interval [low, high] excludes 0 on the
    side of the difference; undecided otherwise (an interval that holds 0 is never a win)."""
    if not p_holm < alpha:
        return "undecided"
    if difference > 0 and low > 0:
        return "better"
    if difference < 0 and high < 0:
        return "worse"
    return "undecided"


# ------------------------------------------------------------------------------------------------ words
def _auc_text(row) -> str:
    return f"{row.auc:.3f} [{row.low:.3f}, {row.high:.3f}]"


def outcome(cell: str, table: pd.DataFrame, pairs: pd.DataFrame) -> str:
    """What the run shows in ``cell`` (its main pools), in sentences computed from the tables: the order of the
    methods, those at chance, every comparison's verdict."""
    rows = [r for r in table[table.cell == cell].itertuples() if r.pool == main_pool(table, cell, r.method)]
    rows = sorted(rows, key=lambda r: -r.auc)
    order = "; ".join(f"{NAMES.get(r.method, r.method)} {_auc_text(r)}" for r in rows)
    chance = [NAMES.get(r.method, r.method) for r in rows if r.low <= CHANCE <= r.high]
    text = f"AUC (95% interval): {order}. "
    text += (f"At chance (interval holding 0.5): {', '.join(chance)}. " if chance
             else "No method's interval holds 0.5. ")
    mine = pairs[pairs.cell == cell]
    if len(mine):
        text += "Comparisons (Holm across all the cells): " + "; ".join(
            f"{NAMES[r.method]} vs {NAMES[r.against]}: {r.difference:+.3f} [{r.low:+.3f}, {r.high:+.3f}], "
            f"adjusted p {r.p_holm:.3g}, {r.verdict}{seed_words(r)}" for r in mine.itertuples()) + "."
    return text


def seed_words(row) -> str:
    """", over generator seeds [lo, hi]" for a comparison row with a seed interval, and whether the seeds agree
    with a decided verdict; empty without one."""
    lo, hi = getattr(row, "seed_low", float("nan")), getattr(row, "seed_high", float("nan"))
    if pd.isna(lo):
        return ""
    agree = getattr(row, "seeds_agree", float("nan"))
    said = "" if pd.isna(agree) else (" (the seeds agree)" if bool(agree) else " (the seeds do not: their "
                                                                                 "interval holds 0)")
    return f", over generator seeds [{lo:+.3f}, {hi:+.3f}]{said}"


def pool_curve_text(cell: str, table: pd.DataFrame) -> str:
    """How each pool-curve arm's AUC moves with the pool in ``cell`` (empty when it ran at one pool only)."""
    parts = []
    for method, rows in table[table.cell == cell].groupby("method"):
        if rows.pool.nunique() < 2:
            continue
        rows = rows.sort_values("pool")
        first, last = rows.iloc[0], rows.iloc[-1]
        overlap = first.low <= last.high and last.low <= first.high
        parts.append(f"{NAMES.get(method, method)} goes from {first.auc:.3f} (pool {first.pool}) to {last.auc:.3f} "
                     f"(pool {last.pool}), {'within each other' if overlap else 'outside each other'}'s intervals")
    return ("With the pool, " + "; ".join(parts) + ".") if parts else ""


def predictions_table(design: dict, table: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """One row per cell of the run: the prediction written before any run (the design's ``predictions``) beside
    the outcome (:func:`outcome`, plus the pool curves)."""
    rows = []
    for cell in table.cell.unique():
        text = " ".join(t for t in (outcome(cell, table, pairs), pool_curve_text(cell, table)) if t)
        rows.append({"cell": cell, "prediction": " ".join(str(design["predictions"].get(cell, "")).split()),
                     "outcome": text})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------ checks
CHECKS = ("better", "worse", "tie", "not_better", "not_worse", "chance", "above_chance")


def check_outcome(kind: str, low: float, high: float, verdict: str | None, margin: float) -> str:
    """held / failed / undecided for one check (studies/mechanisms_checks.yml gives the rules): ``low``, ``high``
    the 95% interval (of a difference for a comparison, of an AUC for chance and above_chance), ``verdict`` the
    comparison's verdict after Holm (None for chance checks). Undecided is never held."""
    if kind == "better":
        return "held" if verdict == "better" else "failed" if high < margin else "undecided"
    if kind == "worse":
        return "held" if verdict == "worse" else "failed" if low > -margin else "undecided"
    if kind == "tie":
        return ("held" if -margin < low and high < margin else "failed" if verdict in ("better", "worse")
                else "undecided")
    if kind == "not_better":
        return "held" if high < margin else "failed" if verdict == "better" else "undecided"
    if kind == "not_worse":
        return "held" if low > -margin else "failed" if verdict == "worse" else "undecided"
    if kind == "chance":
        return ("held" if CHANCE - margin < low and high < CHANCE + margin
                else "failed" if not low <= CHANCE <= high else "undecided")
    if kind == "above_chance":
        return "held" if low > CHANCE else "failed" if high < CHANCE + margin else "undecided"
    raise ValueError(f"Check kind {kind!r} is not one of {', '.join(CHECKS)}. Fix studies/mechanisms_checks.yml.")


def check_predictions(checks: dict, table: pd.DataFrame, pairs: pd.DataFrame, margin: float | None = None
                      ) -> pd.DataFrame:
    """Each check of ``checks`` (studies/mechanisms_checks.yml, ``checks``: {cell: [{claim, kind, method,
    against?}]}) decided on the map (``table`` of :func:`bootstrap_aucs` at each method's main pool, ``pairs`` of
    :func:`comparisons`): one row per check and method (``every`` and ``every_pair`` expanded) with ``cell``,
    ``claim``, ``kind``, ``method``, ``against``, ``low``, ``high`` (the interval decided on), ``verdict`` (the
    comparison's, empty for chance checks) and ``outcome`` (:func:`check_outcome`; ``not run`` when the cell or the
    method is not in the map). ``margin``: default the results page's equivalence margin."""
    from .verdicts import EQUIVALENCE_MARGIN

    margin = EQUIVALENCE_MARGIN if margin is None else margin
    rows = []
    for cell, cell_checks in checks.items():
        mine, my_pairs = table[table.cell == cell], pairs[pairs.cell == cell]
        for check in cell_checks:
            kind = check["kind"]
            if check["method"] == "every_pair":
                targets = [(r.method, r.against) for r in my_pairs.itertuples()] or [("every_pair", None)]
            elif check["method"] == "every":
                targets = [(m, None) for m in mine.method.unique()] or [("every", None)]
            else:
                targets = [(check["method"], check.get("against"))]
            for method, against in targets:
                row = {"cell": cell, "claim": check["claim"], "kind": kind, "method": method,
                       "against": against or "", "low": float("nan"), "high": float("nan"), "verdict": "",
                       "outcome": "not run"}
                if kind in ("chance", "above_chance"):
                    pool = main_pool(table, cell, method)
                    if pool is not None:
                        r = mine[(mine.method == method) & (mine.pool == pool)].iloc[0]
                        row.update(low=float(r.low), high=float(r.high),
                                   outcome=check_outcome(kind, r.low, r.high, None, margin))
                else:
                    found = my_pairs[(my_pairs.method == method) & (my_pairs.against == against)]
                    if len(found):
                        r = found.iloc[0]
                        row.update(low=float(r.low), high=float(r.high), verdict=r.verdict,
                                   outcome=check_outcome(kind, r.low, r.high, r.verdict, margin))
                rows.append(row)
    return pd.DataFrame(rows, columns=["cell", "claim", "kind", "method", "against", "low", "high", "verdict",
                                       "outcome"])
