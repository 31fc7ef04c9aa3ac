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
# **In this run:** {glue:md}`finding`
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
baselines = {"averagemil_moco": "bank_moco_shared", "averagemil_imagenet": "bank_imagenet_shared"}  # AverageMIL arms
shortcut_neighbours = 5  # page parameter: the nearest neighbours of the centre-shortcut measure
mapped = ["full", "ns"]  # variants drawn in PCA
mapped_columns = None  # colours of the maps; None: the centre and the first task

# %% [markdown]
# Every variant is trained in the ablation regime (the labelled cohort, the profile's epochs) and compared with
# `ssl_ref`, the full method trained the same way. `no_tile_aug` trains on the plain tile embeddings alone (what a
# user who brings TRIDENT or CLAM features has: `gigassl train` on a folder of plain features), so that its two
# views differ by their tiles and the slide-level augmentation only: the row shows what the augmented bank buys.
# Two more rows test the departures from the authors' code that
# the paper leaves open: BatchNorm over both views at once (`bn_joint`; the default, per view, is the authors') and
# a randomly initialised aggregator (`random_init`; the default starts from the tile embedder's layer4).
#
# **Arms that differ in one thing.** The ImageNet tile embedder (EfficientNet-Lite0) has no layer4, so the ImageNet
# arms (`imagenet`, `imagenet_ns`) start their aggregator at random: they are set against `random_init` (the MoCo
# bank, a random aggregator start, the same regime), not against `full`. They still differ in the size of their tile
# features: 1280-d (EfficientNet-Lite0) against 256-d (ResNet18 to layer3); the column `also_differs` says so on each
# row. `imagenet_ns` differs from `random_init` in two factors, as the paper's Giga-SSLim NS does from Giga-SSL.
# AverageMIL on each encoder's plain tile embeddings (`averagemil_imagenet`, `averagemil_moco`, probed on the same
# splits) tells the encoder's part from the SSL's part: the encoder alone is AverageMIL ImageNet minus AverageMIL
# MoCo; SSL on one encoder is Giga-SSL minus AverageMIL on the same tile features.

# %%
from gigassl.config import get_profile
from gigassl.book.experiments import augmentation_ablation, controls_finding
from gigassl.book.figures import finding, paired_forest, save_figure, save_figures, save_table, show_table, variant_maps
from gigassl.book.results import pairs_finding

config = get_profile(profile)
result = augmentation_ablation(config, run_dir, out_dir, variants, tasks=tasks, neighbours=shortcut_neighbours,
                              baselines=baselines)
save_table(result.table, "table3_ablation_augmentation", figures_dir)
show_table(result.wide(variants))

# %% [markdown]
# Each variant minus its reference (the full method, or `random_init` for the ImageNet arms), paired over splits
# (95% bootstrap interval); `also_differs` names what else the two arms differ in.

# %%
save_table(result.pairs.drop(columns="comparison"), "table3_paired", figures_dir)
save_figure(paired_forest(result.pairs, title="Each variant minus its reference"), "table3_paired", figures_dir)

# %% [markdown]
# ## Encoder or SSL? AverageMIL on the ImageNet and the MoCo tile features
# The tile encoder alone (AverageMIL ImageNet minus AverageMIL MoCo: no SSL on either side) and SSL on one encoder
# (Giga-SSL minus AverageMIL on the same tile features; both Giga-SSL arms with a random aggregator start), paired
# over the same splits.

# %%
save_table(result.controls.drop(columns="comparison"), "table3_controls", figures_dir)
save_figure(paired_forest(result.controls, title="Encoder or SSL"), "table3_controls", figures_dir)

# %% [markdown]
# ## The shortcut: is the embedding organised by centre?
# For each slide, the fraction of its 5 nearest neighbours (cosine) that come from the same centre, against the
# fraction expected if the embedding ignored centres; and the same for each label.

# %%
save_table(result.shortcut, "table3_centre_shortcut", figures_dir)
show_table(result.shortcut_wide(variants))

# %%
save_figures(variant_maps(result.embeddings, mapped, mapped_columns), "table3_map", figures_dir)

# %%
finding(pairs_finding(result.pairs), controls_finding(result.controls))
