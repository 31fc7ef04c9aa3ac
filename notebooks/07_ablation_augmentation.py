# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Ablation of the augmentations: the Table 3 analogue
#
# Sec. 5, "Sharing tile augmentations within views improves performance": Giga-SSL with one component removed at
# a time: without slide-level augmentation; with the tile augmentation not shared (NS: each tile its own draw);
# with an ImageNet tile embedder (Giga-SSLim); and both (Giga-SSLim NS). Each is probed at 100% of the labels and on
# the profile's smallest training set (the paper: 50 WSI). The paper's hypothesis for NS: "key features linked to
# the slide preparation and shared by all the tiles on the slide are still available for shortcut learning if the
# tile-level augmentations are not shared". Below, a direct look at that shortcut: how much each embedding is
# organised by centre (the stain and scanner signature every tile of a slide shares).

# %% tags=["parameters"]
profile = "demo"
run_dir = "runs/demo"
out_dir = "runs/demo/ablation_augmentation"
figures_dir = "figures"
tasks = None
variants = {"full": "ssl_ref", "no_slide_aug": "ssl_no_slide_aug", "ns": "ssl_ns",
            "no_tile_aug": "ssl_no_tile_aug", "imagenet": "ssl_imagenet", "imagenet_ns": "ssl_imagenet_ns", "bn_joint": "ssl_bn_joint",
            "random_init": "ssl_random_init"}

# %% [markdown]
# Every variant is trained in the ablation regime (the labelled cohort, the profile's epochs) and compared with
# `ssl_ref`, the full method trained the same way. `no_tile_aug` trains on the plain tile embeddings alone (what a
# user who brings TRIDENT or CLAM features has: `gigassl train` on a folder of plain features), so that its two
# views differ by their tiles and the slide-level augmentation only: the row shows what the augmented bank buys.
# Two more rows test the departures from the authors' code that
# the paper leaves open: BatchNorm over both views at once (`bn_joint`; the default, per view, is the authors') and
# a randomly initialised aggregator (`random_init`; the default starts from the tile embedder's layer4).

# %%
from pathlib import Path

import pandas as pd

from gigassl import io, paper
from gigassl.compare import paired
from gigassl.config import get_profile
from gigassl.figures import embedding_map, paired_forest, pca_2d, save_figure, save_table
from gigassl.manifest import task_columns
from gigassl.diagnostics import label_agreement_chance, neighbour_agreement
from gigassl.metrics import summarize
from gigassl.protocol import probe_runs
from gigassl.splits import budget_name

config = get_profile(profile)
manifest = pd.read_csv(Path(run_dir) / "cohort" / "manifest.csv", dtype={"slide_id": str, "case_id": str})
tasks = tasks or task_columns(manifest)
small = budget_name(size=min(config.probe.train_sizes))
named = {variant: (Path(run_dir) / run / "embeddings.h5", "l2") for variant, run in variants.items()}
splits = probe_runs(named, manifest, tasks, budgets=(1.0,), train_sizes=(min(config.probe.train_sizes),),
                    config=config.probe, n_splits=config.probe.n_splits)
splits.to_csv(Path(out_dir) / "splits.csv", index=False)
summary = summarize(splits, n_bootstrap=0)
table3 = summary.assign(variant=summary["method"], regime=summary["budget"].map(
    {"full": "100%", small: f"{min(config.probe.train_sizes)} WSI"}))  # the paper's smallest: 50 WSI
table3 = table3[["protocol", "variant", "task", "regime", "n_train", "auc_mean", "auc_std"]]
save_table(table3, "table3_ablation_augmentation", figures_dir)
table3.pivot_table(index=["protocol", "task", "regime"], columns="variant", values="auc_mean")[list(variants)]

# %% [markdown]
# Each variant minus the full method, paired over splits (95% bootstrap interval).

# %%
pairs = pd.concat([paired(splits, variant, "full", n_bootstrap=config.probe.n_bootstrap, seed=config.probe.seed)
                   for variant in variants if variant != "full"], ignore_index=True)
pairs["comparison"] = pairs["a"] + " | " + pairs["task"] + " | " + pairs["budget"] + " | " + pairs["protocol"]
save_table(pairs.drop(columns="comparison"), "table3_paired", figures_dir)
save_figure(paired_forest(pairs, title="Each variant minus the full method"), "table3_paired", figures_dir)

# %% [markdown]
# ## The shortcut: is the embedding organised by centre?
# For each slide, the fraction of its 5 nearest neighbours (cosine) that come from the same centre, against the
# fraction expected if the embedding ignored centres; and the same for each label.

# %%
rows, maps = [], {}
for variant, run in variants.items():
    ids, emb, _ = io.read_embeddings(Path(run_dir) / run / "embeddings.h5")
    frame = manifest.set_index("slide_id").loc[ids].reset_index()
    labelled = frame[tasks].notna().any(axis=1).to_numpy()
    emb, frame = emb[labelled], frame[labelled].reset_index(drop=True)
    maps[variant] = (emb, frame)
    for column in ["center"] + tasks:
        rows.append({"variant": variant, "attribute": column,
                     "neighbours_sharing_it": neighbour_agreement(emb, frame[column]),
                     "chance": label_agreement_chance(frame[column])})
shortcut = pd.DataFrame(rows)
save_table(shortcut, "table3_centre_shortcut", figures_dir)
shortcut.pivot(index="attribute", columns="variant", values="neighbours_sharing_it")[list(variants)]

# %%
for variant in ("full", "ns"):
    emb, frame = maps[variant]
    fig = embedding_map(pca_2d(emb), frame, ["center"] + tasks[:1],
                        title=f"{variant}: slide embeddings coloured by centre (PCA)")
    save_figure(fig, f"table3_map_{variant}", figures_dir)
