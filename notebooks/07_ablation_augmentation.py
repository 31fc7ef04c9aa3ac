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
variants = {"full": "ssl_full", "no_slide_aug": "ssl_no_slide_aug", "ns": "ssl_ns", "imagenet": "ssl_imagenet",
            "imagenet_ns": "ssl_imagenet_ns"}

# %%
from pathlib import Path

import pandas as pd

from gigassl import io
from gigassl.config import get_profile
from gigassl.figures import embedding_map, pca_2d, save_figure, save_table
from gigassl.manifest import task_columns
from gigassl.probe import label_agreement_chance, neighbour_agreement, run_probe, summarize

config = get_profile(profile)
manifest = pd.read_csv(Path(run_dir) / "cohort" / "manifest.csv")
tasks = tasks or task_columns(manifest)
smallest = min(config.probe.train_sizes)
rows = []
for variant, run in variants.items():
    for task in tasks:
        table = run_probe(Path(run_dir) / run / "embeddings.h5", manifest, task, n_splits=config.probe.n_splits,
                          budgets=(1.0,), train_sizes=(smallest,), config=config.probe)
        for row in summarize(table, n_bootstrap=0).itertuples():
            rows.append({"variant": variant, "task": task, "regime": "100%" if row.budget == "full" else "50 WSI",
                         "train_size": row.n_train, "auc_mean": row.auc_mean, "auc_std": row.auc_std})
table3 = pd.DataFrame(rows)
save_table(table3, "table3_ablation_augmentation", figures_dir)
table3.pivot(index=["task", "regime"], columns="variant", values="auc_mean")[list(variants)]

# %% [markdown]
# ## The shortcut: is the embedding organised by centre?
# For each slide, the fraction of its 5 nearest neighbours (cosine) that come from the same centre, against the
# fraction expected if the embedding ignored centres; and the same for each label.

# %%
rows, maps = [], {}
for variant, run in variants.items():
    ids, emb, _ = io.read_embeddings(Path(run_dir) / run / "embeddings.h5")
    frame = manifest.set_index("slide_id").loc[ids].reset_index()
    maps[variant] = (emb, frame)
    for column in ["center"] + tasks:
        rows.append({"variant": variant, "attribute": column, "neighbours_sharing_it": neighbour_agreement(emb, frame[column]),
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
