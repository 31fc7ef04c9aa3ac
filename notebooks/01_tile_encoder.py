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
# # The tile embedder: MoCo pre-training
#
# **In this run:** {glue:md}`finding`
#
# The tile embedder e_theta1 is a ResNet18 cut at the start of its fourth block (Sec. 3.1); the paper pre-trains the
# full ResNet18 with MoCo on tiles (Sec. 4.1). Here MoCo v2 runs on tiles of the labelled cohort with the profile's
# budget; its learning rate follows MoCo's linear scaling rule (0.03 at batch 256, so 0.0075 at the demo's 64).
# Does it learn? Two checks. Label-free: on tiles of slides MoCo never saw (the unlabelled pool), how often the
# other augmented view of a tile is its nearest neighbour among all the second views (top-1 retrieval), for the
# trained encoder and for its random initialisation. With labels: the AverageMIL linear probe (mean of a slide's
# plain tile embeddings, standard-scaled, logistic regression) with each encoder.

# %% tags=["parameters"]
profile = "demo"
run_dir = "runs/demo"
out_dir = "runs/demo/tile_encoder"
figures_dir = "figures"
tasks = None  # None: every label column of the manifest
smoothing = 25  # steps of the running mean in the plot of the MoCo loss

# %%
from pathlib import Path

import pandas as pd

from gigassl.config import get_profile
from gigassl.book.figures import finding, moco_loss, plot_moco_heldout, save_figure, save_table, show_table
from gigassl.book.plan import MOCO_RETRIEVAL
from gigassl.book.stages import encoder_comparison, moco_finding, moco_heldout, pretrain

config = get_profile(profile)
checkpoint = pretrain(config, run_dir, out_dir)
show_table(pd.read_csv(Path(out_dir) / "moco" / "log.csv"))

# %% [markdown]
# ## The MoCo loss
# Per step, during training. This loss is measured against the queue, whose negatives change: at first they are
# random keys (easy), then keys of real tiles from a key encoder that gets better, so they get harder. A rising
# training loss therefore does not mean the encoder gets worse; the curve that can be compared from one epoch to
# the next is the held-out one below, whose negatives are fixed.

# %%
save_figure(moco_loss(pd.read_csv(Path(out_dir) / "moco" / "steps.csv"), smoothing), "moco_loss", figures_dir)

# %% [markdown]
# ## Label-free check: retrieval of the other augmented view, on held-out slides
# For the random initialisation (epoch 0) and every checkpoint: on tiles of slides MoCo never saw, MoCo's loss
# with fixed negatives (the cross-entropy of the true other view among all of them, at MoCo's temperature; chance
# log M) and the top-1 retrieval; the gain over the random init is paired over the tiles, with its bootstrap
# interval.

# %%
curve, n_heldout = moco_heldout(config, run_dir, out_dir)
save_table(curve.drop(columns="weights"), MOCO_RETRIEVAL, figures_dir)
save_figure(plot_moco_heldout(curve), "moco_heldout", figures_dir)
show_table(curve.drop(columns="weights"))

# %% [markdown]
# ## With labels: AverageMIL with the MoCo encoder against a random encoder
# Plain embeddings of every tissue tile with each encoder (`gigassl bank --augmentations 0`), then the linear probe
# over the profile's splits at 100% of the labels. The MoCo plain embeddings are reused by the MoCo banks.

# %%
useful = encoder_comparison(config, run_dir, out_dir, checkpoint, tasks)
save_table(useful, "moco_vs_random", figures_dir)

# %%
finding(moco_finding(curve, useful, n_heldout))
