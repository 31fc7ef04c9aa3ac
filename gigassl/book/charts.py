"""Results with their spread: per-split AUCs, ROC curves, confusion matrices, Fig. 2 as the paper draws it, and
slide retrieval (Sec. 4.3). One function per picture; each returns a matplotlib figure for
:func:`gigassl.book.figures.save_figure`.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .figures import METHOD_COLOURS


def split_strips(splits: pd.DataFrame, protocol: str = "paper", methods=("gigassl", "averagemil", "deepmil")):
    """Table 2 with its spread: the AUC of every split (dots) and their box, per method, one panel per task and
    label budget, under ``protocol``. ``splits``: the per-split table of the linear-probe page."""
    part = splits[(splits["protocol"] == protocol) & splits["method"].isin(methods)]
    tasks, budgets = list(dict.fromkeys(part["task"])), list(dict.fromkeys(part["budget"]))
    order = [m for m in methods if m in set(part["method"])]
    palette = {m: METHOD_COLOURS.get(m, "#333333") for m in order}
    fig, axes = plt.subplots(len(budgets), len(tasks), figsize=(3.4 * len(tasks), 2.8 * len(budgets)),
                             squeeze=False, sharey=True)
    for r, budget in enumerate(budgets):
        for c, task in enumerate(tasks):
            ax = axes[r, c]
            cell = part[(part["task"] == task) & (part["budget"] == budget)]
            sns.boxplot(data=cell, x="method", y="auc", order=order, ax=ax, color="white", fliersize=0, width=0.5)
            for m, method in enumerate(order):  # one dot per split, spread evenly (no random jitter: same picture)
                values = cell.loc[cell["method"] == method, "auc"].to_numpy()
                spread = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else np.zeros(len(values))
                ax.scatter(m + spread, values, s=14, color=palette[method], zorder=3)
            ax.set_title(f"{task}, {budget}", fontsize=9)
            ax.set_xlabel("")
            ax.set_ylabel("ROC AUC per split" if c == 0 else "")
            ax.tick_params(axis="x", labelsize=8)
    fig.suptitle(f"Table 2, split by split ({protocol} protocol)", fontsize=10)
    fig.tight_layout()
    return fig


def _roc(positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(positive, score)
    return fpr, tpr


def roc_curves(predictions: pd.DataFrame):
    """ROC curves of the test slides of every split, pooled (:func:`gigassl.evaluation.protocol.predictions`), one line per
    method and one panel per task; a task of more classes shows the mean one-vs-rest curve over its classes. The
    legend gives each method's mean per-split AUC (the number of Table 2)."""
    from ..evaluation.metrics import auc_score

    tasks = list(dict.fromkeys(predictions["task"]))
    grid = np.linspace(0, 1, 201)
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks), 3.5), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for method, part in predictions[predictions["task"] == task].groupby("method", sort=False):
            classes = sorted(c[2:] for c in part.columns if c.startswith("p:") and part[c].notna().all())
            if len(classes) == 2:
                fpr, tpr = _roc(part["label"].to_numpy() == classes[1], part[f"p:{classes[1]}"].to_numpy())
                mean_tpr = np.interp(grid, fpr, tpr)
            else:
                mean_tpr = np.mean([np.interp(grid, *_roc(part["label"].to_numpy() == c, part[f"p:{c}"].to_numpy()))
                                    for c in classes], axis=0)
            aucs = [auc_score(s["label"], s[[f"p:{c}" for c in classes]].to_numpy(), classes)
                    for _, s in part.groupby("split")]
            ax.plot(grid, mean_tpr, color=METHOD_COLOURS.get(method), label=f"{method} (AUC {np.nanmean(aucs):.3f})")
        ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=0.8)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title(task, fontsize=10)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def confusion_matrices(predictions: pd.DataFrame, task: str):
    """The confusion matrix of ``task`` per method, pooled over the test slides of every split, each row (true class)
    normalised to 1, with the counts written in the cells."""
    part = predictions[predictions["task"] == task]
    if part.empty:
        raise ValueError(f"No predictions of task {task!r}; the predictions hold {sorted(set(predictions['task']))}. "
                         "Choose one of them (the notebook's confusion_task).")
    methods = list(dict.fromkeys(part["method"]))
    classes = sorted(set(part["label"]))
    fig, axes = plt.subplots(1, len(methods), figsize=(3.4 * len(methods), 3.1), squeeze=False)
    for ax, method in zip(axes[0], methods):
        rows = part[part["method"] == method]
        counts = pd.crosstab(rows["label"], rows["predicted"]).reindex(index=classes, columns=classes, fill_value=0)
        share = counts.div(counts.sum(axis=1).replace(0, 1), axis=0)
        sns.heatmap(share, annot=counts.to_numpy(), fmt="d", cmap="Blues", vmin=0, vmax=1, cbar=False, ax=ax,
                    square=True)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{method}: {task}", fontsize=10)
    fig.tight_layout()
    return fig


def plot_fig2(splits: pd.DataFrame, gains: pd.DataFrame, protocol: str = "fair"):
    """Fig. 2 as the paper draws it: above, the AUC of Giga-SSL and of DeepMIL against the training-set size (mean
    over tasks; band: std over splits of that mean); beneath, Giga-SSL's gain (mean over tasks) with the paired 95%
    intervals of each task. ``splits``: the tiny-datasets page's per-split table; ``gains``: its paired gains."""
    part = splits[(splits["protocol"] == protocol) & splits["budget"].astype(str).str.isdigit()]
    part = part.assign(train_size=part["budget"].astype(int))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5.4, 5.6), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    for method in ("gigassl", "deepmil"):
        rows = part[part["method"] == method]
        if rows.empty:
            continue
        per_split = rows.groupby(["train_size", "split"])["auc"].mean().groupby("train_size")
        mean, std = per_split.mean(), per_split.std(ddof=0)
        top.plot(mean.index, mean.to_numpy(), marker="o", color=METHOD_COLOURS[method], label=method)
        top.fill_between(mean.index, (mean - std).to_numpy(), (mean + std).to_numpy(), color=METHOD_COLOURS[method],
                         alpha=0.15)
    top.set_ylabel("ROC AUC (mean over tasks)")
    top.legend(fontsize=8)
    top.set_title(f"Tiny training sets ({protocol} protocol)", fontsize=10)
    g = gains[gains["protocol"] == protocol]
    for task, rows in g.groupby("task", sort=False):
        bottom.errorbar(rows["train_size"], rows["difference"], yerr=[rows["difference"] - rows["ci_low"],
                        rows["ci_high"] - rows["difference"]], fmt=".", capsize=2, alpha=0.6, label=task)
    mean_gain = g.groupby("train_size")["difference"].mean()
    bottom.plot(mean_gain.index, mean_gain.to_numpy(), color="k", marker="o", label="mean over tasks")
    bottom.axhline(0, color="red", lw=1)
    bottom.set_xlabel("training slides")
    bottom.set_ylabel("gain (AUC)")
    bottom.legend(fontsize=7)
    fig.tight_layout()
    return fig


def retrieval_bars(precision: pd.DataFrame):
    """Precision at k of slide retrieval (the share of a slide's k nearest neighbours that share its label, or its
    centre), per representation, one panel per attribute, with the chance level dashed."""
    attributes = list(dict.fromkeys(precision["attribute"]))
    fig, axes = plt.subplots(1, len(attributes), figsize=(3.2 * len(attributes), 3.2), squeeze=False, sharey=True)
    for ax, attribute in zip(axes[0], attributes):
        part = precision[precision["attribute"] == attribute]
        sns.barplot(data=part, x="k", y="precision", hue="representation", ax=ax,
                    palette=[METHOD_COLOURS.get(r, "#333333") for r in dict.fromkeys(part["representation"])])
        ax.axhline(float(part["chance"].iloc[0]), color="grey", ls="--", lw=1)
        ax.set_title(attribute, fontsize=10)
        ax.set_ylabel("precision at k" if ax is axes[0, 0] else "")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def neighbours_gallery(neighbours: pd.DataFrame, thumbnails_dir: str | os.PathLike, columns: list[str]):
    """For each query slide, its thumbnail and those of its nearest neighbours in each representation, titled with
    ``columns`` (labels, centre). ``neighbours``: query, representation, rank (0 = the query), slide_id and the
    columns."""
    groups = list(neighbours.groupby(["query", "representation"], sort=False))
    width = int(neighbours["rank"].max()) + 1
    fig, axes = plt.subplots(len(groups), width, figsize=(1.9 * width, 1.9 * len(groups)), squeeze=False)
    for r, ((query, representation), rows) in enumerate(groups):
        for ax, row in zip(axes[r], rows.sort_values("rank").itertuples()):
            ax.imshow(plt.imread(Path(thumbnails_dir) / f"{row.slide_id}.png"))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title("\n".join(str(getattr(row, c)) for c in columns), fontsize=6)
        axes[r, 0].set_ylabel(f"{representation}\nquery", fontsize=7)
    fig.tight_layout()
    return fig


def fewshot_curves(curves: pd.DataFrame, metric: str = "AUROC"):
    """Few-shot curves (issue #26): the mean over draws against K training slides per class, one panel per task and
    classifier, one line per representation, the band one standard deviation of the draws.
    ``curves``: :func:`gigassl.book.evaluations.fewshot_curve_table`."""
    tasks, classifiers = list(dict.fromkeys(curves["task"])), list(dict.fromkeys(curves["classifier"]))
    fig, axes = plt.subplots(len(classifiers), len(tasks), figsize=(3.4 * len(tasks), 2.6 * len(classifiers)),
                             squeeze=False, sharex=True, sharey=True)
    for r, classifier in enumerate(classifiers):
        for c, task in enumerate(tasks):
            ax = axes[r, c]
            for method, part in curves[(curves["task"] == task) & (curves["classifier"] == classifier)].groupby(
                    "method", sort=False):
                part = part.sort_values("K")
                colour = METHOD_COLOURS.get(method, "#333333")
                ax.plot(part["K"], part["mean"], marker="o", color=colour, label=method)
                ax.fill_between(part["K"], part["mean"] - part["std"], part["mean"] + part["std"], color=colour,
                                alpha=0.15)
            ax.set_xscale("log", base=2)
            ax.axhline(0.5, color="#999999", lw=0.8, ls=":")
            ax.set_title(f"{task}, {classifier}", fontsize=9)
            ax.set_xlabel("K slides per class" if r == len(classifiers) - 1 else "")
            ax.set_ylabel(metric if c == 0 else "")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def kaplan_meier_curves(curves: pd.DataFrame, tests: pd.DataFrame):
    """Kaplan-Meier curves of the predicted low- and high-risk groups of the test slides, one panel per
    representation, with the median log-rank p-value over splits. ``curves``, ``tests``:
    :func:`gigassl.book.evaluations.kaplan_meier_table`."""
    if curves.empty:  # a cohort without a survival outcome
        fig, ax = plt.subplots(figsize=(5, 1.2))
        ax.text(0.5, 0.5, "no survival outcome in this cohort", ha="center", va="center")
        ax.axis("off")
        return fig
    methods = list(dict.fromkeys(curves["method"]))
    fig, axes = plt.subplots(1, len(methods), figsize=(3.8 * len(methods), 3.0), squeeze=False, sharey=True)
    for ax, method in zip(axes[0], methods):
        for group, part in curves[curves["method"] == method].groupby("group"):
            ax.step(np.r_[0, part["time"]], np.r_[1, part["survival"]], where="post",
                    label="high risk" if group else "low risk", color="#c0392b" if group else "#2e86c1")
        p = tests.loc[tests["method"] == method, "p_value"]
        ax.set_title(f"{method}: log-rank p median {p.median():.2g} ({int((p < 0.05).sum())}/{len(p)} splits < 0.05)",
                     fontsize=8)
        ax.set_xlabel("months")
        ax.set_ylim(0, 1.02)
    axes[0, 0].set_ylabel("survival")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def unseen_centre_strips(runs: pd.DataFrame):
    """Unseen centres: each held-out centre's AUROC (dots) per representation beside the mean of the random splits
    of the same sizes (crosses), one panel per task. ``runs``: the evaluations page's runs table."""
    part = runs[(runs["evaluation"] == "unseen_centres") & (runs["metric"] == "auroc")
                & (runs["setting"] != "held_out:all")].dropna(subset=["value"])
    part = part.assign(kind=part["setting"].str.split(":").str[0])
    tasks, methods = list(dict.fromkeys(part["task"])), list(dict.fromkeys(part["method"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks), 3.0), squeeze=False, sharey=True)
    for ax, task in zip(axes[0], tasks):
        for m, method in enumerate(methods):
            mine = part[(part["task"] == task) & (part["method"] == method)]
            colour = METHOD_COLOURS.get(method, "#333333")
            held = mine[mine["kind"] == "held_out"]["value"].to_numpy()
            random = mine[mine["kind"] == "random"].groupby("centre")["value"].mean().to_numpy()
            ax.scatter(np.full(len(held), m - 0.12), held, color=colour, s=16, label=f"{method}, held out")
            ax.scatter(np.full(len(random), m + 0.12), random, color=colour, marker="x", s=16,
                       label=f"{method}, random")
        ax.set_xticks(range(len(methods)), methods, fontsize=8)
        ax.axhline(0.5, color="#999999", lw=0.8, ls=":")
        ax.set_title(task, fontsize=9)
    axes[0, 0].set_ylabel("AUROC per centre")
    fig.tight_layout()
    return fig
