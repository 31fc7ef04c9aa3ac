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


CLOSE_CKA = 0.9  # a linear CKA at least this: "close to the mean of tiles" (the readings' words)
SAME_R2 = 0.05  # R^2 of the oracle statistic within this: "about as much" (the readings' words)


def _is_null(table: pd.DataFrame, cell: str) -> bool:
    """Whether ``cell`` of an AUC table is the null mechanism (M0: no statistic made the label)."""
    return bool((table.loc[table.cell == cell, "mechanism"] == "M0").any())


def _decided(pairs: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """(the decided rows of a comparison table, whether each also holds over the generator seeds): ``seeds_agree``
    is True, False or NaN (all False without the column)."""
    decided = pairs[pairs.verdict.isin(["better", "worse"])]
    agree = decided.seeds_agree.eq(True) if "seeds_agree" in decided else pd.Series(False, index=decided.index)
    return decided, agree


@dataclass(frozen=True)
class Recorded:
    """The full grid as ``benchmarks/study.py`` recorded it (``benchmarks/results/``): ``table`` (study.csv),
    ``pairs`` (study_pairs.csv), ``sensitivity`` and ``sensitivity_pairs`` (the design's nuisance cells; None when
    not recorded), ``record`` (study.json: commit, machine, the design's sha256, each unit's commit and seconds),
    ``readings`` (study_readings.csv: :func:`gigassl.book.study.representation_reading` per run, None when not
    recorded)."""

    table: pd.DataFrame
    pairs: pd.DataFrame
    sensitivity: pd.DataFrame | None
    sensitivity_pairs: pd.DataFrame | None
    record: dict
    readings: pd.DataFrame | None = None

    def source(self) -> str:
        """Where the numbers come from, in words: the command, the commits and machines that ran the units."""
        units = self.record.get("units") or {}
        commits = sorted({str(u.get("commit"))[:7] for u in units.values() if u.get("commit")})
        machines = sorted({u.get("machine") for u in units.values() if u.get("machine")})
        return (f"`python benchmarks/study.py` ({len(units)} units; commit(s) {', '.join(commits) or 'unrecorded'}; "
                f"{'; '.join(machines) or 'machine unrecorded'})")


def read_recorded(folder: str | Path) -> Recorded | None:
    """The full grid's recorded tables in ``folder`` (``benchmarks/results``), or None when they are not there, or
    are a dry run's or a partial grid's (study.json ``dry_run`` / ``complete``), or are of another design
    (``design_sha256``: the page compares it with the design's own hash)."""
    import json

    folder = Path(folder)
    record_path, table_path = folder / "study.json", folder / "study.csv"
    if not (record_path.is_file() and table_path.is_file()):
        return None
    record = json.loads(record_path.read_text())
    if record.get("dry_run") or not record.get("complete"):
        return None

    def optional(name):
        return pd.read_csv(folder / name) if (folder / name).is_file() else None

    return Recorded(pd.read_csv(table_path), pd.read_csv(folder / "study_pairs.csv"),
                    optional("study_sensitivity.csv"), optional("study_sensitivity_pairs.csv"), record,
                    optional("study_readings.csv"))


@dataclass
class MechanismsPage:
    """What the page shows: ``design_text`` and ``design_sha256`` (the file as committed), ``grid`` (the grid run),
    ``scores`` (per test slide), ``table`` (AUCs), ``pairs`` (comparisons) of the book's run, ``predictions``
    (prediction beside outcome, on the full grid when recorded, else on the book's run), ``recorded`` (the full
    grid's recorded tables, :func:`read_recorded`, or None)."""

    design_text: str
    design_sha256: str
    grid: str
    scores: pd.DataFrame
    table: pd.DataFrame
    pairs: pd.DataFrame
    predictions: pd.DataFrame
    recorded: Recorded | None
    checks: pd.DataFrame | None = None
    checks_text: str = ""
    checks_sha256: str = ""
    readings: pd.DataFrame | None = None

    def readings_table(self) -> pd.DataFrame:
        """The representation readings of the map's runs (:func:`gigassl.book.study.representation_reading`), mean
        per (cell, pool, method) with the number of runs read: the full grid's when recorded (its runs since the
        readings were recorded), else the book's run."""
        readings = self.readings if self.recorded is None else self.recorded.readings
        columns = ["cell", "pool", "method", "cka_mean", "effective_rank", "statistic_r2", "runs_read"]
        if readings is None or readings.empty:
            return pd.DataFrame(columns=columns)
        grouped = readings.groupby(["cell", "pool", "method"], sort=False)
        out = grouped[["cka_mean", "effective_rank", "statistic_r2"]].mean()
        return out.assign(runs_read=grouped.size()).reset_index()[columns]

    def reading_words(self, cell: str) -> str:
        """One sentence on what the representations of ``cell`` hold, read without labels (empty without
        readings): each arm's CKA with the mean of tiles and R^2 of the oracle statistic, at its main pool."""
        table, _, _ = self.map_tables()
        readings = self.readings_table()
        parts = []
        for method in ("averagemil", "gigassl", "gigassl_local", "gigassl_random16", "random_aggregator",
                       "random_aggregator_local"):
            pool = study_analysis.main_pool(table, cell, method)
            row = readings[(readings.cell == cell) & (readings.method == method) & (readings.pool == pool)]
            if len(row):
                r = row.iloc[0]
                parts.append(f"{study_analysis.NAMES[method]} CKA {r.cka_mean:.2f}, R^2 {r.statistic_r2:.2f}")
        if not parts:
            return ""
        return ("Read without the labels (linear CKA with the mean of the tile features; R^2 of the oracle "
                "statistic from the embedding, a ridge fitted on the training slides): " + "; ".join(parts) + "."
                + self._reading_why(readings, table, cell))

    @staticmethod
    def _reading_why(readings: pd.DataFrame, table: pd.DataFrame, cell: str) -> str:
        """One sentence that reads Giga-SSL's readings against AverageMIL's in ``cell`` (empty when either is
        missing): whether its embedding is close to the mean of tiles (a linear CKA of at least
        :data:`CLOSE_CKA`) and whether it holds more, about as much (within :data:`SAME_R2`) or less of the
        oracle statistic than the mean; descriptive, the thresholds named in the sentence. Empty for the null
        mechanism (M0), where no statistic made the label."""
        if _is_null(table, cell):  # no statistic made the label: nothing to explain
            return ""
        got = {}
        for method in ("averagemil", "gigassl"):
            pool = study_analysis.main_pool(table, cell, method)
            row = readings[(readings.cell == cell) & (readings.method == method) & (readings.pool == pool)]
            if row.empty:
                return ""
            got[method] = row.iloc[0]
        mean, ssl = got["averagemil"], got["gigassl"]
        near = (f"close to the mean of tiles (linear CKA {ssl.cka_mean:.2f}, at least {CLOSE_CKA}: nearly a "
                "rotation and scaling of it)" if ssl.cka_mean >= CLOSE_CKA else
                f"apart from the mean of tiles (linear CKA {ssl.cka_mean:.2f}, below {CLOSE_CKA})")
        if max(ssl.statistic_r2, mean.statistic_r2) < SAME_R2:
            holds = (f"neither it nor the mean holds the statistic that made the label linearly (R^2 below "
                     f"{SAME_R2}): what separates the classes is not a linear function of either embedding")
        else:
            gap = ssl.statistic_r2 - mean.statistic_r2
            amount = ("about as much" if abs(gap) <= SAME_R2 else "more" if gap > 0 else "less")
            holds = (f"it holds {amount} of the statistic that made the label than the mean does (R^2 "
                     f"{ssl.statistic_r2:.2f} against {mean.statistic_r2:.2f}; \"about as much\" would be within "
                     f"{SAME_R2})")
        return f" Why, as the readings say it: Giga-SSL's slide embedding is {near}, and {holds}."

    def checks_summary(self) -> str:
        """How many of the predictions' checks (studies/mechanisms_checks.yml) the map holds, fails, cannot decide,
        or did not run, and which failed."""
        if self.checks is None or self.checks.empty:
            return "No check of the predictions was given."
        _, _, source = self.map_tables()
        said = self._check_counts()
        failed = self.checks[self.checks.outcome == "failed"]
        named = ("; failed: " + "; ".join(f"{r.cell}: {r.claim}" + (f" ({r.method})" if r.method not in r.claim
                                                                       and r.against == "" else "")
                                          for r in failed.itertuples())) if len(failed) else ""
        chance = self.checks[(self.checks.kind == "chance") & (self.checks.outcome != "not run")]
        expected = (f" A chance check fails when the method's unadjusted 95% interval excludes 0.5, so a method at "
                    f"chance fails it one time in twenty: of the {len(chance)} chance checks, about "
                    f"{0.05 * len(chance):.1f} would fail with no effect at all; "
                    f"{int((chance.outcome == 'failed').sum())} failed." if len(chance) else "")
        return f"Of the {len(self.checks)} checks of the predictions on {source}: {said}{named}.{expected}"

    def _check_counts(self) -> str:
        """"H held, F failed, U undecided, N not run" of the predictions' checks."""
        counts = self.checks.outcome.value_counts()
        return ", ".join(f"{int(counts.get(k, 0))} {k}" for k in ("held", "failed", "undecided", "not run"))

    @property
    def benchmark(self) -> pd.DataFrame | None:
        """The full grid's AUC table, when recorded."""
        return None if self.recorded is None else self.recorded.table

    def map_tables(self) -> tuple[pd.DataFrame, pd.DataFrame, str]:
        """(AUC table, comparisons, where from) of the regime map the words speak of: the full grid's when recorded,
        else the book's run."""
        if self.recorded is not None:
            return self.recorded.table, self.recorded.pairs, f"the full grid, {self.recorded.source()}"
        return self.table, self.pairs, "the book's grid (the full grid is not recorded on this checkout)"

    def paragraphs(self) -> str:
        """One paragraph per cell of the map (markdown): its mechanism, the outcome in numbers, the prediction."""
        table, _, source = self.map_tables()
        out = [f"On {source}:"]
        for row in self.predictions.itertuples():
            mechanism = table.loc[table.cell == row.cell, "mechanism"].iloc[0]
            reading = self.reading_words(row.cell)
            null = self._null_words(row.cell) if _is_null(table, row.cell) else ""
            out.append(f"**{row.cell}** ({MECHANISM_WORDS.get(mechanism, mechanism)}). {row.outcome} "
                       + (f"{null} " if null else "") + (f"{reading} " if reading else "")
                       + f"*Predicted before any run:* {row.prediction}")
        return "\n\n".join(out)

    def _null_caveat(self, decided_cells: list) -> str:
        """" (M0 is the null: ...)" when a decided verdict falls on a null cell, else empty."""
        table, _, _ = self.map_tables()
        null = [c for c in decided_cells if _is_null(table, c)]
        return (f" ({', '.join(null)} is the null, where any decision is a false positive of the verdict rule: the "
                "rule's interval does not hold the training draw nor the SSL seed; see the seeds' column)"
                if null else "")

    def _null_words(self, cell: str) -> str:
        """What the null cell says of the verdict rule: every comparison it decides is a false positive by
        construction (the label is independent of the slide), so each is named, with whether its generator seeds
        agree; the test-slide bootstrap holds the test sampling, not the training set's or the SSL seed's."""
        _, pairs, _ = self.map_tables()
        mine = pairs[pairs.cell == cell]
        if mine.empty:
            return ""
        decided, agree = _decided(mine)
        if decided.empty:
            return f"The verdict rule decides none of the cell's {len(mine)} comparisons on the null, as it should."
        held = int(agree.sum())
        said = "; ".join(
            f"{study_analysis.NAMES.get(r.method, r.method)} {r.verdict} than "
            f"{study_analysis.NAMES.get(r.against, r.against)} ({r.difference:+.3f})" for r in decided.itertuples())
        return (f"**A false positive of the verdict rule:** on the null, where no method can beat another, the rule "
                f"decides {len(decided)} of the cell's {len(mine)} comparisons ({said}). Its interval is a "
                "bootstrap of the test slides with the trained runs fixed: it holds the test sampling, not the draw "
                "of the training slides nor the SSL seed, and on the null two fixed classifiers differ on the test "
                f"slides by chance. Over the generator seeds, {held} of the {len(decided)} decided verdict(s) "
                "hold (`seeds_agree`); read the other cells' verdicts with the same column.")

    def sensitivity(self) -> str:
        """What the design's nuisance factor (a per-centre affine change of the features) changes, in sentences
        computed from the recorded tables; says so when they are not recorded."""
        rec = self.recorded
        if rec is None or rec.sensitivity_pairs is None:
            return ("The sensitivity cells (the design's `sensitivity`: M1 and M3 with a per-centre affine change of "
                    "the features) are the benchmark's; they are not recorded on this checkout.")
        pairs = rec.sensitivity_pairs
        parts = []
        for cell, rows in pairs.groupby("cell", sort=False):
            factor = rows[rows.kind == "factor"]
            inside = rows[rows.kind == "method"]
            said = "; ".join(f"{study_analysis.NAMES.get(r.method, r.method)} {r.difference:+.3f} "
                             f"[{r.low:+.3f}, {r.high:+.3f}], {r.verdict}" for r in factor.itertuples())
            text = f"**{cell}** against {study.base_cell(cell)} (the same slides, labels and runs): {said}."
            if len(inside):
                text += " Inside the cell: " + "; ".join(
                    f"{study_analysis.NAMES[r.method]} vs {study_analysis.NAMES[r.against]} {r.difference:+.3f} "
                    f"[{r.low:+.3f}, {r.high:+.3f}], {r.verdict}" for r in inside.itertuples()) + "."
            parts.append(text)
        return ("AUC with the nuisance minus without (Holm across these comparisons: a family of its own, apart from "
                "the map's; \"better\" means a higher AUC with the nuisance). " + " ".join(parts))

    @staticmethod
    def _seeds_hold(rows: pd.DataFrame) -> str:
        """"; over the generator seeds, k of the n decided verdicts hold (cells)" for the decided rows of a
        comparison table with a ``seeds_agree`` column; empty when none is decided or the column is missing."""
        decided, agree = _decided(rows)
        if decided.empty or "seeds_agree" not in decided:
            return ""
        held = decided.cell[agree].tolist()
        return (f"; over the generator seeds (`seeds_agree`), {len(held)} of these {len(decided)} decided "
                f"verdict(s) hold" + (f" ({', '.join(held)})" if held else ""))

    def _said(self, cell: str) -> str:
        """A cell of the map in numbers: each method's AUC [interval] at its main pool and Giga-SSL minus
        AverageMIL with its verdict after Holm; says so when the cell is not in the map."""
        table, _, _ = self.map_tables()
        rows = table[table.cell == cell]
        if rows.empty:
            return f"{cell} is not in this grid (the full grid's: `benchmarks/study.py`)"
        parts = []
        for method in ("oracle", "averagemil", "gigassl", "gigassl_local", "random_aggregator", "deepmil"):
            pool = study_analysis.main_pool(table, cell, method)
            if pool is not None:
                r = rows[(rows.method == method) & (rows.pool == pool)].iloc[0]
                parts.append(f"{study_analysis.NAMES.get(method, method)} {r.auc:.3f} [{r.low:.3f}, {r.high:.3f}]")
        versus = self._verdict(cell)
        verdict = (f"; Giga-SSL minus AverageMIL {versus.difference:+.3f}, {versus.verdict} after Holm"
                   + study_analysis.seed_words(versus) if versus is not None else "")
        return f"in {cell}: " + ", ".join(parts) + verdict

    def _verdict(self, cell: str, method: str = "gigassl", against: str = "averagemil"):
        """The map's comparison row of ``method`` against ``against`` in ``cell`` (None when it did not run)."""
        _, pairs, _ = self.map_tables()
        rows = pairs[(pairs.cell == cell) & (pairs.method == method) & (pairs.against == against)]
        return rows.iloc[0] if len(rows) else None

    def implications(self) -> str:
        """What the map implies for the demo's three tasks and for the paper's TCGA tasks (markdown): which
        mechanism each task is, as far as the cohort's design, the paper and the field say, and what the map's
        cells (the full grid's when recorded, else the book's run) say of that mechanism, computed from the tables;
        a mechanism not in the map is said so."""
        from .paper import published

        _, _, source = self.map_tables()
        table2 = published()
        table2 = table2[table2["table"].astype(str) == "2"].pivot_table(
            index=["task", "data_regime"], columns="method", values="auc_mean")
        gains = (table2["Giga-SSL"] - table2["AverageMIL"]).dropna()
        span = f"{gains.min():+.3f} to {gains.max():+.3f} AUC over {len(gains)} task-regime pairs"
        m1 = self._verdict("M1")
        if m1 is None:
            m1_words = "M1 is not in this map, so it does not say whether Giga-SSL gains over the mean there"
        elif m1.verdict == "better":
            m1_words = (f"in this map Giga-SSL beats the mean of tiles even in M1 ({m1.difference:+.3f}, better "
                        "after Holm), so a diffuse task can hold a gain")
        else:
            m1_words = (f"in this map Giga-SSL does not beat the mean of tiles in M1 ({m1.difference:+.3f}, "
                        f"{m1.verdict} after Holm{study_analysis.seed_words(m1)}), so a task that is M1 alone "
                        "should show no consistent gain")
        return "\n\n".join([
            f"The cells quoted below are those of {source}.",
            "**The demo's three tasks** (`gigassl.cohorts.synth`: the share of glands, the cytology of half the tumour "
            "units, the lymphocyte density) are diffuse shifts of the slide's composition: mechanism M1 by "
            "construction. There the slide mean is near-sufficient and the design predicted AverageMIL to win or "
            f"tie ({self._said('M1')}).",
            "**The paper's six TCGA tasks** (BRCA, kidney and NSCLC subtyping, BRCA molecular subtype, two HRD "
            "labels) are, by the paper's own reading of its ablation of T (Sec. 4.4: five tiles per view suffice, "
            "so \"the signal relative to these problems is distributed among most of the tiles\"), diffuse: M1-like "
            "as far as the paper says; the paper itself names a task whose signal is concentrated on a few "
            "instances (M2) as untested. Subtyping also changes the texture and arrangement of the tumour (growth "
            f"patterns: M3 and M4 components), which the paper does not separate. {m1_words[0].upper()}"
            f"{m1_words[1:]}; the paper's Table 2 finds a gain on every task and budget (Giga-SSL minus AverageMIL: "
            f"{span}), so either its TCGA tasks hold something the mean misses (an M3 or M4 component) or the gain "
            "comes from elsewhere than the aggregation (the tile encoder, the augmentations, the probe). Where the "
            f"mean cannot see the signal (M3): {self._said('M3')}. Arrangement (M4): {self._said('M4')}. Focal "
            "tasks (M2: metastasis detection in lymph nodes, the field's CAMELYON16) are the attention MIL's "
            f"regime by design: {self._said('M2-10')}.",
            "These are statements about mechanisms, not about TCGA's slides: no TCGA task is labelled with its "
            "mechanism, and real tasks mix them."])

    def finding(self) -> str:
        """The page's opening sentence, computed: when the full grid is recorded, first in which of its cells Giga-SSL
        beat the mean, lost, or was undecided; then per cell of the book's run whether it beat the mean; then the
        predictions' checks (decided on the full grid when recorded)."""
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
        text = (f"On {where}, " + "; ".join(parts) + "." if parts
                else f"On {where}: no Giga-SSL against AverageMIL comparison ran.")
        if self.checks is not None and not self.checks.empty:
            on = "the full grid" if self.recorded is not None else "the book's grid"
            text += f" The predictions' checks, on {on}: {self._check_counts()}."
        if self.recorded is not None:  # the full grid leads: it is what the page concludes from
            pairs = self.recorded.pairs
            mine = pairs[(pairs.method == "gigassl") & (pairs.against == "averagemil")]
            by = {v: [r.cell for r in mine.itertuples() if r.verdict == v] for v in ("better", "worse", "undecided")}
            text = (f"On the full grid ({self.recorded.table.cell.nunique()} cells, Holm across its "
                    f"{len(pairs)} comparisons), Giga-SSL beats AverageMIL in "
                    f"{', '.join(by['better']) or 'no cell'}, loses in {', '.join(by['worse']) or 'no cell'} and is "
                    f"undecided in {', '.join(by['undecided']) or 'no cell'}"
                    + self._null_caveat(by["better"] + by["worse"]) + self._seeds_hold(mine) + ". " + text)
        return text


def mechanisms_page(out_dir: str | Path, design_path: str | Path = study.DESIGN, grid: str = "book",
                    scale: dict | None = None, n_bootstrap: int = 2000, benchmark: str | Path | None = None,
                    progress=print, checks_path: str | Path | None = None) -> MechanismsPage:
    """Run (or resume) the grid ``grid`` of the design into ``out_dir`` and analyse it (``n_bootstrap`` resamples;
    ``scale``: smoke runs only, :func:`gigassl.book.study.run_study`); ``benchmark``: the full grid's recorded
    AUC table (its folder holds the other recorded files, :func:`read_recorded`), shown when it is a whole grid of
    this design (the sha256 of ``design_path``). ``checks_path``: the predictions' checks (default
    ``mechanisms_checks.yml`` beside the design; none when that file is absent), decided on the map
    (:func:`gigassl.book.study_analysis.check_predictions`)."""
    import hashlib

    import yaml

    design, digest = study.read_design(design_path)
    scores = study.run_study(out_dir, design_path, grid, scale, progress)
    table, draws = study_analysis.bootstrap_aucs(scores, n_bootstrap)
    pairs = study_analysis.comparisons(table, draws, seeds=study_analysis.seed_points(scores))
    recorded = read_recorded(Path(benchmark).parent) if benchmark is not None else None
    if recorded is not None and recorded.record.get("design_sha256") != digest:
        if progress:
            progress(f"The recorded full grid ({benchmark}) is of another design (sha256 "
                     f"{recorded.record.get('design_sha256')}, this file's {digest}): not shown. Rerun "
                     "python benchmarks/study.py (its finished cells are kept when their settings are unchanged).")
        recorded = None
    map_table, map_pairs = (table, pairs) if recorded is None else (recorded.table, recorded.pairs)
    checks_path = Path(design_path).with_name("mechanisms_checks.yml") if checks_path is None else Path(checks_path)
    checks, checks_text, checks_sha = None, "", ""
    if checks_path.is_file():
        data = checks_path.read_bytes()
        checks_text, checks_sha = data.decode(), hashlib.sha256(data).hexdigest()
        checks = study_analysis.check_predictions(yaml.safe_load(data)["checks"], map_table, map_pairs)
    return MechanismsPage(Path(design_path).read_text(), digest, grid, scores, table, pairs,
                          study_analysis.predictions_table(design, map_table, map_pairs), recorded, checks,
                          checks_text, checks_sha, study.read_readings(out_dir, design_path, grid))


def regime_map(table: pd.DataFrame, title: str = "AUC by mechanism and method (95% interval)"):
    """The regime map: one row of points per method, one column per cell (main pools), AUC with its interval and
    the chance line."""
    import matplotlib.pyplot as plt

    cells = list(table.cell.unique())
    methods = [m for m in study_analysis.NAMES if m in set(table.method)]
    fig, axes = plt.subplots(1, len(cells), figsize=(3.2 * len(cells) + 1.5, 0.45 * len(methods) + 1.6),
                             sharey=True, sharex=True, squeeze=False)  # one AUC scale: cells compare by eye
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
    fig, axes = plt.subplots(1, len(cells), figsize=(4.5 * len(cells), 4.2), sharey=True, squeeze=False)
    colours = {m: f"C{i}" for i, m in enumerate(study_analysis.NAMES)}  # one colour per method on every panel
    for ax, cell in zip(axes[0], cells):
        for method, rows in table[table.cell == cell].groupby("method", sort=False):
            rows, name = rows.sort_values("pool"), study_analysis.NAMES.get(method, method)
            if len(rows) > 1:
                ax.errorbar(rows.pool, rows.auc, yerr=[rows.auc - rows.low, rows.high - rows.auc], marker="o",
                            capsize=3, color=colours.get(method), label=name)
            else:  # a method without a pool (or at one pool only): its AUC as a level
                ax.axhline(rows.auc.iloc[0], ls=":", lw=1.2, color=colours.get(method), label=f"{name} (no curve)")
        ax.axhline(study_analysis.CHANCE, color="0.6", ls="--", lw=1)
        ax.set_title(cell)
        ax.set_xlabel("unlabelled pool (slides)")
        ax.set_ylabel("AUC")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.2, 1, 1))
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
    curves = study_pool_curves(page.table if page.benchmark is None else page.benchmark)
    if curves is not None:
        figures["pool_curves"] = curves
    else:
        notes.append("No Giga-SSL arm ran at more than one pool in this grid: the pool-size curves are the full "
                     "grid's.")
    return figures, " ".join(notes)
