"""The results page and each page's finding: every comparison of the run with the paper, and one sentence per page
computed from the run (the line that opens the page, :func:`gigassl.book.figures.finding`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import pandas as pd

from ..book import plan
from ..evaluation.compare import common_splits, paired
from ..config import Profile
from .experiments import IndependentCentres, _boot, split_table
from ..evaluation.metrics import summarize
from ..evaluation.probe import PROTOCOLS
from ..evaluation.splits import budget_name


@dataclass(frozen=True)
class Results:
    """Every comparison of the run with the paper (the results page): the run's Table 2 beside the paper's (every
    method over the same splits), the claims of each artefact under both protocols, the plain-features row beyond
    the paper, the time of each method, and the verdicts: raw, and after Holm's correction across the page
    (:mod:`gigassl.book.verdicts`); ``controls``: the encoder-or-SSL rows beside Table 3's ImageNet rows
    (:func:`gigassl.book.paper.encoder_or_ssl`, not claims of the paper, not counted)."""

    side_by_side: pd.DataFrame
    claims: pd.DataFrame
    no_tile_aug: pd.DataFrame
    speed: pd.DataFrame
    controls: pd.DataFrame = field(default_factory=pd.DataFrame)

    def of(self, artefact: str) -> pd.DataFrame:
        """The claims of one artefact (``Table 2``, ``Fig. 2``, ``Table 3``, ``Table 4``, ``Fig. 3``, ``Speed``)."""
        return self.claims[self.claims["artefact"].str.startswith(artefact)].reset_index(drop=True)

    def under(self, protocol: str) -> pd.DataFrame:
        """The claims under one probe protocol."""
        return self.claims[self.claims["protocol"] == protocol]

    def table(self) -> pd.DataFrame:
        """Every claim with the columns of ``figures/results_claims.csv`` (:data:`CLAIM_COLUMNS` first): the interval
        and the variance sources it holds, the raw and Holm-corrected verdicts, whether the row is counted."""
        first = [c for c in CLAIM_COLUMNS if c in self.claims]
        return self.claims[first + [c for c in self.claims if c not in first]]

    def verdicts(self) -> pd.DataFrame:
        """Per protocol and correction (``raw``, ``holm``): of the counted comparisons, how many agree with the paper,
        show its direction at another size, disagree or are undecided; how many are not testable or have no
        number (not counted)."""
        from .paper import verdict_counts

        return pd.DataFrame([{"protocol": p, "verdicts": name, **verdict_counts(self.under(p), column)}
                             for p in PROTOCOLS for name, column in VERDICT_COLUMNS.items()])

    def compact(self, artefact: str, protocol: str) -> pd.DataFrame:
        """The claims of ``artefact`` under ``protocol`` in the few columns that fit the page (:func:`compact`)."""
        return compact(self.of(artefact).query("protocol == @protocol"))

    def controls_table(self, protocol: str) -> pd.DataFrame:
        """The encoder-or-SSL rows (``controls``) under ``protocol`` in few columns: factor, comparison, task,
        regime, the run's difference with its corrected interval, what else differs."""
        part = self.controls[self.controls["protocol"] == protocol] if len(self.controls) else self.controls
        if part.empty:
            return pd.DataFrame(columns=["factor", "comparison", "task", "regime", "run [95% interval]",
                                         "also differs"])
        run = [f"{r.run:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}]" for r in part.itertuples()]
        return pd.DataFrame({"factor": part["factor"].to_numpy(), "comparison": part["comparison"].to_numpy(),
                             "task": part["task"].to_numpy(), "regime": part["regime"].to_numpy(),
                             "run [95% interval]": run, "also differs": part["also_differs"].to_numpy()})

    def resolution(self, protocol: str) -> dict:
        """What the run could decide under ``protocol``: :func:`smallest_decidable` over its counted claims."""
        return smallest_decidable(self.under(protocol))

    def sentence(self, protocol: str) -> str:
        """The verdict counts under ``protocol`` in one sentence, raw and after Holm's correction."""
        from .paper import verdict_counts, verdict_sentence

        part = self.under(protocol)
        return verdict_sentence(verdict_counts(part), protocol, verdict_counts(part, "corrected_verdict"))


VERDICT_COLUMNS = {"raw": "verdict", "holm": "corrected_verdict"}
CLAIM_COLUMNS = ("artefact", "comparison", "task", "regime", "protocol", "paper_claim", "run", "ci_low", "ci_high",
                 "variance_sources", "also_differs", "verdict", "corrected_verdict", "counted", "not_testable", "p_value", "p_holm",
                 "n_splits", "arms", "agreement")
# The training run of each arm of a claim, whose label-free diagnostics (figures/representations.csv) say whether it
# collapsed; as the experiment pages' parameters name them (05_linear_probe: train; 07: variants; 10: runs; 11:
# models). Fig. 3A's T<k> and Fig. 3C's last epoch are resolved by :func:`arm_run`.
ARM_RUNS = {
    "Table 2": {"gigassl": plan.SSL_FULL, "averagemil": "averagemil"},
    "Fig. 2": {"gigassl": plan.SSL_FULL},
    "Fig. 3B": {"R": plan.SSL_FULL},
    "Table 3": {"full": plan.SSL_REF, "no_slide_aug": plan.SSL_NO_SLIDE_AUG, "ns": plan.SSL_NS,
                "imagenet": plan.SSL_IMAGENET, "imagenet_ns": plan.SSL_IMAGENET_NS, "random_init": plan.SSL_RANDOM_INIT},
    "Table 4": {"full": plan.SSL_REF, "independent": plan.SSL_INDEPENDENT_CENTRES},
    "Fig. 3C": {"sparseconv": plan.SSL_REF, "attention": plan.SSL_ATTENTION},
}


def arm_run(artefact: str, arm: str, reference_tiles: int, last_epochs: dict | None = None) -> str | None:
    """The training run of ``arm`` of a claim of ``artefact`` (:data:`ARM_RUNS`), None when no diagnosed run is that
    arm (DeepMIL; a monitored epoch before the last, ``last_epochs``: {aggregator: last epoch}). Fig. 3A: ``T<k>`` is
    ``ssl_ref`` when k is the profile's ``reference_tiles``, else ``ssl_T<k>``."""
    name, _, epoch = arm.partition("@")
    if artefact == "Fig. 3A":
        return plan.SSL_REF if name == f"T{reference_tiles}" else plan.SSL_TILES.format(tiles_per_view=name[1:])
    if artefact == "Fig. 3C" and str((last_epochs or {}).get(name)) != epoch:
        return None
    if artefact == "Fig. 3B":
        name = name[:1]
    return ARM_RUNS.get(artefact, {}).get(name)


def results(config: Profile, run_dir, figures_dir, seed_extra: dict | None = None) -> Results:
    """The paper's Tables 2-4 and Fig. 2-3 claims against the run's, from the per-split tables the experiment pages
    wrote (``<run_dir>/<page>/splits.csv``) and the tables of ``figures_dir`` (``speed``, ``representations``);
    each difference paired over splits with the corrected interval, under both protocols (:mod:`gigassl.book.paper`),
    widened by the cohort-to-cohort variance ``seed_extra`` ({protocol: (tau2, df)},
    :func:`gigassl.book.paper.seed_variance`; None or empty: the splits only, and the rows say so); rows with an arm
    at chance or collapsed marked not testable, and Holm's correction across the page (:mod:`gigassl.book.verdicts`)."""
    from ..book import paper, verdicts

    small = budget_name(size=min(config.probe.train_sizes))
    figures = Path(figures_dir)
    read = {name: split_table(run_dir, name) for name in (  # each page's per-split table, read once
        plan.LINEAR_PROBE, plan.TINY_DATASETS, plan.ABLATION_AUGMENTATION, plan.INDEPENDENT_CENTRES,
        plan.ABLATION_TILES, plan.ABLATION_VIEWS, plan.ABLATION_DEEPMIL_AGGREGATOR)}
    side = paper.side_by_side(summarize(common_splits(read[plan.LINEAR_PROBE]), n_bootstrap=0))
    small4 = small if small in set(read[plan.INDEPENDENT_CENTRES]["budget"]) else None
    speed = pd.read_csv(plan.table_path(figures, plan.SPEED))
    fraction = config.probe.test_fraction
    fig3 = dict(tiles=read[plan.ABLATION_TILES], views=read[plan.ABLATION_VIEWS],
                aggregator=read[plan.ABLATION_DEEPMIL_AGGREGATOR], plan_ratio=fraction / (1.0 - fraction))
    claims = [paper.table2(read[plan.LINEAR_PROBE], protocol=p) for p in PROTOCOLS]
    claims += [paper.fig2(read[plan.TINY_DATASETS], protocol=p) for p in PROTOCOLS]
    claims += [paper.table3(read[plan.ABLATION_AUGMENTATION], small, protocol=p) for p in PROTOCOLS]
    claims += [paper.table4(read[plan.INDEPENDENT_CENTRES], small4, protocol=p) for p in PROTOCOLS]
    claims += [paper.fig3(**fig3, protocol=p) for p in PROTOCOLS]
    claims.append(paper.speed_claim(read[plan.LINEAR_PROBE], protocol="fair"))
    monitored = read[plan.ABLATION_DEEPMIL_AGGREGATOR]["method"].str.partition("@")
    last = monitored.assign(epoch=monitored[2].astype(int)).groupby(0)["epoch"].max().astype(str).to_dict()
    diagnostics = pd.read_csv(plan.table_path(figures, plan.REPRESENTATIONS))
    claims = verdicts.inflate(pd.concat(claims, ignore_index=True), seed_extra or {})
    claims = verdicts.not_testable(claims, diagnostics, lambda artefact, arm: arm_run(
        artefact, arm, config.embed.tiles_per_view, last))
    no_tile_aug = paired(read[plan.ABLATION_AUGMENTATION], "no_tile_aug", "full", **_boot(config))
    controls = paper.encoder_or_ssl(read[plan.ABLATION_AUGMENTATION], small)
    return Results(side, verdicts.correct(claims), no_tile_aug, speed, controls)


# ------------------------------------------------------------------------------------ reading the page at a glance
COMPACT_COLUMNS = ("claim", "regime", "paper", "run [95% interval]", "verdict", "Holm")


def compact(claims: pd.DataFrame) -> pd.DataFrame:
    """Claims in the six columns of :data:`COMPACT_COLUMNS`, small enough for the page: the comparison and task, the
    regime that ran, the paper's claim, the run's difference with its interval, the raw and the Holm-corrected
    verdicts (the full rows: ``figures/results_claims.csv``)."""
    if claims.empty:
        return pd.DataFrame(columns=list(COMPACT_COLUMNS))
    run = [("n/a" if np.isnan(r.run) else f"{r.run:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}]")
           if r.scale != "log ratio" else f"{r.run:.0f}x [{r.ci_low:.0f}x, {r.ci_high:.0f}x]"
           for r in claims.assign(scale=claims.get("scale", "AUC difference")).itertuples()]
    holm = claims["corrected_verdict"] if "corrected_verdict" in claims else claims["verdict"]
    return pd.DataFrame({"claim": (claims["comparison"] + " | " + claims["task"]).to_numpy(),
                         "regime": claims["regime"].to_numpy(), "paper": claims["paper_claim"].to_numpy(),
                         "run [95% interval]": run, "verdict": claims["verdict"].to_numpy(),
                         "Holm": holm.to_numpy()})


def smallest_decidable(claims: pd.DataFrame) -> dict:
    """The smallest effect the run could decide, per counted claim on the AUC scale: the half-width of its interval,
    t_{(1+LEVEL)/2, df} * se (the same corrected t statistic its verdict uses; a difference is decided only when it
    is larger). Returns n (claims), median, low and high (range) of the half-widths, and how many of those claims
    have a paper effect (a number) smaller than their half-width (``paper_below``, of ``paper_numeric``): effects
    the run could not have decided even if they hold. Rows not counted (not testable, no number) and the Speed row
    (log scale) are left out."""
    from .verdicts import LEVEL
    from ..evaluation.compare import t_interval

    part = claims[claims["counted"].astype(bool)] if "counted" in claims else claims
    if "scale" in part:
        part = part[part["scale"] == "AUC difference"]
    part = part[np.isfinite(part["se"].astype(float)) & (part["df"].astype(float) > 0)]
    half = np.array([t_interval(0.0, float(se), int(df), LEVEL)[1] for se, df in zip(part["se"], part["df"])])
    numeric = part["paper"].astype(float).abs().to_numpy()
    has = np.isfinite(numeric)
    if not len(half):
        return {"n": 0, "median": float("nan"), "low": float("nan"), "high": float("nan"), "paper_numeric": 0,
                "paper_below": 0, "paper_median": float("nan")}
    return {"n": int(len(half)), "median": float(np.median(half)), "low": float(half.min()),
            "high": float(half.max()), "paper_numeric": int(has.sum()),
            "paper_below": int((numeric[has] < half[has]).sum()),
            "paper_median": float(np.median(numeric[has])) if has.any() else float("nan")}


def resolution_sentence(resolution: dict, protocol: str) -> str:
    """What the run can and cannot resolve (:func:`smallest_decidable`), in two sentences."""
    r = resolution
    if not r["n"]:
        return f"Under the {protocol} protocol no counted comparison has an interval: the run resolves nothing here."
    said = (f"At its sample size and split-to-split variance, this run decides an AUC difference only when it is "
            f"larger than the half-width of its 95% interval: {r['median']:.3f} AUC at the median over the "
            f"{r['n']} counted comparisons under the {protocol} protocol (from {r['low']:.3f} to {r['high']:.3f}).")
    if r["paper_numeric"]:
        said += (f" For {r['paper_below']} of the {r['paper_numeric']} whose paper claim is a number, the paper's "
                 f"effect (median {r['paper_median']:.3f} AUC) is smaller than that: the run could not decide it "
                 f"even if it holds.")
    return said + (" The intervals hold the variance from split to split (corrected for their overlap), not that of "
                   "the SSL training seed or of the cohort: an effect of that size may still move with either.")


def intro_text(results: Results, protocol: str) -> str:
    """The two sentences of the book's first page, plain text (glued by the results page, pasted by
    ``book/intro.md``): what the run found (the counts of its counted comparisons, raw and after Holm's
    correction) and what it cannot resolve (:func:`smallest_decidable`)."""
    from .paper import verdict_counts

    part = results.under(protocol)
    raw, holm = verdict_counts(part), verdict_counts(part, "corrected_verdict")
    r = smallest_decidable(part)
    found = (f"Of the {raw['counted']} comparisons with the paper that this run can test ({protocol} probe protocol), "
             f"{raw['agree']} agree, {raw['same direction, other size']} show the paper's direction at another "
             f"size, {raw['disagree']} are decided against it and {raw['undecided']} are undecided "
             f"({holm['agree']}, {holm['same direction, other size']}, {holm['disagree']} and {holm['undecided']} "
             f"after Holm's correction; {raw['not testable here']} more are not testable here).")
    if not r["n"]:
        return found + " No counted comparison has an interval, so the run resolves no effect size."
    cannot = (f" It cannot resolve an AUC difference smaller than about {r['median']:.3f} (the median half-width "
              f"of its intervals, {r['low']:.3f} to {r['high']:.3f}), larger than the paper's own effect in "
              f"{r['paper_below']} of the {r['paper_numeric']} numeric claims.")
    return found + cannot + " Its intervals hold the split-to-split variance only, not the SSL seed's or the cohort's."


def explain(results: Results, figures_dir, protocol: str) -> str:
    """Why the run agrees with the paper or not (:func:`gigassl.book.paper.explain_verdicts`), from the tables of the
    representations, MoCo and DeepMIL pages in ``figures_dir``."""
    from .paper import explain_verdicts

    figures = Path(figures_dir)
    return explain_verdicts(pd.read_csv(plan.table_path(figures, plan.REPRESENTATIONS)), results.claims, protocol,
                     retrieval=pd.read_csv(plan.table_path(figures, plan.MOCO_RETRIEVAL)),
                     deepmil=pd.read_csv(plan.table_path(figures, plan.DEEPMIL_VS_AVERAGEMIL)))


def pairs_finding(pairs: pd.DataFrame, protocol: str = "fair") -> str:
    """Paired comparisons (:func:`gigassl.evaluation.compare.paired`) in one sentence per pair of methods: how many are decided
    above 0, below 0 or undecided, and their mean difference, under ``protocol``."""
    part = pairs[pairs["protocol"] == protocol] if "protocol" in pairs else pairs
    said = []
    for (a, b), rows in part.groupby(["a", "b"], sort=False):
        above = int((rows["ci_low"] > 0).sum())
        below = int((rows["ci_high"] < 0).sum())
        said.append(f"{a} minus {b} is above 0 in {above}, below 0 in {below} and undecided in "
                    f"{len(rows) - above - below} of {len(rows)} comparisons "
                    f"(mean {rows['difference'].mean():+.3f} AUC)")
    return f"Under the {protocol} protocol, " + "; ".join(said) + "." if said else "No paired comparison."


def curve_finding(table: pd.DataFrame, x: str, protocol: str = "fair") -> str:
    """An AUC curve (:func:`tiles_ablation`, :func:`views_ablation`) in one sentence: per task, the AUC at the
    smallest and at the largest ``x``, under ``protocol``."""
    part = table[table["protocol"] == protocol].sort_values(x)
    said = [f"{task} {rows['auc_mean'].iloc[0]:.3f} at {x} = {rows[x].iloc[0]} and {rows['auc_mean'].iloc[-1]:.3f} "
            f"at {rows[x].iloc[-1]}" for task, rows in part.groupby("task", sort=False)]
    return f"Linear AUC under the {protocol} protocol: " + "; ".join(said) + "."


def aggregator_finding(per_epoch: pd.DataFrame, protocol: str = "paper") -> str:
    """The monitored AUC of each aggregator at its first and last monitored epoch (mean over splits)."""
    part = per_epoch[per_epoch["protocol"] == protocol].sort_values("epoch")
    said = [f"{name}: {rows['auc_mean'].iloc[0]:.3f} at epoch {int(rows['epoch'].iloc[0])}, "
            f"{rows['auc_mean'].iloc[-1]:.3f} at epoch {int(rows['epoch'].iloc[-1])}"
            for name, rows in part.groupby("aggregator", sort=False)]
    return f"Linear AUC during SSL ({protocol} protocol): " + "; ".join(said) + "."


def centres_finding(result: IndependentCentres, protocol: str = "fair") -> str:
    """The independent-centre model minus the model trained on every slide, per task and regime."""
    wide = result.wide()
    said = [f"{task} at {regime}: {row['independent'] - row['full']:+.3f}"
            for (p, task, regime), row in wide.iterrows() if p == protocol]
    return (result.describe() + f". Independent minus all slides ({protocol} protocol, mean AUC): " + "; ".join(said)
            + ".")


def retrieval_finding(precision: pd.DataFrame, k: int = 5) -> str:
    """Retrieval by each attribute at ``k`` neighbours, Giga-SSL against AverageMIL and chance."""
    part = precision[precision["k"] == k].pivot_table(index="attribute", columns="representation",
                                                      values="precision")
    chance = precision[precision["k"] == k].groupby("attribute")["chance"].first()
    said = [f"{attribute} {row.get('gigassl', float('nan')):.2f} against {row.get('averagemil', float('nan')):.2f} "
            f"(chance {chance[attribute]:.2f})" for attribute, row in part.iterrows()]
    return f"Precision at {k} of slide retrieval, Giga-SSL against AverageMIL: " + "; ".join(said) + "."


def representations_finding(table: pd.DataFrame) -> str:
    """Centre accuracy and effective rank of the main Giga-SSL run against AverageMIL."""
    rows = table.set_index("representation")
    if not {plan.SSL_FULL, "averagemil"} <= set(rows.index):
        return f"{len(rows)} representations diagnosed."
    g, a = rows.loc[plan.SSL_FULL], rows.loc["averagemil"]
    return (f"The centre is predicted from the main Giga-SSL embeddings with balanced accuracy "
            f"{g['centre_accuracy']:.2f} and from AverageMIL with {a['centre_accuracy']:.2f} (chance "
            f"{g['centre_chance']:.2f}); effective rank {g['effective_rank']:.1f} against {a['effective_rank']:.1f}.")
