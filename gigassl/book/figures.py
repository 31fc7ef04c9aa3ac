"""Figures and tables of the book: one function per artefact, and the writers that give them stable names.

Tables are written as CSV plus a Markdown rendering (``<figures>/<name>.csv`` and ``.md``), figures as PNG
(``<figures>/<name>.png``). The notebooks call these; the numbers always come from the run.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ..files import atomic_path, write_csv_atomic, write_text_atomic

sns.set_theme(style="whitegrid", context="notebook")
METHOD_COLOURS = {"gigassl": "#1f77b4", "averagemil": "#7f7f7f", "deepmil": "#ff7f0e"}


def _display(obj) -> None:
    """Show ``obj`` in the notebook running this code (no-op outside IPython)."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return
    if get_ipython() is not None:
        display(obj)


def save_table(frame: pd.DataFrame, name: str, figures_dir: str | os.PathLike, digits: int = 3) -> None:
    """Write ``frame`` as ``<name>.csv`` and a Markdown rendering ``<name>.md``, and show it in a notebook."""
    figures_dir = Path(figures_dir)
    figures_dir.mkdir(parents=True, exist_ok=True)
    write_csv_atomic(frame, figures_dir / f"{name}.csv")
    write_text_atomic(figures_dir / f"{name}.md", markdown(frame, digits) + "\n")
    _display(frame.style.format(precision=digits).hide(axis="index").set_caption(name))


def save_html(html: str, name: str, figures_dir: str | os.PathLike, title: str = "") -> None:
    """Write an HTML fragment as the standalone page ``<name>.html`` (offline: it must inline its scripts) and show
    the fragment in a notebook."""
    page = f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title or name}</title></head><body>{html}</body></html>"
    write_text_atomic(Path(figures_dir) / f"{name}.html", page)
    try:
        from IPython.display import HTML
    except ImportError:
        return
    _display(HTML(html))


def finding(*sentences: str, name: str = "finding") -> None:
    """Record a page's finding (sentences computed from the run) for the line that opens the page: the page's
    first cell holds ``{glue:md}`finding``` (myst-nb's glue, resolved when the book is built). Shows nothing."""
    try:
        from IPython.display import Markdown
        from myst_nb import glue
    except ImportError:
        return
    glue(name, Markdown(" ".join(sentences)), display=False)


def glue_text(name: str, text: str) -> None:
    """Record plain ``text`` under ``name`` for another page of the book: a plain Markdown page pastes it with
    ``{glue:text}`executed/<page>.ipynb::<name>:s``` (myst-nb 1.4 resolves ``path::key`` for ``{glue}`` and
    ``{glue:text}`` only, not for ``{glue:md}``, so the text carries no Markdown; ``{glue:text}`` needs the format
    ``:s`` after the key, or it reads the key as a format). Shows nothing."""
    try:
        from myst_nb import glue
    except ImportError:
        return
    glue(name, str(text), display=False)


def show_table(frame: pd.DataFrame, digits: int = 3) -> None:
    """Show ``frame`` in a notebook with floats rounded to ``digits`` (the paper's AUCs: 3), its index kept when it
    carries labels (a pivot) and hidden when it is a plain row number."""
    styler = frame.style.format(precision=digits)
    if isinstance(frame.index, pd.RangeIndex):
        styler = styler.hide(axis="index")
    _display(styler)


def markdown(frame: pd.DataFrame, digits: int = 3) -> str:
    """A Markdown table with floats rounded to ``digits``."""
    return frame.to_markdown(index=False, floatfmt=f".{digits}f")


def save_figure(fig, name: str, figures_dir: str | os.PathLike, dpi: int = 110) -> None:
    """Save a matplotlib figure as ``<name>.png`` (through a temporary file), show that very PNG in a notebook and
    close the figure."""
    path = Path(figures_dir) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    try:
        from IPython.display import Image
    except ImportError:
        return
    _display(Image(data=path.read_bytes(), format="png"))


def save_figures(figures: dict, name: str, figures_dir: str | os.PathLike) -> None:
    """Save ``{suffix: figure}`` as ``<name>_<suffix>.png`` each (e.g. one figure per probe protocol)."""
    for suffix, fig in figures.items():
        save_figure(fig, f"{name}_{suffix}", figures_dir)


# ------------------------------------------------------------------------------------------------ cohort, tiles
def cohort_thumbnails(frame: pd.DataFrame, thumbnails_dir: str | os.PathLike, show: int = 6):
    """Sec. 4.1: the thumbnails of the first slide of each centre (at most ``show``), with their tile grids (green:
    the kept tiles), titled with slide and centre."""
    picks = frame.groupby("center").head(1).head(show)["slide_id"].tolist()
    centre = frame.set_index("slide_id")["center"]
    return thumbnails([Path(thumbnails_dir) / f"{s}.png" for s in picks], [f"{s} ({centre.loc[s]})" for s in picks])


def thumbnails(paths: list[Path], titles: list[str], columns: int = 3):
    """A grid of thumbnail PNGs (with their tile grids drawn)."""
    rows = int(np.ceil(len(paths) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.2 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, path, title in zip(axes.ravel(), paths, titles):
        ax.imshow(plt.imread(path))
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def tile_gallery(rows: dict[str, np.ndarray], title: str = ""):
    """Rows of tiles: ``{row label: (n, H, W, 3) uint8 or float}``."""
    n = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(rows), n, figsize=(1.3 * n, 1.45 * len(rows)), squeeze=False)
    for r, (label, tiles) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(tiles):
                ax.imshow(tiles[c])
        axes[r, 0].set_title(label, fontsize=8, loc="left")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def augmentation_draws(slide_path, coords_file, augment, tiles: int = 8, seed: int = 0):
    """Sec. 3.1 Step 1 and the NS ablation (Table 3): the first ``tiles`` tiles of a slide, the same tiles under one
    shared draw of the tile augmentation, and each under its own draw (generator seeded with ``seed``)."""
    import torch

    from .. import io
    from ..augment import TileAugmentation
    from ..slides import read_tiles

    coords, attrs = io.read_coords(coords_file)
    raw = read_tiles(slide_path, coords[:tiles], int(attrs["patch_size_level0"]), int(attrs["patch_size"]))
    x = torch.from_numpy(raw).permute(0, 3, 1, 2).float() / 255
    aug = TileAugmentation(augment, out_px=raw.shape[1])
    shared = aug(x, torch.Generator().manual_seed(seed), shared=True)
    independent = aug(x, torch.Generator().manual_seed(seed), shared=False)
    return tile_gallery({"tiles": raw, "one shared draw": shared.permute(0, 2, 3, 1).numpy(),
                         "independent draws": independent.permute(0, 2, 3, 1).numpy()})


# -------------------------------------------------------------------------------------------------- training
def moco_loss(steps: pd.DataFrame, window: int = 25):
    """Sec. 4.1: MoCo's loss and top-1 against the queue per step, as running means over ``window`` steps."""
    smooth = {f"loss (mean of {window} steps)": steps["loss"].rolling(window, min_periods=1).mean(),
              f"top1 (mean of {window} steps)": steps["top1"].rolling(window, min_periods=1).mean()}
    return training_curves({"MoCo v2": steps.assign(**smooth)}, columns=tuple(smooth), x="step")


def plot_moco_heldout(curve: pd.DataFrame):
    """MoCo's label-free check per epoch (:func:`gigassl.book.stages.moco_heldout`): the loss with fixed negatives and the
    top-1 retrieval on held-out tiles, with their chance levels."""
    return training_curves({"MoCo v2, held-out tiles": curve}, columns=("infonce", "top1"), x="epoch",
                           references={"infonce": (float(curve["chance_infonce"].iloc[0]), "log M (chance)"),
                                       "top1": (float(curve["chance_top1"].iloc[0]), "1 / M (chance)")})


def ssl_curves(log: pd.DataFrame, name: str, batch_size: int):
    """Sec. 4.2: a Giga-SSL run's loss per step, with its chance level log(2B - 1), and the label-free diagnostics
    of each training batch (alignment, uniformity, mean cosine and effective rank of W)."""
    from .stages import chance_loss

    return training_curves({name: log}, columns=("loss", "alignment", "uniformity", "mean_cosine", "effective_rank"),
                           x="step", references={"loss": (chance_loss(batch_size), "log(2B - 1)")})


def monitor_curves(over_training: pd.DataFrame, name: str):
    """The monitor of a run per epoch (:func:`gigassl.book.stages.monitor_over_training`): probe AUC and diagnostics."""
    return training_curves({name: over_training},
                           columns=("probe_auc", "alignment", "uniformity", "effective_rank", "centre_accuracy"))


def training_curves(logs: dict[str, pd.DataFrame], columns=("loss", "collapse"), x: str = "epoch",
                    references: dict | None = None):
    """One panel per column of the training logs (x: ``x``), one line per run; ``references`` draws a dashed
    horizontal line per column ({column: (value, label)})."""
    fig, axes = plt.subplots(1, len(columns), figsize=(min(5 * len(columns), 16), 3.4), squeeze=False)
    for ax, column in zip(axes[0], columns):
        for name, log in logs.items():
            if column in log:
                ax.plot(log[x], log[column], marker="." if len(log) < 30 else None, label=name)
        if references and column in references:
            value, label = references[column]
            ax.axhline(value, color="grey", ls="--", lw=1, label=label)
            ax.legend(fontsize=7)
        ax.set_xlabel(x)
        ax.set_ylabel(column)
    if len(logs) > 1:
        axes[0, -1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def embedding_map(points: np.ndarray, frame: pd.DataFrame, columns: list[str], title: str = ""):
    """2-D points (S, 2) coloured by each column of ``frame`` (one panel per column)."""
    fig, axes = plt.subplots(1, len(columns), figsize=(4.2 * len(columns), 3.8), squeeze=False)
    for ax, column in zip(axes[0], columns):
        sns.scatterplot(x=points[:, 0], y=points[:, 1], hue=frame[column].astype(str).to_numpy(), s=18, ax=ax,
                        palette="tab10", legend=True)
        ax.set_title(column, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=6, markerscale=0.6, loc="best")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def slide_map(matrix: np.ndarray, frame: pd.DataFrame, title: str = "", columns: list[str] | None = None):
    """Sec. 4.2: the first two principal components of slide embeddings (S, D), coloured by each label column of
    ``frame`` and by centre (or by ``columns``)."""
    from ..manifest import task_columns

    columns = columns or [*task_columns(frame), "center"]
    return embedding_map(pca_2d(matrix), frame, columns, title=title)


def pca_2d(matrix: np.ndarray) -> np.ndarray:
    """The first two principal components of the rows of ``matrix`` (S, D) -> (S, 2)."""
    centred = matrix - matrix.mean(0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


# ------------------------------------------------------------------------------------------------- results
def auc_bars(summary: pd.DataFrame, x: str = "task", hue: str = "method", col: str | None = "budget"):
    """Bar plot of auc_mean with auc_std error bars (Table 2 style)."""
    panels = [None] if col is None else list(dict.fromkeys(summary[col]))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.6), squeeze=False, sharey=True)
    for ax, panel in zip(axes[0], panels):
        data = summary if panel is None else summary[summary[col] == panel]
        xs, hues = list(dict.fromkeys(data[x])), list(dict.fromkeys(data[hue]))
        width = 0.8 / len(hues)
        for h, name in enumerate(hues):
            part = data[data[hue] == name].set_index(x).reindex(xs)
            ax.bar(np.arange(len(xs)) + (h - (len(hues) - 1) / 2) * width, part["auc_mean"], width,
                   yerr=part["auc_std"], label=name, color=METHOD_COLOURS.get(str(name)), capsize=2)
        ax.set_xticks(np.arange(len(xs)), xs, rotation=15)
        ax.set_ylim(0.4, 1.0)
        ax.axhline(0.5, color="k", lw=0.5)
        ax.set_title("" if panel is None else f"{col}: {panel}", fontsize=10)
        ax.set_ylabel("ROC AUC")
    axes[0, -1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def curves(frame: pd.DataFrame, x: str, y: str = "auc_mean", hue: str = "task", err: str | None = "auc_std",
           xlabel: str | None = None, title: str = "", logx: bool = False):
    """Lines of ``y`` against ``x``, one per ``hue`` value, with an error band (Fig. 2 and 3 style)."""
    fig, ax = plt.subplots(figsize=(5.4, 3.6))
    for name, part in frame.groupby(hue, sort=False):
        part = part.sort_values(x)
        ax.plot(part[x], part[y], marker="o", label=str(name))
        if err and err in part:
            ax.fill_between(part[x], part[y] - part[err], part[y] + part[err], alpha=0.15)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(y.replace("_", " "))
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def auc_bars_by_protocol(table: pd.DataFrame) -> dict:
    """Table 2: :func:`auc_bars` of each probe protocol of ``table`` (one figure each, keyed by protocol)."""
    figs = {}
    for protocol in dict.fromkeys(table["protocol"]):
        fig = auc_bars(table[table["protocol"] == protocol])
        fig.suptitle(f"{protocol} protocol", fontsize=11)
        figs[protocol] = fig
    return figs


def curves_by_protocol(table: pd.DataFrame, x: str, xlabel: str, title: str, logx: bool = False,
                       hue: str = "task") -> dict:
    """Fig. 3 style: :func:`curves` of ``auc_mean`` against ``x`` for each protocol of ``table``; ``title`` may hold
    ``{protocol}``."""
    return {protocol: curves(part, x=x, hue=hue, xlabel=xlabel, logx=logx, title=title.format(protocol=protocol))
            for protocol, part in table.groupby("protocol")}


def gain_curves(gains: pd.DataFrame) -> dict:
    """Fig. 2: Giga-SSL's AUC gain over DeepMIL against the training-set size, per task, with the half-width of the
    paired 95% interval as the band and the line of no gain; one figure per protocol."""
    figs = {}
    for protocol in dict.fromkeys(gains["protocol"]):
        part = gains[gains["protocol"] == protocol]
        fig = curves(part.assign(auc_std=(part["ci_high"] - part["ci_low"]) / 2), x="train_size", y="difference",
                     hue="task", xlabel="training slides", title=f"AUC gain of Giga-SSL over DeepMIL ({protocol})")
        fig.axes[0].axhline(0, color="red", lw=1)
        figs[protocol] = fig
    return figs


def pool_curves(summary: pd.DataFrame, reference: str = "averagemil") -> dict:
    """Giga-SSL's AUC against the number of unlabelled slides added for SSL (band: std over splits), one line per
    task, with the ``reference`` method's AUC of each task dashed in the same colour; one figure per protocol, one
    panel per regime of the summary (``regime``: same steps, same epochs; the passes over a slide in the title)."""
    figs = {}
    for protocol, part in summary.groupby("protocol"):
        regimes = [r for r in dict.fromkeys(part["regime"].dropna())]
        fig, axes = plt.subplots(1, len(regimes), figsize=(5.4 * len(regimes), 3.8), sharey=True, squeeze=False)
        ref = part[part["method"] == reference].set_index("task")
        for ax, regime in zip(axes[0], regimes):
            lines = part[(part["regime"] == regime) & (part["method"] != reference)]
            for task, rows in lines.groupby("task", sort=False):
                rows = rows.sort_values("pool")
                (line,) = ax.plot(rows["pool"], rows["auc_mean"], marker="o", label=str(task))
                ax.fill_between(rows["pool"], rows["auc_mean"] - rows["auc_std"], rows["auc_mean"] + rows["auc_std"],
                                alpha=0.15, color=line.get_color())
                if task in ref.index:
                    ax.axhline(float(ref.loc[task, "auc_mean"]), color=line.get_color(), ls="--", lw=1)
            passes = lines.drop_duplicates("pool").sort_values("pool")
            span = ", ".join(f"{p:g}" for p in passes["passes"])
            ax.set_title(f"{regime} (passes over a slide: {span})", fontsize=9)
            ax.set_xlabel("unlabelled slides added for SSL")
            ax.legend(fontsize=8)
        axes[0][0].set_ylabel("auc mean")
        fig.suptitle(f"Giga-SSL ({protocol} protocol); dashed: {reference}", fontsize=10)
        fig.tight_layout()
        figs[protocol] = fig
    return figs


def aggregator_curve(per_epoch: pd.DataFrame, protocol: str = "paper"):
    """Fig. 3C: the monitored linear AUC against the SSL epoch, one line per aggregator, under ``protocol``."""
    part = per_epoch[per_epoch["protocol"] == protocol]
    return curves(part, x="epoch", hue="aggregator", xlabel="SSL epoch",
                  title=f"Linear AUC during SSL training ({per_epoch['task'].iloc[0]}, {protocol} protocol)")


def variant_maps(embeddings: dict, variants, columns: list[str] | None = None) -> dict:
    """Table 3: the slide embeddings of each variant (``{variant: (matrix, frame)}``) in PCA, coloured by
    ``columns`` (None: the centre, the shortcut, and the first task)."""
    from ..manifest import task_columns

    figs = {}
    for variant in variants:
        matrix, frame = embeddings[variant]
        figs[variant] = embedding_map(pca_2d(matrix), frame, columns or ["center", *task_columns(frame)[:1]],
                                      title=f"{variant}: slide embeddings coloured by centre (PCA)")
    return figs


def plot_resources(frame: pd.DataFrame):
    """Wall time and peak memory of each execution of a run."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.28 * len(frame) + 1.5), sharey=True)
    names = frame["name"].tolist()
    axes[0].barh(names, frame["seconds"], color="#1f77b4")
    axes[0].set_xlabel("wall time (s)")
    axes[1].barh(names, frame["peak_memory_mb"], color="#2ca02c")
    axes[1].set_xlabel("peak memory of the kernel (MB)")
    axes[0].invert_yaxis()
    fig.tight_layout()
    return fig


# the colour of each kind of verdict (gigassl.book.verdicts.CATEGORY) in the claims figure
VERDICT_COLOURS = {"agree": "#2ca02c", "same direction, other size": "#98c16b", "disagree": "#d62728",
                   "undecided": "#7f7f7f", "not testable here": "#c7c7c7", "no run number": "#c7c7c7"}


def claims_figure(claims: pd.DataFrame, title: str = ""):
    """Every claim on the AUC-difference scale, one row each, grouped by artefact: the run's difference with its 95%
    interval, coloured by the kind of its verdict (:data:`VERDICT_COLOURS`; hollow: not counted), and the paper's
    value marked (black x) where the paper gives a number (direction-only claims: the direction in the label).
    Rows on another scale (the Speed ratio) are left out: the caption says so.

    ``claims``: rows of :func:`gigassl.book.paper.claim_row` under one protocol (artefact, comparison, task, regime,
    run, ci_low, ci_high, paper, paper_claim, verdict; ``counted`` if present)."""
    from .verdicts import CATEGORY

    part = claims[claims.get("scale", pd.Series("AUC difference", index=claims.index)) == "AUC difference"]
    part = part.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(7.5, 0.24 * len(part) + 1.6))
    y = np.arange(len(part))
    kinds = part["verdict"].map(CATEGORY).fillna("undecided")
    counted = part["counted"].astype(bool) if "counted" in part else pd.Series(True, index=part.index)
    for kind, colour in VERDICT_COLOURS.items():
        rows = (kinds == kind).to_numpy()
        if not rows.any():
            continue
        run, low, high = (part.loc[rows, c].to_numpy(float) for c in ("run", "ci_low", "ci_high"))
        ax.hlines(y[rows], low, high, color=colour, lw=2)
        filled = counted[rows].to_numpy()
        ax.scatter(run[filled], y[rows][filled], color=colour, zorder=3, s=22, label=kind if filled.any() else None)
        ax.scatter(run[~filled], y[rows][~filled], facecolors="white", edgecolors=colour, zorder=3, s=22,
                   label=kind if not filled.any() else None)
    paper = part["paper"].astype(float).to_numpy()
    marked = np.isfinite(paper)
    ax.scatter(paper[marked], y[marked], marker="x", color="k", zorder=4, s=26, label="paper")
    ax.axvline(0, color="k", lw=0.6)
    labels = [f"{r.comparison} | {r.task} | {r.regime}" + ("" if np.isfinite(p) else f" (paper: {r.paper_claim})")
              for r, p in zip(part.itertuples(), paper)]
    ax.set_yticks(y, labels, fontsize=6)
    starts = part.index[part["artefact"] != part["artefact"].shift()].tolist()
    for start in starts:
        if start:
            ax.axhline(start - 0.5, color="grey", lw=0.5)
        ax.annotate(part["artefact"].iloc[start], xy=(1.01, start), xycoords=("axes fraction", "data"),
                    fontsize=8, va="top", weight="bold")
    ax.set_ylim(len(part) - 0.5, -0.5)
    ax.set_xlabel("AUC difference (run: mean over splits, 95% corrected interval; x: the paper's value)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.legend(*ax.get_legend_handles_labels(), fontsize=7, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4,
               frameon=False)
    return fig


def diagnostics_bars(frame: pd.DataFrame, name: str = "representation",
                     columns=("alignment", "uniformity", "mean_cosine", "effective_rank", "centre_accuracy")):
    """One panel per diagnostic (:mod:`gigassl.evaluation.diagnostics`), one bar per representation; the centre panel marks
    chance."""
    columns = [c for c in columns if c in frame and frame[c].notna().any()]
    fig, axes = plt.subplots(1, len(columns), figsize=(3.2 * len(columns), 0.32 * len(frame) + 1.6), sharey=True,
                             squeeze=False)
    names = frame[name].astype(str).tolist()
    for ax, column in zip(axes[0], columns):
        ax.barh(names, frame[column], color="#1f77b4")
        if column == "centre_accuracy" and "centre_chance" in frame:
            ax.axvline(float(frame["centre_chance"].iloc[0]), color="red", lw=1, label="chance")
            ax.legend(fontsize=7)
        ax.set_xlabel(column.replace("_", " "), fontsize=9)
    axes[0, 0].invert_yaxis()
    fig.tight_layout()
    return fig


def paired_forest(pairs: pd.DataFrame, label: str = "comparison", title: str = ""):
    """Paired differences with their intervals, one row each (:func:`gigassl.evaluation.compare.paired`); filled markers
    are decided (the interval excludes 0), hollow ones undecided."""
    fig, ax = plt.subplots(figsize=(6.4, 0.3 * len(pairs) + 1.4))
    y = np.arange(len(pairs))
    low = pairs["difference"] - pairs["ci_low"]
    high = pairs["ci_high"] - pairs["difference"]
    decided = (pairs["ci_low"] > 0) | (pairs["ci_high"] < 0)
    ax.errorbar(pairs["difference"], y, xerr=[low.fillna(0), high.fillna(0)], fmt="none", ecolor="grey", capsize=2)
    ax.scatter(pairs["difference"][decided], y[decided.to_numpy()], color="#1f77b4", zorder=3, label="decided")
    ax.scatter(pairs["difference"][~decided], y[~decided.to_numpy()], facecolors="white", edgecolors="#1f77b4",
               zorder=3, label="undecided")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(y, pairs[label].astype(str).tolist(), fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("AUC difference (mean over splits, 95% paired bootstrap interval)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def deepmil_curves(curves_frame: pd.DataFrame, budget: str | None = None):
    """DeepMIL learning curves: training and validation loss against optimizer steps, mean over splits, one panel
    per task (dotted: each split's validation loss); ``budget``: only the fits of that label budget."""
    if budget is not None:
        curves_frame = curves_frame[curves_frame["budget"] == budget]
    tasks = list(dict.fromkeys(curves_frame["task"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.4 * len(tasks), 3.3), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        part = curves_frame[curves_frame["task"] == task]
        for _, split in part.groupby(["budget", "split"]):
            ax.plot(split["step"], split["val_loss"], color="#ff7f0e", lw=0.5, alpha=0.35)
        mean = part.groupby("step")[["train_loss", "val_loss"]].mean().reset_index()
        ax.plot(mean["step"], mean["train_loss"], color="#1f77b4", label="train (mean)")
        ax.plot(mean["step"], mean["val_loss"], color="#ff7f0e", label="validation (mean)")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("cross-entropy")
        ax.set_title(task, fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def show_images(*paths: str | os.PathLike) -> None:
    """Show PNGs written earlier (e.g. figures of other pages) in the notebook, in order."""
    try:
        from IPython.display import Image
    except ImportError:
        return
    for path in paths:
        _display(Image(filename=str(path)))
