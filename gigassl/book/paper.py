"""The paper's published numbers, and how a run compares with them (the book's results page).

``published()`` reads Tables 2-4 (``data/paper/published_results.csv``). The paper's figures (Fig. 2, 3) are given
as the claims its text makes (``CLAIMS``). Every comparison is a difference the paper reports (e.g. Giga-SSL minus
AverageMIL on NSCLC at 100% of the labels) set beside the same difference computed from the run, paired over the
same splits, with the corrected resampled t-interval of Nadeau & Bengio (2003, :mod:`gigassl.evaluation.compare`); the verdict
follows the rule of :mod:`gigassl.book.verdicts` (consistent, same direction smaller/larger, opposite, equivalent,
different, undecided, not testable here). Each row is labelled with the training size that ran beside the paper's
regime. Nothing here is written from expectation: with no run numbers there is no agreement.

The synthetic tasks are analogues of three of the paper's tasks (``TASK_ANALOGUES``); the other three (BRCA
molecular, mHRD, tHRD) have no synthetic counterpart.
"""

from __future__ import annotations

import importlib.resources
import os

import numpy as np
import pandas as pd

from ..book import verdicts
from ..evaluation.compare import (UNDECIDED, VARIANCE_SOURCES, common_splits, corrected_t, paired, per_split,
                                  split_ratio, t_interval)
from .plan import SSL_FULL, SSL_REF

TASK_ANALOGUES = {"nsclc_like": "NSCLC subtyping", "rcc_like": "RCC subtyping", "brca_like": "BRCA subtyping"}
# the AUC band the synthetic cohort was calibrated into, on AverageMIL alone at 100% of the labels (book: calibration)
CALIBRATION_BAND = (0.65, 0.92)

# What the paper's text says of its figures (headline_figures.md), as signed expectations on a run's numbers.
CLAIMS = {
    "fig2": "the gain of Giga-SSL over DeepMIL grows as the training set shrinks: +5.1 AUC points at 100 WSI, "
            "+6.3 at 50 WSI (mean of 6 tasks)",
    "fig3a": "fewer sampled tiles per view during SSL training give better representations",
    "fig3b": "without view ensembling up to 4 AUC points are lost (NSCLC); the gain saturates around R = 50",
    "fig3c": "with an attention-MIL aggregator, linear AUC decreases as SSL training proceeds; "
             "with the sparse CNN it does not",
    "speed": "the linear probe took 1.25 CPU-seconds for 10 splits against 150 GPU-minutes for attention MIL (7200x)",
}


def published() -> pd.DataFrame:
    """Tables 2-4 of the paper: table, task, data_regime, method, auc_mean, auc_std, note."""
    path = importlib.resources.files("gigassl.data") / "paper" / "published_results.csv"
    with importlib.resources.as_file(path) as file:
        return pd.read_csv(file)


# (verdict, words) of a run's difference with its interval against the paper's claim: the rule of
# gigassl.book.verdicts, the one definition, re-exported for the results page
judge = verdicts.judge


VERDICTS = verdicts.VERDICTS


def _arm(values, ratio: float) -> tuple[float, float, float]:
    """(mean AUC, low, high) of one arm over the splits of a comparison, the same corrected interval."""
    mean, se, df = corrected_t(values, ratio)
    return (mean, *t_interval(mean, se, df))


def claim_row(artefact: str, comparison: str, task: str, regime: str, paper: float | str, run: float,
              se: float = float("nan"), df: int = 0, protocol: str = "paper", n_splits: int = 0, arms=None,
              ratio: float = float("nan"), paper_regime: str = "", scale: str = "AUC difference",
              low: float | None = None, high: float | None = None, also: str = "") -> dict:
    """One comparison of the results page: ``paper`` the paper's difference, or a direction (increase, decrease, no
    decrease); ``run`` the run's paired mean difference, ``se`` and ``df`` its corrected t statistic
    (:func:`gigassl.evaluation.compare.corrected_t`, n_test / n_train = ``ratio``), from which the 95% interval (unless ``low``
    and ``high`` are given), the verdict (:func:`gigassl.book.verdicts.judge`) and the p-value of its decision
    (:func:`gigassl.book.verdicts.decision_p`) follow. ``arms``: ``{method: (mean AUC, low, high)}`` of the arms the
    claim depends on; an arm at chance makes the row :data:`gigassl.book.verdicts.NOT_TESTABLE`. ``also``: what the
    two arms differ in besides the factor the comparison names (column ``also_differs``; empty: nothing)."""
    if low is None or high is None:
        low, high = t_interval(run, se, df, verdicts.LEVEL) if not np.isnan(run) else (float("nan"), float("nan"))
    verdict, words = verdicts.judge(paper, run, low, high)
    arms = arms or {}
    chance = verdicts.at_chance(arms)
    row = {"artefact": artefact, "comparison": comparison, "task": task, "regime": regime,
           "paper_regime": paper_regime or regime, "protocol": protocol, "run": run, "ci_low": low, "ci_high": high,
           "n_splits": n_splits, "se": se, "df": df, "scale": scale, "also_differs": also,
           "variance_sources": (f"{VARIANCE_SOURCES['corrected']}, n_test/n_train {ratio:.2f}; not: SSL seed, cohort"
                                if not np.isnan(ratio) else ""),
           "p_value": verdicts.decision_p(paper, run, se, df),
           "arm_names": ";".join(arms), "at_chance": ";".join(chance),
           "arms": "; ".join(f"{name} {m:.3f} [{lo:.3f}, {hi:.3f}]" for name, (m, lo, hi) in arms.items()),
           "paper": np.nan if isinstance(paper, str) else paper,
           "paper_claim": paper if isinstance(paper, str) else f"{paper:+.3f}", "agreement": words, "verdict": verdict}
    return row


def regime_label(paper_regime: str, n_train: float, budget: str = "") -> str:
    """What ran, beside what the paper ran: ``"20 slides, paper: 50 WSI"``, ``"22 slides (25%), paper: 25%"``."""
    if np.isnan(n_train):
        return f"{budget or paper_regime}, paper: {paper_regime}"
    fraction = REGIMES.get(budget, "")
    return f"{n_train:.0f} slides" + (f" ({fraction})" if fraction else "") + f", paper: {paper_regime}"


def _pick(frame: pd.DataFrame, **where) -> float:
    part = frame
    for key, value in where.items():
        part = part[part[key] == value]
    return float(part["auc_mean"].iloc[0]) if len(part) else float("nan")


def _paired_row(artefact, comparison, label, regime, paper_value, splits, a, b, protocol, plan_ratio=None, also="",
                **where) -> dict:
    """A :func:`claim_row` whose run value is ``a - b`` paired over the splits of ``splits`` selected by ``where``,
    with the corrected interval (n_test / n_train of those splits, else ``plan_ratio``) and the arms' AUCs."""
    part = splits[splits["protocol"] == protocol] if "protocol" in splits.columns else splits
    for key, value in where.items():
        part = part[part[key] == value]
    if not ({a, b} <= set(part["method"])):
        return claim_row(artefact, comparison, label, regime, paper_value, float("nan"), protocol=protocol,
                         paper_regime=regime, also=also)
    pairs = per_split(part, a, b, by=())
    rows = part[part["method"].isin([a, b]) & part["split"].isin(set(pairs["split"]))]
    ratio = split_ratio(rows, plan_ratio)
    run, se, df = corrected_t(pairs["difference"], ratio)
    n_train = float(rows["n_train"].mean()) if "n_train" in rows else float("nan")
    budget = str(where.get("budget", ""))
    return claim_row(artefact, comparison, label, regime_label(regime, n_train, budget), paper_value, run, se, df,
                     protocol, int(pairs["difference"].notna().sum()),
                     {a: _arm(pairs["auc_a"], ratio), b: _arm(pairs["auc_b"], ratio)}, ratio, regime, also=also)


def table2(splits: pd.DataFrame, protocol: str = "paper") -> pd.DataFrame:
    """Giga-SSL minus AverageMIL and minus DeepMIL per task analogue and label budget (Table 2), paired over the
    splits every method of the task and budget has (:func:`gigassl.evaluation.compare.common_splits`: Giga-SSL and AverageMIL
    over DeepMIL's splits when DeepMIL runs fewer), with the corrected interval.

    ``splits``: the per-split tidy table (columns method gigassl/averagemil/deepmil, protocol, task, budget
    ``full``/``25p``, split, auc, n_train, n_test).
    """
    paper = published()
    paper = paper[paper["table"] == 2]
    splits = common_splits(splits)
    rows = []
    for task, name in TASK_ANALOGUES.items():
        for budget, regime in (("full", "100%"), ("25p", "25%")):
            for method, label in (("averagemil", "AverageMIL"), ("deepmil", "DeepMIL")):
                theirs = _pick(paper, task=name, data_regime=regime, method="Giga-SSL") - _pick(
                    paper, task=name, data_regime=regime, method=label)
                rows.append(_paired_row("Table 2", f"Giga-SSL - {label}", task, regime, theirs, splits, "gigassl",
                                        method, protocol, task=task, budget=budget))
    return pd.DataFrame(rows)


TABLE3_VARIANTS = {"no_slide_aug": "w/o slide-aug", "ns": "NS (tile augmentation not shared)",
                   "imagenet": "Giga-SSLim (ImageNet tile encoder)", "imagenet_ns": "Giga-SSLim NS"}


def table3(splits: pd.DataFrame, small: str, protocol: str = "paper") -> pd.DataFrame:
    """Each ablated model minus the Giga-SSL of the same training budget that differs from it in the factor the
    paper names, per task analogue, at 100% and on the smallest training set (budget ``small``, standing for the
    paper's 50 WSI), paired over splits. The ImageNet arms start their aggregator at random (EfficientNet-Lite0 has
    no layer4): they are set against ``random_init`` (the MoCo arm with a random start) when the run has it, else
    against ``full`` and the row says that it differs in two factors
    (:func:`gigassl.book.experiments.variant_contrast`); column ``also_differs`` names what else differs (the tile
    features' size: 1280-d against 256-d).

    ``splits``: per-split table whose ``method`` is the variant (full, no_slide_aug, ns, imagenet, imagenet_ns,
    random_init).
    """
    from .experiments import variant_contrast

    paper = published()
    paper = paper[paper["table"] == 3]
    rows = []
    for variant, label in TABLE3_VARIANTS.items():
        contrast = variant_contrast(variant, set(splits["method"]))
        reference = "Giga-SSL" if contrast.b == "full" else "Giga-SSL, random aggregator start"
        for task, name in TASK_ANALOGUES.items():
            for regime, budget in (("100%", "full"), ("50 WSI", small)):
                theirs = _pick(paper, task=name, data_regime=regime, method=label) - _pick(
                    paper, task=name, data_regime=regime, method="Giga-SSL")
                rows.append(_paired_row("Table 3", f"{label} - {reference}", task, regime, theirs, splits, variant,
                                        contrast.b, protocol, also=contrast.also, task=task, budget=budget))
    return pd.DataFrame(rows)


def encoder_or_ssl(splits: pd.DataFrame, small: str | None = None) -> pd.DataFrame:
    """Beyond the paper, beside Table 3's ImageNet rows: the AverageMIL controls of the augmentation page
    (:data:`gigassl.book.experiments.CONTROLS`): the tile encoder alone (AverageMIL ImageNet - AverageMIL MoCo) and
    SSL on one encoder (Giga-SSL - AverageMIL on the same tile features), per protocol, task and regime, paired over
    splits with the corrected interval (Nadeau & Bengio, 2003). No paper number: not a claim, not counted.

    ``splits``: the augmentation page's per-split table (methods of its variants and AverageMIL arms); ``small``:
    the budget standing for 50 WSI. Columns: factor, comparison, protocol, task, regime, a, b, n_splits, auc_a,
    auc_b, run, ci_low, ci_high, verdict, also_differs, variance_sources.
    """
    from .experiments import CONTROLS

    columns = ["factor", "comparison", "protocol", "task", "regime", "a", "b", "n_splits", "auc_a", "auc_b", "run",
               "ci_low", "ci_high", "verdict", "also_differs", "variance_sources"]
    frames = []
    for contrast in CONTROLS:
        if not {contrast.a, contrast.b} <= set(splits["method"]):
            continue
        pairs = paired(splits, contrast.a, contrast.b, interval="corrected")
        frames.append(pairs.assign(factor=contrast.factor, comparison=f"{contrast.a} - {contrast.b}",
                                   also_differs=contrast.also, variance_sources=VARIANCE_SOURCES["corrected"]))
    if not frames:
        return pd.DataFrame(columns=columns)
    out = pd.concat(frames, ignore_index=True).rename(columns={"difference": "run"})
    out["regime"] = out["budget"].map({"full": "100%", **({small: f"{small} slides"} if small else {})})
    return out[columns]


# the independent-centre run trains the profile's epochs on fewer slides: fewer optimizer steps than ssl_ref
TABLE4_ALSO = "same epochs on fewer slides, so fewer optimizer steps"
# Fig. 3C's two aggregators also start differently (gigassl.train: only the sparse CNN takes the tile embedder's layer4)
FIG3C_ALSO = "aggregator start: attention random, sparse CNN from the tile embedder's layer4"


def table4(splits: pd.DataFrame, small: str | None, task: str = "nsclc_like", protocol: str = "paper") -> pd.DataFrame:
    """SSL on independent centres minus SSL on all slides (Table 4, NSCLC), per regime, paired over splits.

    ``splits``: per-split table with methods ``full`` and ``independent``; ``small``: the budget standing for
    50 WSI (None: 100% only).
    """
    paper = published()
    paper = paper[paper["table"] == 4]
    rows = []
    for regime, budget in (("100%", "full"), ("50 WSI", small)):
        if budget is None:
            continue
        full = paper[(paper["data_regime"] == regime) & paper["method"].str.contains("full")]["auc_mean"]
        indep = paper[(paper["data_regime"] == regime) & paper["method"].str.contains("independent")]["auc_mean"]
        rows.append(_paired_row("Table 4", "independent centres - all slides", task, regime,
                                float(indep.iloc[0] - full.iloc[0]), splits, "independent", "full", protocol,
                                also=TABLE4_ALSO, task=task, budget=budget))
    return pd.DataFrame(rows)


def fig2(splits: pd.DataFrame, protocol: str = "paper") -> pd.DataFrame:
    """The mean gain of Giga-SSL over DeepMIL (over the tasks, paired per split) at the two smallest training sizes,
    and the trend from the second smallest to the smallest (Fig. 2), with the corrected interval.

    ``splits``: per-split table with methods gigassl and deepmil and budgets that are training sizes ("20", ...),
    columns n_train, n_test.
    """
    part = splits[splits["protocol"] == protocol] if "protocol" in splits.columns else splits
    part = part[part["budget"].astype(str).str.isdigit() & part["method"].isin(["gigassl", "deepmil"])]
    pairs = per_split(part, "gigassl", "deepmil", by=("task", "budget"))
    if pairs.empty:
        return pd.DataFrame()
    pairs = pairs.assign(train_size=pairs["budget"].astype(int))
    mean = pairs.groupby(["train_size", "split"])[["difference", "auc_a", "auc_b"]].mean()
    sizes = sorted(mean.index.get_level_values("train_size").unique())
    ratios = {size: split_ratio(part[part["budget"].astype(str) == str(size)]) for size in sizes}
    rows = []

    def arms(size):
        return {f"gigassl@{size}": _arm(mean.loc[size, "auc_a"], ratios[size]),
                f"deepmil@{size}": _arm(mean.loc[size, "auc_b"], ratios[size])}

    def add(size, theirs, value):
        d = mean.loc[size, "difference"]
        run, se, df = corrected_t(d, ratios[size])
        rows.append(claim_row("Fig. 2", f"mean gain at {size} slides (paper: {theirs})", "all",
                              f"{size} slides, paper: {theirs}", value, run, se, df, protocol, int(d.notna().sum()),
                              arms(size), ratios[size], theirs))

    if len(sizes) >= 2:
        add(sizes[1], "100 WSI", 0.051)
    add(sizes[0], "50 WSI", 0.063)
    if len(sizes) >= 2:
        # the paper's trend is from 100 WSI (+5.1) to 50 WSI (+6.3): gain(smallest) - gain(second smallest)
        wide = mean["difference"].unstack("train_size")
        trend = (wide[sizes[0]] - wide[sizes[1]]).to_numpy()
        ratio = max(ratios[sizes[0]], ratios[sizes[1]])  # the larger correction of the two sizes
        run, se, df = corrected_t(trend, ratio)
        rows.append(claim_row("Fig. 2", f"gain at {sizes[0]} minus gain at {sizes[1]} slides (paper: 50 vs 100 WSI)",
                              "all", f"{sizes[0]} vs {sizes[1]} slides, paper: 50 vs 100 WSI", 0.063 - 0.051, run,
                              se, df, protocol, int((~np.isnan(trend)).sum()), {**arms(sizes[0]), **arms(sizes[1])},
                              ratio, "50 vs 100 WSI"))
    return pd.DataFrame(rows)


def slope(x, y) -> float:
    """Least-squares slope of y on x."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = ~np.isnan(y)
    if keep.sum() < 2:
        return float("nan")
    return float(np.polyfit(x[keep], y[keep], 1)[0])


def fig3(tiles: pd.DataFrame | None = None, views: pd.DataFrame | None = None,
         aggregator: pd.DataFrame | None = None, task: str = "nsclc_like", protocol: str = "paper",
         plan_ratio: float | None = None) -> pd.DataFrame:
    """Claims of Fig. 3 on the NSCLC analogue, paired over splits, with the corrected interval. The paper gives no
    numbers for A and C: their claim is a direction.

    Per-split tables (columns method, protocol, task, budget, split, auc): ``tiles`` with methods ``T<k>``,
    ``views`` with methods ``R<r>``, ``aggregator`` (the SSL monitor) with methods ``<aggregator>@<epoch>``. A table
    without n_train/n_test columns (the monitor's) takes n_test / n_train = ``plan_ratio``, test_fraction /
    (1 - test_fraction) of the split plan.
    """
    rows = []

    def number(method: str) -> int:
        return int(method.split("@")[-1].lstrip("TR"))

    if tiles is not None:
        methods = sorted(set(tiles["method"]), key=number)
        rows.append(_paired_row("Fig. 3A", f"AUC({methods[-1]}) - AUC({methods[0]}) (paper: fewer tiles are better)",
                                task, "100%", "decrease", tiles, methods[-1], methods[0], protocol, plan_ratio,
                                task=task, budget="full"))
    if views is not None:
        methods = sorted(set(views["method"]), key=number)
        rows.append(_paired_row("Fig. 3B", f"AUC({methods[-1]}) - AUC({methods[0]}) (paper: up to +4 points)", task,
                                "100%", 0.04, views, methods[-1], methods[0], protocol, plan_ratio, task=task,
                                budget="full"))
    if aggregator is not None:
        for name, sign in (("attention", "decrease"), ("sparseconv", "no decrease")):
            methods = sorted((m for m in set(aggregator["method"]) if m.startswith(f"{name}@")), key=number)
            if len(methods) >= 2:
                rows.append(_paired_row("Fig. 3C", f"{name}: AUC(last monitored epoch) - AUC(first)", task, "100%",
                                        sign, aggregator, methods[-1], methods[0], protocol, plan_ratio,
                                        also=FIG3C_ALSO, task=task, budget="full"))
    return pd.DataFrame(rows)


def verdict_counts(claims: pd.DataFrame, column: str = "verdict") -> dict:
    """The counts of a page's verdicts (:func:`gigassl.book.verdicts.counts`): of the counted rows, how many agree with
    the paper, show its direction at another size, disagree or are undecided; and how many are not testable or have
    no run number (not counted). ``column``: ``verdict`` (raw) or ``corrected_verdict`` (Holm)."""
    return verdicts.counts(claims, column)


def calibration_history() -> pd.DataFrame:
    """The calibration runs of the synthetic demo cohort (``data/calibration/averagemil.csv``): AverageMIL AUC per
    task for each generator setting tried, with the MoCo and a random tile embedder."""
    path = importlib.resources.files("gigassl.data") / "calibration" / "averagemil.csv"
    with importlib.resources.as_file(path) as file:
        return pd.read_csv(file)


# ------------------------------------------------------------------------------------------- the results page
METHOD_NAMES = {"gigassl": "Giga-SSL", "averagemil": "AverageMIL", "deepmil": "DeepMIL"}
REGIMES = {"full": "100%", "25p": "25%"}


def side_by_side(summary: pd.DataFrame) -> pd.DataFrame:
    """The run's Table 2 (``summary``: protocol, task, budget, method, auc_mean, auc_std, and n_splits: summarise
    the splits every method has, :func:`gigassl.evaluation.compare.common_splits`) beside the paper's numbers for the task
    analogue, one row per protocol, task, regime and method."""
    paper = published()
    paper = paper[paper["table"] == 2]
    run = summary.assign(paper_task=summary["task"].map(TASK_ANALOGUES), data_regime=summary["budget"].map(REGIMES),
                         method_name=summary["method"].map(METHOD_NAMES))
    side = run.merge(paper, left_on=["paper_task", "data_regime", "method_name"],
                     right_on=["task", "data_regime", "method"], how="left", suffixes=("", "_paper"))
    n_splits = ["n_splits"] if "n_splits" in side else []
    return side[["protocol", "task", "paper_task", "data_regime", "method_name", *n_splits, "auc_mean_paper",
                 "auc_std_paper", "auc_mean", "auc_std"]].rename(columns={"auc_mean_paper": "paper AUC", "auc_std_paper": "paper std",
                                                         "auc_mean": "run AUC", "auc_std": "run std",
                                                         "method_name": "method"})


# Sec. 4.3: "1.25 CPU-seconds" for the linear probe on 10 splits of BRCA, "150 GPU-minutes" for attention MIL
PAPER_PROBE_SECONDS = 1.25
PAPER_MIL_SECONDS = 150 * 60


def speed_claim(splits: pd.DataFrame, protocol: str = "fair", probe: str = "gigassl") -> pd.DataFrame:
    """The speed claim as one row: DeepMIL's CPU time over the linear probe's (method ``probe``) under ``protocol``
    (its own probe's time: the fair probe includes its inner cross-validation), per split at 100% of the labels,
    paired; the geometric mean ratio with the corrected interval of the mean log ratio, beside the paper's
    (150 GPU-minutes / 1.25 CPU-seconds, 7200x). One row: the claim counts once.

    ``splits``: the linear-probe page's per-split table (method, protocol, budget, split, cpu_seconds, n_train,
    n_test).
    """
    theirs = PAPER_MIL_SECONDS / PAPER_PROBE_SECONDS
    part = splits[(splits["protocol"] == protocol) & (splits["budget"].astype(str) == "full")]
    times = part.assign(auc=np.log(part["cpu_seconds"].clip(lower=1e-9)))
    pairs = per_split(times, "deepmil", probe, by=("task",))
    rows = part[part["method"].isin(["deepmil", probe])]
    ratio = split_ratio(rows)
    log_ratio = pairs.groupby("split")["difference"].mean()  # over the tasks of a split
    run, se, df = corrected_t(log_ratio, ratio)
    low, high = t_interval(run, se, df, verdicts.LEVEL)
    row = claim_row("Speed", f"DeepMIL CPU time / {protocol} linear-probe CPU time (geometric mean over splits)",
                    "all", regime_label("100%", float(rows["n_train"].mean()), "full"), float(np.log(theirs)), run,
                    se, df, protocol, int(log_ratio.notna().sum()), None, ratio, "100%", scale="log ratio",
                    low=low, high=high)
    row.update(run=float(np.exp(run)), ci_low=float(np.exp(low)), ci_high=float(np.exp(high)), paper=theirs,
               paper_claim=f"{theirs:.0f}x (GPU vs CPU)",
               variance_sources=row["variance_sources"].replace("splits", "splits, log ratio", 1),
               agreement=row["agreement"].split(" (")[0] + f" (run {np.exp(run):.0f}x, paper {theirs:.0f}x)")
    return pd.DataFrame([row])


def verdict_sentence(counts, protocol: str, corrected=None) -> str:
    """One sentence with the counts of :func:`verdict_counts` (a dict or a Series) under ``protocol``, and those
    after Holm's correction (``corrected``) when given."""
    said = (f"**Under the {protocol} protocol, of the {counts['counted']} comparisons that can be tested here, "
            f"{counts['agree']} agree with the paper, {counts['same direction, other size']} show its direction at "
            f"another size, {counts['disagree']} are decided against it and {counts['undecided']} are undecided; "
            f"{counts[verdicts.NOT_TESTABLE]} are not testable here (an arm at chance or collapsed) and "
            f"{counts[verdicts.NO_RUN]} have no run number.")
    if corrected is not None:
        said += (f" After Holm's correction across the page: {corrected['agree']} agree, "
                 f"{corrected['same direction, other size']} same direction at another size, "
                 f"{corrected['disagree']} disagree, {corrected['undecided']} undecided.")
    return said + "**"


def _fmt(value: float) -> str:
    return "n/a" if value is None or np.isnan(value) else f"{value:.3f}"


def explain_verdicts(diagnostics: pd.DataFrame, claims: pd.DataFrame, protocol: str = "fair",
            retrieval: pd.DataFrame | None = None, deepmil: pd.DataFrame | None = None) -> str:
    """Why the run agrees with the paper or not, in sentences computed from its diagnostics and verdicts.

    ``diagnostics``: one row per representation (columns representation, alignment, uniformity, mean_cosine,
    effective_rank, centre_accuracy, centre_chance), with rows ``ssl_full`` and ``averagemil``; ``claims``: the
    rows of every comparison (both protocols); ``retrieval``: the MoCo check, :func:`gigassl.moco.retrieval_curve`
    (epoch 0 = the random init; epoch, top1, infonce, chance_top1, chance_infonce, gain, ci_low, ci_high, verdict);
    ``deepmil``: DeepMIL minus AverageMIL, paired (task, budget, difference, ci_low, ci_high, verdict).
    """
    d = diagnostics.set_index("representation")
    lines = []
    if retrieval is not None and len(retrieval) > 1:
        first, last = retrieval.sort_values("epoch").iloc[0], retrieval.sort_values("epoch").iloc[-1]
        ahead = last.ci_low > 0
        lines.append(
            f"- **Tile embedder.** On held-out tiles, MoCo's loss with fixed negatives goes from "
            f"{first.infonce:.3f} (random init) to {last.infonce:.3f} after {int(last.epoch)} epochs (chance "
            f"{first.chance_infonce:.3f}), and it retrieves the other augmented view of a tile with top-1 "
            f"{last.top1:.4f} against {first.top1:.4f} for its random initialisation (chance "
            f"{first.chance_top1:.4f}; gain {last.gain:+.4f} [{last.ci_low:+.4f}, {last.ci_high:+.4f}]): "
            + ("MoCo learnt invariances its random initialisation lacks, but little in absolute terms (a few "
               "minutes of CPU against the paper's 200 epochs on 6 million tiles), so every method here builds on "
               "weak tile embeddings." if ahead else
               "in its budget the demo's MoCo is not ahead of a random network, so every method here builds on "
               "tile embeddings close to a random network's; the paper's MoCo ran 200 epochs on 6 million tiles."))
    if {SSL_FULL, "averagemil"} <= set(d.index):
        g, a = d.loc[SSL_FULL], d.loc["averagemil"]
        lines.append(
            f"- **Geometry.** Mean cosine between slides: Giga-SSL {_fmt(g.mean_cosine)}, AverageMIL "
            f"{_fmt(a.mean_cosine)}; effective rank {g.effective_rank:.1f} against {a.effective_rank:.1f}. "
            + ("Both are strongly anisotropic: most of each embedding is a direction all slides share, which L2 "
               "normalisation keeps and standard scaling removes, so the probe's preprocessing decides how much of "
               "the slide-specific part a C = 10 logistic regression can use. "
               if min(g.mean_cosine, a.mean_cosine) > 0.8 else "")
            + ("The Giga-SSL embedding is the more anisotropic one: the paper's protocol (L2, C = 10) handicaps it "
               "more than the standard-scaled AverageMIL; the fair protocol chooses the preprocessing for both. "
               if g.mean_cosine > a.mean_cosine + 0.02 else ""))
        lines.append(
            f"- **Stability.** Alignment of two independent embeddings of a slide: Giga-SSL {_fmt(g.alignment)}, "
            f"AverageMIL {_fmt(a.alignment)} (0 = identical); uniformity {_fmt(g.uniformity)} against "
            f"{_fmt(a.uniformity)} (more negative = more spread).")
        more = g.centre_accuracy > a.centre_accuracy
        lines.append(
            f"- **Shortcut.** The centre is predicted from Giga-SSL embeddings with balanced accuracy "
            f"{_fmt(g.centre_accuracy)} and from AverageMIL with {_fmt(a.centre_accuracy)} (chance "
            f"{_fmt(g.centre_chance)}): the SSL objective made the embedding "
            + ("more organised by centre than the mean of the tile embeddings. A contrastive objective over two "
               "views of one slide rewards whatever every tile of the slide shares, the stain and scanner signature "
               "first (Sec. 5), while the labels of the synthetic tasks are carried by morphology that varies across "
               "a slide." if more else
               "less organised by centre than the mean of the tile embeddings: the stain shortcut is not what the "
               "SSL embedding adds."))
    if {SSL_REF, SSL_FULL} <= set(d.index):
        lines.append(
            f"- **Training length and pool.** The ablation-regime model (labelled slides only, a tenth of the steps) "
            f"has effective rank {d.loc[SSL_REF].effective_rank:.1f} and centre accuracy "
            f"{_fmt(d.loc[SSL_REF].centre_accuracy)}, the main run {d.loc[SSL_FULL].effective_rank:.1f} and "
            f"{_fmt(d.loc[SSL_FULL].centre_accuracy)}.")
    if deepmil is not None and len(deepmil):
        full = deepmil[deepmil["budget"] == "full"]
        below = full[full["verdict"] == "averagemil better"]
        lines.append(
            "- **DeepMIL.** Against AverageMIL at 100% of the labels: " + "; ".join(
                f"{r.task} {r.difference:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}]" for r in full.itertuples())
            + (f". It stays below AverageMIL on {', '.join(below['task'])}: the demo's labels are proportions of many "
               "tiles, which a mean estimates well, and each split trains the attention on about 70 bags (the "
               "few-tile check on the linear-probe page shows the baseline trains)." if len(below) else
               ": DeepMIL is not decided below AverageMIL on any task."))
    t2 = claims[(claims["artefact"] == "Table 2") & (claims["protocol"] == protocol)]
    if len(t2):
        decided = t2[t2["verdict"].map(verdicts.CATEGORY).isin(["agree", "same direction, other size", "disagree"])]
        items = "; ".join(f"{r.comparison} on {r.task} at {r.regime}: {r.run:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}] "
                          f"({r.verdict})" for r in decided.itertuples()) or "none"
        untestable = int((t2["verdict"] == verdicts.NOT_TESTABLE).sum())
        lines.append(f"- **Table 2 under the {protocol} protocol.** {len(decided)} of {len(t2)} comparisons are "
                     f"decided: {items}. {untestable} are not testable here (an arm at chance or collapsed); the "
                     "others are undecided: with the demo's test sets (about 30 slides per split) the intervals are "
                     "wider than most of the paper's effects (0.004 to 0.07 AUC).")
        both = claims[claims["artefact"] == "Table 2"].pivot_table(index=["comparison", "task", "regime"],
                                                                   columns="protocol", values="run")
        if {"paper", "fair"} <= set(both.columns):
            shift = float((both["fair"] - both["paper"]).mean())
            lines.append(f"- **Protocols.** On average the fair protocol moves the Giga-SSL-minus-baseline "
                         f"differences by {shift:+.3f} AUC against the paper's protocol.")
    return "\n".join(lines)


# the sections of a profile that benchmarks/seeds.py's numbers depend on (its record's settings digest)
SEED_SECTIONS = ("synth", "tile", "encoder", "augment", "moco", "bank", "train", "embed", "probe")


def seed_settings(profile: str, steps: int | None) -> dict:
    """What ``benchmarks/seeds.py`` ran with: the profile's name, the main run's SSL steps and a digest of the
    profile's sections it uses (:data:`SEED_SECTIONS`); written beside its CSV, compared by :func:`seed_spread`."""
    import dataclasses
    import hashlib
    import json

    from ..config import get_profile

    chosen = get_profile(profile)
    record = {name: dataclasses.asdict(getattr(chosen, name)) for name in SEED_SECTIONS}
    digest = hashlib.sha256(json.dumps([record, steps], sort_keys=True, default=str).encode()).hexdigest()[:16]
    return {"profile": profile, "steps": steps, "digest": digest}


def seed_extra_sentence(extra: dict) -> str:
    """The cohort variance added to the page's intervals (:func:`seed_variance`), in one sentence."""
    if not extra:
        return ("No benchmark record matches this run: the intervals hold the splits only (their *variance sources* "
                "say so), not the cohort nor the training seeds.")
    said = "; ".join(f"{protocol}: tau {np.sqrt(tau2):.3f} AUC ({df} df)" for protocol, (tau2, df) in extra.items())
    return f"Added to every difference of the page, in quadrature with its split standard error: {said}."


def seed_record(path: str | os.PathLike, expected: dict, root: str | os.PathLike) -> tuple[pd.DataFrame | None, str]:
    """The rows of ``benchmarks/seeds.py``'s recorded output when its record matches ``expected`` (else None), and a
    sentence saying what was recorded when, or why it is refused and how to regenerate it (:func:`seed_spread`)."""
    import json
    from pathlib import Path

    path = Path(root) / path  # an absolute path stays itself
    rerun = (f"Regenerate it with `python benchmarks/seeds.py --out /tmp/seeds --seeds 0 1 2 --reuse runs/demo` "
             f"(profile {expected['profile']}, about 20 minutes a seed on 2 cores).")
    if not path.is_file():
        return None, f"No recorded output of `benchmarks/seeds.py` at `{path}`. {rerun}"
    record_path = path.with_suffix(".json")
    record = json.loads(record_path.read_text()) if record_path.is_file() else None
    if record is None or record.get("settings") != expected:
        found = "no record of its settings" if record is None else (
            f"settings {record.get('settings')} at commit {record.get('commit', '?')}")
        return None, (f"`{path}` is not used: it was recorded with {found}, and this run's settings are "
                      f"{expected}. A benchmark of other settings says nothing about this run. {rerun}")
    frame = pd.read_csv(path, dtype={"budget": str})
    return frame, (f"Recorded at commit {record.get('commit', '?')} with this run's settings ({expected['digest']}), "
                   f"seeds {sorted(frame['seed'].unique().tolist())}.")


def seed_spread(path: str | os.PathLike, expected: dict, root: str | os.PathLike) -> tuple[pd.DataFrame, str]:
    """The recorded output of ``benchmarks/seeds.py`` (one row per cohort seed, protocol, method, task and budget: AUC
    mean and std over splits; method ``gigassl - averagemil`` is their paired difference), summarised over seeds:
    the mean over seeds, the std over seeds (cohort to cohort) and the mean of the per-seed std over splits; and a
    sentence saying what was recorded when.

    The record (``<path>`` with ``.json``: the commit and :func:`seed_settings`) must match ``expected`` (the
    settings of the run on the page): a CSV without a record, or recorded with other settings, is refused (an empty
    table, and the sentence says why and how to regenerate it). A relative ``path`` lies under ``root`` (the project
    whose ``benchmarks/seeds.py`` wrote it: :func:`gigassl.book.plan.project_root` of a run), never under the
    working directory; an absolute one is read as it is.
    """
    frame, note = seed_record(path, expected, root)
    return summarize_seeds(frame), note


def summarize_seeds(frame: pd.DataFrame | None) -> pd.DataFrame:
    """The rows of :func:`seed_record` summarised over seeds (:func:`seed_spread`'s table); empty for None."""
    if frame is None:
        return pd.DataFrame(columns=["protocol", "method", "task", "budget", "seeds", "auc_mean", "std_over_seeds",
                                     "std_over_splits"])
    return frame.groupby(["protocol", "method", "task", "budget"]).agg(
        seeds=("seed", "nunique"), auc_mean=("auc_mean", "mean"), std_over_seeds=("auc_mean", "std"),
        std_over_splits=("auc_std", "mean")).reset_index()


MAIN_DIFFERENCE = "gigassl - averagemil"  # the comparison benchmarks/seeds.py repeats on each cohort


def seed_variance(frame: pd.DataFrame | None) -> tuple[dict, pd.DataFrame]:
    """What the cohort (with every seed of its training) adds to a split interval, from ``benchmarks/seeds.py``'s
    rows (:func:`seed_record`; the difference rows need the column ``se``: the corrected standard error over the
    splits of each seed).

    Per protocol, task and budget of the main comparison, over the k seeds: the variance of the per-seed mean
    difference (between cohorts) minus the mean of the squared split standard errors (what the split intervals
    already hold), k - 1 degrees of freedom. Pooled per protocol (the df-weighted mean, floored at 0): ``tau2``,
    with the summed degrees of freedom. Returns ({protocol: (tau2, df)} for :func:`gigassl.book.verdicts.inflate`;
    empty without usable rows) and the per-group table (protocol, task, budget, seeds, between_sd, split_se,
    extra_variance).
    """
    columns = ["protocol", "task", "budget", "seeds", "between_sd", "split_se", "extra_variance"]
    if frame is None or "se" not in frame or not (frame["method"] == MAIN_DIFFERENCE).any():
        return {}, pd.DataFrame(columns=columns)
    rows = []
    part = frame[(frame["method"] == MAIN_DIFFERENCE) & np.isfinite(frame["se"].astype(float))]
    for (protocol, task, budget), group in part.groupby(["protocol", "task", "budget"]):
        if len(group) < 2:
            continue
        between = float(group["auc_mean"].var(ddof=1))
        within = float((group["se"].astype(float) ** 2).mean())
        rows.append({"protocol": protocol, "task": task, "budget": budget, "seeds": len(group),
                     "between_sd": np.sqrt(between), "split_se": np.sqrt(within), "extra_variance": between - within})
    table = pd.DataFrame(rows, columns=columns)
    extra = {}
    for protocol, group in table.groupby("protocol"):
        df = (group["seeds"] - 1).to_numpy(float)
        extra[protocol] = (max(0.0, float((df * group["extra_variance"]).sum() / df.sum())), int(df.sum()))
    return extra, table


def reversals(frame: pd.DataFrame) -> pd.DataFrame:
    """The reversal check of ``benchmarks/seeds.py`` (issue #23: a verdict decided one way on one cohort must not be
    decided the other way on another). Per protocol, task and budget of the main comparison and per seed: its
    verdict (above 0, below 0, undecided at 95%) with the split-only interval (``splits_only``) and with the interval
    widened by the cohort variance estimated from the OTHER seeds (``with_cohort``: :func:`seed_variance` leaving
    that seed out, :func:`gigassl.book.verdicts.widened`); ``<column>_reverses``: whether one seed
    is decided above 0 and another below. ``frame``: the rows of ``seeds.csv`` (the difference rows need ``se`` and
    ``df``)."""
    from ..evaluation.compare import t_interval

    def side(low, high):
        return "above 0" if low > 0 else "below 0" if high < 0 else UNDECIDED

    diff = frame[frame["method"] == MAIN_DIFFERENCE]
    out = []
    for seed in sorted(diff["seed"].unique()):
        extra, _ = seed_variance(diff[diff["seed"] != seed])
        for row in diff[diff["seed"] == seed].itertuples():
            se, df = float(row.se), int(row.df)
            tau2, df_tau = extra.get(row.protocol, (0.0, 0))
            out.append({"protocol": row.protocol, "task": row.task, "budget": row.budget, "seed": seed,
                        "difference": row.auc_mean, "splits_only": side(*t_interval(row.auc_mean, se, df)),
                        "with_cohort": side(*t_interval(row.auc_mean, *verdicts.widened(se, df, tau2, df_tau))),
                        "tau": float(np.sqrt(tau2))})
    columns = ["protocol", "task", "budget", "seed", "difference", "splits_only", "with_cohort", "tau"]
    table = pd.DataFrame(out, columns=columns)
    keys = ["protocol", "task", "budget"]
    for column in ("splits_only", "with_cohort"):
        flips = table.groupby(keys)[column].agg(lambda v: {"above 0", "below 0"} <= set(v))
        table = table.merge(flips.rename(f"{column}_reverses").reset_index(), on=keys, how="left")
    return table
