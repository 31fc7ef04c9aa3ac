"""The results page and each page's finding: every comparison of the run with the paper, and one sentence per page
computed from the run (the line that opens the page, :func:`gigassl.figures.finding`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .compare import paired
from .config import Profile
from .experiments import IndependentCentres, _boot, read_splits
from .probe import PROTOCOLS
from .splits import budget_name


@dataclass(frozen=True)
class Results:
    """Every comparison of the run with the paper (the results page): the run's Table 2 beside the paper's, the
    claims of each artefact under both protocols, the plain-features row beyond the paper, and the verdicts."""

    side_by_side: pd.DataFrame
    claims: pd.DataFrame
    no_tile_aug: pd.DataFrame
    speed: pd.DataFrame

    def of(self, artefact: str) -> pd.DataFrame:
        """The claims of one artefact (``Table 2``, ``Fig. 2``, ``Table 3``, ``Table 4``, ``Fig. 3``, ``Speed``)."""
        return self.claims[self.claims["artefact"].str.startswith(artefact)].reset_index(drop=True)

    def under(self, protocol: str) -> pd.DataFrame:
        """The claims under one probe protocol."""
        return self.claims[self.claims["protocol"] == protocol]

    def verdicts(self) -> pd.DataFrame:
        """Per protocol: how many comparisons agree with the paper, disagree, are undecided or have no number."""
        from .paper import verdict_counts

        return pd.DataFrame([{"protocol": p, **verdict_counts(self.under(p))} for p in PROTOCOLS])

    def sentence(self, protocol: str) -> str:
        """The verdict counts under ``protocol`` in one sentence."""
        from .paper import verdict_counts, verdict_sentence

        return verdict_sentence(verdict_counts(self.under(protocol)), protocol)


def results(config: Profile, run_dir, figures_dir) -> Results:
    """The paper's Tables 2-4 and Fig. 2-3 claims against the run's, from the per-split tables the experiment pages
    wrote (``<run_dir>/<page>/splits.csv``) and the tables of ``figures_dir`` (``table2_linear_probe``, ``speed``);
    each difference paired over splits, under both protocols (:mod:`gigassl.paper`)."""
    from . import paper

    boot = _boot(config)
    small = budget_name(size=min(config.probe.train_sizes))
    figures = Path(figures_dir)
    side = paper.side_by_side(pd.read_csv(figures / "table2_linear_probe.csv"))
    read = {name: read_splits(run_dir, name) for name in (
        "linear_probe", "tiny_datasets", "ablation_augmentation", "independent_centres", "ablation_tiles",
        "ablation_views", "ablation_deepmil_aggregator")}  # each page's per-split table, read once
    small4 = small if small in set(read["independent_centres"]["budget"]) else None
    speed = pd.read_csv(figures / "speed.csv")
    fig3 = dict(tiles=read["ablation_tiles"], views=read["ablation_views"],
                aggregator=read["ablation_deepmil_aggregator"])
    claims = [paper.table2(read["linear_probe"], protocol=p, **boot) for p in PROTOCOLS]
    claims += [paper.fig2(read["tiny_datasets"], protocol=p, **boot) for p in PROTOCOLS]
    claims += [paper.table3(read["ablation_augmentation"], small, protocol=p, **boot) for p in PROTOCOLS]
    claims += [paper.table4(read["independent_centres"], small4, protocol=p, **boot) for p in PROTOCOLS]
    claims += [paper.fig3(**fig3, protocol=p, **boot) for p in PROTOCOLS]
    claims.append(paper.speed_claim(speed))
    no_tile_aug = paired(read["ablation_augmentation"], "no_tile_aug", "full", **boot)
    return Results(side, pd.concat(claims, ignore_index=True), no_tile_aug, speed)


def explain(results: Results, figures_dir, protocol: str) -> str:
    """Why the run agrees with the paper or not (:func:`gigassl.paper.explain`), from the tables of the
    representations, MoCo and DeepMIL pages in ``figures_dir``."""
    from .paper import explain as sentences

    figures = Path(figures_dir)
    return sentences(pd.read_csv(figures / "representations.csv"), results.claims, protocol,
                     retrieval=pd.read_csv(figures / "moco_retrieval.csv"),
                     deepmil=pd.read_csv(figures / "deepmil_vs_averagemil.csv"))


def pairs_finding(pairs: pd.DataFrame, protocol: str = "fair") -> str:
    """Paired comparisons (:func:`gigassl.compare.paired`) in one sentence per pair of methods: how many are decided
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
    if not {"ssl_full", "averagemil"} <= set(rows.index):
        return f"{len(rows)} representations diagnosed."
    g, a = rows.loc["ssl_full"], rows.loc["averagemil"]
    return (f"The centre is predicted from the main Giga-SSL embeddings with balanced accuracy "
            f"{g['centre_accuracy']:.2f} and from AverageMIL with {a['centre_accuracy']:.2f} (chance "
            f"{g['centre_chance']:.2f}); effective rank {g['effective_rank']:.1f} against {a['effective_rank']:.1f}.")
