"""The verdict rule of the results page: how one of the run's differences is judged against the paper's claim.

Every rule below can fail in both directions: an undecided interval never agrees, and a claim of no difference is
tested for equivalence, not read as agreement whenever the run finds nothing. The interval is the run's 95%
interval of the paired difference (the corrected resampled t-interval of Nadeau & Bengio, 2003,
:func:`gigassl.evaluation.compare.corrected_interval`); ``margin`` is :data:`EQUIVALENCE_MARGIN`.

**A numeric claim** (the paper's difference ``paper``, ``|paper| >= NO_DIFFERENCE``):

- ``undecided``: the interval contains 0 (whatever else it contains);
- ``opposite``: the interval excludes 0 on the other side from ``paper``;
- ``consistent``: the interval excludes 0 on ``paper``'s side and contains ``paper``;
- ``same direction, smaller`` / ``same direction, larger``: it excludes 0 on ``paper``'s side and ``paper`` lies
  outside it, beyond the interval's far end (the run's effect is smaller) or before its near end (larger).

**A claim of no difference** (``|paper| < NO_DIFFERENCE``): an equivalence test against the margin,

- ``equivalent``: the interval lies inside (-margin, +margin) (two one-sided tests, each at 2.5%);
- ``different``: otherwise, the interval excludes 0: a decided difference where the paper claims none (however
  small: a difference decided but within the margin on both ends is ``equivalent`` first);
- ``undecided``: anything else (the interval contains 0 and reaches past the margin).

**A direction-only claim**: ``increase`` / ``decrease`` is ``same direction`` or ``opposite`` only when the
interval excludes 0, else ``undecided``. ``no decrease`` is an equivalence-or-increase claim (non-inferiority at
-margin): ``no decrease`` when low > -margin, otherwise ``decrease`` when the interval lies below 0 (a decided
decrease), else ``undecided``.

**Not testable here** (:data:`NOT_TESTABLE`): an arm the claim depends on is at chance (its AUC interval, the same
corrected interval over the same splits, contains :data:`CHANCE_AUC`) or has collapsed (its label-free effective
rank is below :data:`COLLAPSED_RANK`). Such rows are shown with what their interval says and are not counted, nor
are rows without a run number.

**Multiplicity**: every counted row has the p-value of the decision its interval makes (:func:`decision_p`, the
level at which the interval would first reach a decided verdict, from the same corrected t statistic); Holm's
step-down procedure (Holm, 1979) across the counted rows of the page gives the corrected verdicts
(:func:`correct`): a row Holm rejects is judged again on its interval at Holm's level for it, any other is
``undecided``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..evaluation.compare import UNDECIDED
from ..errors import ConfigError

LEVEL = 0.95  # the level of every interval of the results page
ALPHA = 1.0 - LEVEL  # the family-wise error rate Holm's correction keeps across the page
# A claim of no difference is tested for equivalence within +-0.02 AUC. Source: the paper (Sec. 4.3) calls DeepAttnMIL
# "on par with all other benchmarked algorithms (see Tab. 2)", which sit 0.000-0.039 AUC from it (7 of 8 within
# 0.01: DeepSMILE, HIPT); +-0.02 holds all those but one, and is about half the median std over splits of Table 2
# (0.035). Fixed before any verdict of the rule was computed.
EQUIVALENCE_MARGIN = 0.02
# A paper difference smaller than this (half a point of the third decimal it reports) is a claim of no difference.
NO_DIFFERENCE = 0.005
CHANCE_AUC = 0.5  # chance of a binary or one-vs-rest macro AUC
# An arm has collapsed when its slide embeddings span fewer than 5 effective directions (effective rank, RankMe:
# Garrido et al., ICML 2023; gigassl.evaluation.diagnostics.effective_rank, label-free). Set from the label-free diagnostics
# only: the mean of the tile embeddings spans 6.8 and every other run 12-18 (figures/representations.csv).
COLLAPSED_RANK = 5.0

NOT_TESTABLE = "not testable here"
NO_RUN = "no run number"
DIRECTIONS = ("increase", "decrease", "no decrease")
# each verdict, and what it says of the paper's claim (the counts of the page)
CATEGORY = {
    "consistent": "agree", "equivalent": "agree", "same direction": "agree", "no decrease": "agree",
    "same direction, smaller": "same direction, other size", "same direction, larger": "same direction, other size",
    "opposite": "disagree", "different": "disagree", "decrease": "disagree",
    UNDECIDED: UNDECIDED, NOT_TESTABLE: NOT_TESTABLE, NO_RUN: NO_RUN,
}
VERDICTS = tuple(CATEGORY)
COUNTS = ("agree", "same direction, other size", "disagree", UNDECIDED)  # what the counts of counted rows hold


def _missing(*values) -> bool:
    return any(v is None or (isinstance(v, float) and np.isnan(v)) for v in values)


def kind(paper: float | str) -> str:
    """The kind of a claim: ``numeric``, ``no difference`` (``|paper| < NO_DIFFERENCE``) or a direction."""
    if isinstance(paper, str):
        if paper not in DIRECTIONS:
            raise ConfigError(f"A direction claim must be one of {DIRECTIONS}; got {paper!r}.")
        return paper
    return "no difference" if abs(paper) < NO_DIFFERENCE else "numeric"


def judge(paper: float | str, run: float, low: float, high: float,
          margin: float = EQUIVALENCE_MARGIN) -> tuple[str, str]:
    """(verdict, words) of the run's difference ``run`` with interval [low, high] against the paper's claim
    ``paper`` (a difference, or a direction of :data:`DIRECTIONS`); the rule of the module docstring."""
    claim = kind(paper)
    if _missing(run, low, high):
        return NO_RUN, "no run number" if _missing(run) else "no interval"
    if claim == "no difference":
        if -margin < low and high < margin:
            return "equivalent", f"equivalent (interval inside +-{margin:g})"
        if low > 0 or high < 0:
            return "different", f"different (paper: no difference; run {run:+.3f}, decided)"
        return UNDECIDED, UNDECIDED
    if claim == "no decrease":
        if low > -margin:
            return "no decrease", f"no decrease (interval above -{margin:g})"
        if high < 0:
            return "decrease", f"decrease (by {-run:.3f}, decided)"
        return UNDECIDED, UNDECIDED
    if low <= 0 <= high:
        return UNDECIDED, UNDECIDED
    if claim in ("increase", "decrease"):
        shown = "increase" if low > 0 else "decrease"
        return ("same direction", "same direction") if shown == claim else ("opposite", "opposite direction")
    if (low > 0) != (paper > 0):
        return "opposite", "opposite direction"
    if low <= paper <= high:
        return "consistent", f"consistent (the paper's {paper:+.3f} inside the interval)"
    size = "smaller" if abs(paper) > max(abs(low), abs(high)) else "larger"
    return f"same direction, {size}", f"same direction, {size} ({run / paper:.1f}x the paper's effect)"


def decision_p(paper: float | str, run: float, se: float, df: int, margin: float = EQUIVALENCE_MARGIN) -> float:
    """The p-value of the decision the interval makes: the smallest alpha at which the two-sided t-interval
    run +- t_{df, 1 - alpha/2} se reaches a decided verdict of :func:`judge`.

    Numeric and increase/decrease claims: the test of a difference of 0, 2 P(T > |run| / se). No difference: the
    first of the equivalence (two one-sided tests, 2 P(T > (margin - |run|) / se) when |run| < margin) and the
    difference from 0 (2 P(T > |run| / se)). No decrease: the first of non-inferiority (2 P(T > (run + margin) / se)
    when run > -margin) and a decided decrease (2 P(T > -run / se) when run < 0). NaN without a standard error.
    """
    from scipy.stats import t

    if _missing(run, se) or df < 1 or se < 0:
        return float("nan")
    claim = kind(paper)
    if claim == "no difference":  # the distances to the boundaries the interval must clear, each test's own
        distances = [margin - abs(run), abs(run)]
    elif claim == "no decrease":
        distances = [run + margin, -run]
    else:
        distances = [abs(run)]
    distance = max(distances)  # the first decision reached: the test with the largest margin of its statistic
    if distance <= 0:
        return 1.0
    if se == 0:  # no spread over splits: decided at any level
        return 0.0
    return float(min(1.0, 2.0 * t.sf(distance / se, df)))


def holm(p) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm, 1979): sorted ascending, p_(k) * (m - k + 1), made monotone,
    capped at 1. NaNs stay NaN and do not count in m."""
    p = np.asarray(p, float)
    out = np.full(p.shape, np.nan)
    keep = np.flatnonzero(~np.isnan(p))
    order = keep[np.argsort(p[keep], kind="stable")]
    m = len(order)
    adjusted = np.maximum.accumulate(np.minimum(1.0, p[order] * (m - np.arange(m))))
    out[order] = adjusted
    return out


def at_chance(arms: dict) -> list[str]:
    """The arms (``{name: (mean AUC, low, high)}``) whose AUC interval contains :data:`CHANCE_AUC`."""
    return [name for name, (_, low, high) in arms.items() if not _missing(low, high) and low <= CHANCE_AUC <= high]


def collapsed(diagnostics: pd.DataFrame, run: str | None) -> bool:
    """Whether the representation ``run`` (a row of the label-free diagnostics, :func:`gigassl.book.experiments.
    representations`) has collapsed: effective rank below :data:`COLLAPSED_RANK`. Unknown runs have not."""
    if run is None or "representation" not in diagnostics or run not in set(diagnostics["representation"]):
        return False
    rank = float(diagnostics.set_index("representation").loc[run, "effective_rank"])
    return rank < COLLAPSED_RANK


def not_testable(claims: pd.DataFrame, diagnostics: pd.DataFrame | None = None, run_of=None) -> pd.DataFrame:
    """The claims with their untestable rows marked: ``verdict`` :data:`NOT_TESTABLE` (the judgement of the interval
    alone kept in ``interval_verdict`` and said in ``agreement``) where an arm is at chance (the ``at_chance`` column, ``;``-separated arm names) or has collapsed
    (``run_of(artefact, arm)`` names the training run of an arm, looked up in ``diagnostics``); ``counted`` is False
    there and where there is no run number."""
    reasons = []
    for row in claims.itertuples():
        why = [f"{arm} at chance" for arm in str(getattr(row, "at_chance", "") or "").split(";") if arm]
        if diagnostics is not None and run_of is not None:
            for arm in str(getattr(row, "arm_names", "") or "").split(";"):
                run = run_of(row.artefact, arm) if arm else None
                if collapsed(diagnostics, run):
                    rank = float(diagnostics.set_index("representation").loc[run, "effective_rank"])
                    why.append(f"{arm} collapsed ({run}: effective rank {rank:.1f} < {COLLAPSED_RANK:g})")
        reasons.append("; ".join(why))
    out = claims.assign(not_testable=reasons, interval_verdict=claims["verdict"])
    untestable = out["not_testable"] != ""
    out.loc[untestable, "agreement"] = ("not testable (" + out.loc[untestable, "not_testable"] + "); the interval "
                                        "alone: " + out.loc[untestable, "verdict"].astype(str))
    out.loc[untestable, "verdict"] = NOT_TESTABLE
    return out.assign(counted=~out["verdict"].isin([NOT_TESTABLE, NO_RUN]))


def widened(se: float, df: int, tau2: float, df_tau: int) -> tuple[float, int]:
    """(standard error, degrees of freedom) of a split interval (``se``, ``df``) widened by an extra variance
    ``tau2`` estimated on ``df_tau`` degrees of freedom: sqrt(se^2 + tau2) and Welch-Satterthwaite's
    (se^2 + tau2)^2 / (se^4 / df + tau2^2 / df_tau), at least 1; ``tau2 <= 0`` keeps ``df``."""
    total = se ** 2 + tau2
    if tau2 <= 0:
        return float(np.sqrt(total)), int(df)
    return float(np.sqrt(total)), max(1, int(total ** 2 / (se ** 4 / df + tau2 ** 2 / df_tau)))


def inflate(claims: pd.DataFrame, extra: dict) -> pd.DataFrame:
    """The claims with the variance from one cohort (and its training) to another added to every interval on the
    AUC-difference scale: ``extra`` is ``{protocol: (tau2, df)}`` (:func:`gigassl.book.paper.seed_variance`: the
    variance of the main comparison's difference between cohorts beyond what its split intervals hold, and the
    degrees of freedom of that estimate). A row's standard error becomes sqrt(se^2 + tau2), its degrees of freedom
    Welch-Satterthwaite's (se^2 + tau2)^2 / (se^4 / df + tau2^2 / df_tau), and its interval, verdict
    (:func:`judge`) and p-value (:func:`decision_p`) follow. The split-only values stay in ``se_splits``,
    ``ci_low_splits``, ``ci_high_splits``, ``verdict_splits``; ``variance_sources`` says what each interval holds.
    Rows of a protocol without an estimate, rows without a standard error and the Speed row (log ratio) keep their
    interval, and their ``variance_sources`` says so. Apply before :func:`not_testable` and :func:`correct`.
    """
    from ..evaluation.compare import t_interval

    out = claims.assign(se_splits=claims["se"], ci_low_splits=claims["ci_low"], ci_high_splits=claims["ci_high"],
                        verdict_splits=claims["verdict"])
    for i, row in out.iterrows():
        se, df = float(row["se"]), int(row["df"]) if np.isfinite(float(row["df"])) else 0
        if row.get("scale", "AUC difference") != "AUC difference" or not np.isfinite(se) or df < 1:
            continue
        if row["protocol"] not in extra:
            out.at[i, "variance_sources"] = f"{row['variance_sources']} (no matching cohort benchmark)"
            continue
        tau2, df_tau = extra[row["protocol"]]
        new_se, new_df = widened(se, df, tau2, df_tau)
        low, high = t_interval(float(row["run"]), new_se, new_df, LEVEL)
        paper = _paper_value(row)  # a Series reads like the rows of itertuples
        verdict, words = judge(paper, float(row["run"]), low, high)
        for column, value in (("se", new_se), ("df", new_df), ("ci_low", low), ("ci_high", high),
                              ("verdict", verdict), ("agreement", words),
                              ("p_value", decision_p(paper, float(row["run"]), new_se, new_df))):
            out.at[i, column] = value
        out.at[i, "variance_sources"] = (f"{str(row['variance_sources']).split('; not:')[0]}; cohort and training "
                                         f"seeds (tau {np.sqrt(tau2):.3f}, {df_tau} df, benchmarks/seeds.py)")
    return out


def _paper_value(row) -> float | str:
    return row.paper_claim if isinstance(row.paper_claim, str) and row.paper_claim in DIRECTIONS else row.paper


def correct(claims: pd.DataFrame, alpha: float = ALPHA) -> pd.DataFrame:
    """Holm's correction across the counted rows of a page: columns ``p_holm`` (adjusted p-value) and
    ``corrected_low``, ``corrected_high``, ``corrected_verdict``. A rejected row (p_holm <= alpha) is judged on its
    interval at Holm's level alpha / (m - k + 1) (k its rank among the m p-values); a counted row Holm does not
    reject is ``undecided``; an uncounted row keeps its verdict. Rows on a log scale (``scale`` ``log ratio``: the
    speed) are judged on the log of their values.

    Needs the columns of :func:`gigassl.book.paper.claim_row`: run, se, df, p_value, paper, paper_claim, verdict, counted.
    """
    from ..evaluation.compare import t_interval

    p = np.where(claims["counted"].to_numpy(bool), claims["p_value"].to_numpy(float), np.nan)
    adjusted = holm(p)
    ranks = pd.Series(p).rank(method="first").to_numpy()
    m = int((~np.isnan(p)).sum())
    lows, highs, verdicts = [], [], []
    for i, row in enumerate(claims.itertuples()):
        if np.isnan(p[i]):
            lows.append(np.nan), highs.append(np.nan)
            verdicts.append(row.verdict if not row.counted else UNDECIDED)
            continue
        if adjusted[i] > alpha:
            lows.append(np.nan), highs.append(np.nan), verdicts.append(UNDECIDED)
            continue
        log = getattr(row, "scale", "") == "log ratio"
        run = np.log(row.run) if log else row.run
        low, high = t_interval(run, row.se, int(row.df), level=1.0 - alpha / (m - ranks[i] + 1))
        paper = np.log(row.paper) if log else _paper_value(row)
        verdicts.append(judge(paper, run, low, high)[0])
        lows.append(np.exp(low) if log else low), highs.append(np.exp(high) if log else high)
    return claims.assign(p_holm=adjusted, corrected_low=lows, corrected_high=highs, corrected_verdict=verdicts)


def counts(claims: pd.DataFrame, column: str = "verdict") -> dict:
    """How many counted rows (``counted``) agree with the paper, show its direction at another size, disagree or
    are undecided (:data:`CATEGORY` of ``column``); and how many are not testable or have no run number."""
    kinds = claims[column].astype(str).map(CATEGORY).fillna("other")
    counted = claims["counted"].to_numpy(bool) if "counted" in claims else ~claims[column].isin([NOT_TESTABLE, NO_RUN])
    out = {name: int(((kinds == name) & counted).sum()) for name in COUNTS}
    out.update({"counted": int(counted.sum()), NOT_TESTABLE: int((claims["verdict"] == NOT_TESTABLE).sum()),
                NO_RUN: int((claims["verdict"] == NO_RUN).sum()), "total": len(claims)})
    return out


def rule_markdown() -> str:
    """The rule of this module in words, with its thresholds, for the results page."""
    from ..evaluation.compare import VARIANCE_SOURCES

    return (
        f"**Intervals.** Every interval is the 95% corrected resampled t-interval of Nadeau & Bengio (2003) over the "
        f"splits both arms share: mean +- t(J-1) * sqrt((1/J + n_test/n_train) * s^2). The term n_test/n_train "
        f"accounts for the overlap of random splits; the column *variance sources* says what each interval holds "
        f"(\"{VARIANCE_SOURCES['corrected']}\"). To it is added the variance from one synthetic cohort to another, "
        f"with every seed of its training (MoCo, bank draws, SSL, views), measured by `benchmarks/seeds.py` on the "
        f"main comparison (Giga-SSL minus AverageMIL) beyond what its split intervals hold, pooled over tasks and "
        f"budgets per protocol, and added to every difference of the page (an assumption: the other comparisons "
        f"vary as much from cohort to cohort); the degrees of freedom are Welch-Satterthwaite's. When no benchmark "
        f"record matches the run's settings, the interval holds the splits only and its *variance sources* say so. "
        f"The arms' own AUC intervals (the *at chance* check) hold the splits only.\n\n"
        f"**A numeric claim** (the paper's difference, at least {NO_DIFFERENCE} in size): *undecided* when the "
        f"interval contains 0, even if it contains the paper's value too; else *opposite* (decided the other way), "
        f"*consistent* (decided, the paper's value inside), or *same direction, smaller* / *larger* (decided, the "
        f"paper's value outside).\n\n"
        f"**A claim of no difference** (the paper's difference below {NO_DIFFERENCE}): an equivalence test with a "
        f"margin of +-{EQUIVALENCE_MARGIN} AUC (the paper calls DeepAttnMIL *on par* with MIL methods 0.000-0.039 AUC "
        f"from it, 7 of 8 within 0.01): *equivalent* when the interval lies inside the margin, else *different* when it "
        f"excludes 0 (a decided difference), else *undecided*.\n\n"
        f"**A direction-only claim**: *same direction* or *opposite* only when the interval excludes 0. *No "
        f"decrease* is an equivalence-or-increase claim: agreed when the interval lies above -{EQUIVALENCE_MARGIN}, "
        f"else *decrease* when it lies below 0 (a decided decrease), else *undecided*.\n\n"
        f"**Not testable here**: an arm the claim depends on is at chance (its AUC interval contains {CHANCE_AUC}) or "
        f"has collapsed (effective rank of its slide embeddings below {COLLAPSED_RANK:g}, label-free, page *What each "
        f"representation learnt*). These rows are shown with what their interval alone says and are not counted.\n\n"
        f"**Multiplicity.** Each counted row has the p-value of the decision its interval makes; Holm's step-down "
        f"correction across every counted row of this page (both protocols) keeps the family-wise error at "
        f"{ALPHA:.2f}. The *corrected verdict* judges a row Holm rejects on its interval at Holm's level for it; the "
        f"others are *undecided*.\n\n"
        f"**Speed** is one row, DeepMIL's CPU time over the fair probe's own CPU time per split (geometric mean, the "
        f"interval of the mean log ratio), counted once.")
