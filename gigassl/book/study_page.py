"""The page of the study of issue #24 (notebooks/19_mechanisms.py): the design file and its sha256, the run of the
book's grid (:func:`gigassl.book.study.run_study`), the regime map (mechanism x method, AUC with intervals), the
pool-size curves, the predictions beside the outcomes and a paragraph per mechanism, all computed from the run; the
full grid's table (``benchmarks/results/study.csv`` of ``benchmarks/study.py``) beside it when it is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import study, study_analysis

MECHANISM_WORDS = {"M0": "null: the label is independent of the slide",
                   "M1": "diffuse proportion: the share of one tissue class",
                   "M2": "focal presence: a few tiles of a class that label 0 never has",
                   "M3": "heterogeneity: the same mean tile, a different within-slide spread",
                   "M4": "arrangement: the same composition, intermixed or segregated"}


@dataclass
class MechanismsPage:
    """What the page shows: ``design_text`` and ``design_sha256`` (the file as committed), ``grid`` (the grid run),
    ``scores`` (per test slide), ``table`` (AUCs), ``pairs`` (comparisons), ``predictions`` (prediction beside
    outcome), ``benchmark`` (the full grid's recorded AUC table, or None)."""

    design_text: str
    design_sha256: str
    grid: str
    scores: pd.DataFrame
    table: pd.DataFrame
    pairs: pd.DataFrame
    predictions: pd.DataFrame
    benchmark: pd.DataFrame | None

    def paragraphs(self) -> str:
        """One paragraph per cell run (markdown): its mechanism, the outcome in numbers, the prediction."""
        out = []
        for row in self.predictions.itertuples():
            mechanism = self.table.loc[self.table.cell == row.cell, "mechanism"].iloc[0]
            out.append(f"**{row.cell}** ({MECHANISM_WORDS.get(mechanism, mechanism)}). {row.outcome} "
                       f"*Predicted before any run:* {row.prediction}")
        return "\n\n".join(out)

    def implications(self) -> str:
        """What the map implies for the demo's three tasks and for the paper's TCGA tasks (markdown): which
        mechanism each task is, as far as the cohort's design, the paper and the field say, and what this run's
        cells say of that mechanism (the numbers computed from the run; a mechanism not in this grid is said so)."""
        def said(cell: str) -> str:
            rows = self.table[(self.table.cell == cell)]
            if rows.empty:
                return f"{cell} is not in this grid (the full grid's: `benchmarks/study.py`)"
            parts = []
            for method in ("oracle", "averagemil", "gigassl", "random_aggregator", "deepmil"):
                pool = study_analysis.main_pool(self.table, cell, method)
                if pool is not None:
                    r = rows[(rows.method == method) & (rows.pool == pool)].iloc[0]
                    parts.append(f"{study_analysis.NAMES.get(method, method)} {r.auc:.3f} [{r.low:.3f}, {r.high:.3f}]")
            versus = self.pairs[(self.pairs.cell == cell) & (self.pairs.method == "gigassl")
                                & (self.pairs.against == "averagemil")]
            verdict = (f"; Giga-SSL minus AverageMIL {versus.iloc[0].difference:+.3f}, {versus.iloc[0].verdict} after "
                       "Holm" if len(versus) else "")
            return f"in this run's {cell}: " + ", ".join(parts) + verdict
        from .paper import published

        table2 = published()
        table2 = table2[table2["table"].astype(str) == "2"].pivot_table(
            index=["task", "data_regime"], columns="method", values="auc_mean")
        gains = (table2["Giga-SSL"] - table2["AverageMIL"]).dropna()
        span = f"{gains.min():+.3f} to {gains.max():+.3f} AUC over {len(gains)} task-regime pairs"
        return "\n\n".join([
            "**The demo's three tasks** (`gigassl.cohorts.synth`: the share of glands, the cytology of half the tumour "
            "units, the lymphocyte density) are diffuse shifts of the slide's composition: mechanism M1 by "
            "construction. There the slide mean is near-sufficient and the design predicts AverageMIL to win or "
            f"tie ({said('M1')}). The ties and losses of Giga-SSL against AverageMIL on the demo's pages are what "
            "this mechanism predicts, not a failure of the implementation.",
            "**The paper's six TCGA tasks** (BRCA, kidney and NSCLC subtyping, BRCA molecular subtype, two HRD "
            "labels) are, by the paper's own reading of its ablation of T (Sec. 4.4: five tiles per view suffice, "
            "so \"the signal relative to these problems is distributed among most of the tiles\"), diffuse: M1-like "
            "as far as the paper says; the paper itself names a task whose signal is concentrated on a few "
            "instances (M2) as untested. Subtyping also changes the texture and arrangement of the tumour (growth "
            "patterns: M3 and M4 components), which the paper does not separate. Where a task is M1 alone, this map "
            "predicts no consistent gain of Giga-SSL over the mean of tiles; the paper's Table 2 finds one on every "
            f"task and budget (Giga-SSL minus AverageMIL: {span}), so either its TCGA tasks hold something the mean "
            "misses (an M3 or M4 component) or the gain comes from elsewhere than the aggregation. What slide-level "
            "SSL gives where the mean cannot see the signal (M3): "
            f"{said('M3')}. Focal tasks (M2: metastasis detection in lymph nodes, the field's CAMELYON16) are the "
            f"attention MIL's regime: {said('M2-10')}.",
            "These are statements about mechanisms, not about TCGA's slides: no TCGA task is labelled with its "
            "mechanism, and real tasks mix them. The full grid (every mechanism, 3 generator seeds x 2 SSL seeds) is "
            "what would turn them into a map; until `benchmarks/study.py` has run, the cells above are the book's."])

    def finding(self) -> str:
        """The page's opening sentence, computed: the cells run, and per cell whether Giga-SSL beat the mean."""
        seeds = sorted(self.scores.generator_seed.unique().tolist())
        parts = []
        for cell in self.table.cell.unique():
            against = self.pairs[(self.pairs.cell == cell) & (self.pairs.method == "gigassl")
                                 & (self.pairs.against == "averagemil")]
            if len(against):
                r = against.iloc[0]
                parts.append(f"in {cell}, Giga-SSL against AverageMIL: {r.difference:+.3f} AUC, {r.verdict} "
                             f"(Holm across the {len(self.pairs)} comparisons)")
        where = f"the book's grid ({', '.join(self.table.cell.unique())}; generator seed(s) {seeds})"
        return (f"On {where}, " + "; ".join(parts) + "." if parts
                else f"On {where}: no Giga-SSL against AverageMIL comparison ran.")


def mechanisms_page(out_dir: str | Path, design_path: str | Path = study.DESIGN, grid: str = "book",
                    scale: dict | None = None, n_bootstrap: int = 2000, benchmark: str | Path | None = None,
                    progress=print) -> MechanismsPage:
    """Run (or resume) the grid ``grid`` of the design into ``out_dir`` and analyse it (``n_bootstrap`` resamples;
    ``scale``: smoke runs only, :func:`gigassl.book.study.run_study`); ``benchmark``: the full grid's recorded
    AUC table when the file exists."""
    design, digest = study.read_design(design_path)
    scores = study.run_study(out_dir, design_path, grid, scale, progress)
    table, draws = study_analysis.bootstrap_aucs(scores, n_bootstrap)
    pairs = study_analysis.comparisons(table, draws)
    recorded = pd.read_csv(benchmark) if benchmark is not None and Path(benchmark).is_file() else None
    return MechanismsPage(Path(design_path).read_text(), digest, grid, scores, table, pairs,
                          study_analysis.predictions_table(design, table, pairs), recorded)


def regime_map(table: pd.DataFrame, title: str = "AUC by mechanism and method (95% interval)"):
    """The regime map: one row of points per method, one column per cell (main pools), AUC with its interval and
    the chance line."""
    import matplotlib.pyplot as plt

    cells = list(table.cell.unique())
    methods = [m for m in study_analysis.NAMES if m in set(table.method)]
    fig, axes = plt.subplots(1, len(cells), figsize=(3.2 * len(cells) + 1.5, 0.45 * len(methods) + 1.6),
                             sharey=True, squeeze=False)
    for ax, cell in zip(axes[0], cells):
        for y, method in enumerate(methods):
            pool = study_analysis.main_pool(table, cell, method)
            if pool is None:
                continue
            r = table[(table.cell == cell) & (table.method == method) & (table.pool == pool)].iloc[0]
            ax.errorbar(r.auc, y, xerr=[[r.auc - r.low], [r.high - r.auc]], fmt="o", color="C0" if method.startswith(
                "gigassl") else "C1" if method.startswith("random") else "0.3", capsize=3)
        ax.axvline(study_analysis.CHANCE, color="0.6", ls="--", lw=1)
        ax.set_title(cell)
        ax.set_xlabel("AUC")
    axes[0][0].set_yticks(range(len(methods)), [study_analysis.NAMES[m] for m in methods])
    axes[0][0].invert_yaxis()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def study_pool_curves(table: pd.DataFrame):
    """AUC against the unlabelled pool for the arms that ran at several pools, beside the flat pool-free methods;
    None when no arm ran at more than one pool."""
    import matplotlib.pyplot as plt

    curves = table.groupby(["cell", "method"]).pool.nunique()
    cells = sorted({cell for (cell, _), n in curves.items() if n > 1})
    if not cells:
        return None
    fig, axes = plt.subplots(1, len(cells), figsize=(4.5 * len(cells), 3.4), squeeze=False)
    for ax, cell in zip(axes[0], cells):
        for method, rows in table[table.cell == cell].groupby("method"):
            rows = rows.sort_values("pool")
            if len(rows) > 1:
                ax.errorbar(rows.pool, rows.auc, yerr=[rows.auc - rows.low, rows.high - rows.auc], marker="o",
                            capsize=3, label=study_analysis.NAMES.get(method, method))
            else:
                ax.axhline(rows.auc.iloc[0], ls=":", lw=1, label=study_analysis.NAMES.get(method, method))
        ax.set_title(cell)
        ax.set_xlabel("unlabelled pool (slides)")
        ax.set_ylabel("AUC")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def optional_figures(page: MechanismsPage) -> tuple[dict, str]:
    """({suffix: figure} of the figures this run can draw, a note on those it cannot): the full grid's map (when the
    benchmark's table is recorded) and the pool-size curves (when an arm ran at several pools)."""
    figures, notes = {}, []
    if page.benchmark is not None:
        figures["full_grid"] = regime_map(page.benchmark, "The full grid (benchmarks/study.py)")
    else:
        notes.append("The full grid's table (benchmarks/results/study.csv) is not recorded on this checkout: the "
                     "full grid has not been run (python benchmarks/study.py).")
    curves = study_pool_curves(page.table)
    if curves is not None:
        figures["pool_curves"] = curves
    else:
        notes.append("No Giga-SSL arm ran at more than one pool in this grid: the pool-size curves are the full "
                     "grid's.")
    return figures, " ".join(notes)
