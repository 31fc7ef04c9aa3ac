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
# # Does the tile embedder learn? Two checks
#
# **In this run:** {glue:md}`finding`
#
# Two checks of the MoCo tile embedder of the previous page. Label-free: on tiles of slides MoCo never saw (the
# unlabelled pool), how often the other augmented view of a tile is its nearest neighbour among all the second
# views (top-1 retrieval), for the trained encoder and for its random initialisation. With labels: the AverageMIL
# linear probe (mean of a slide's plain tile embeddings, standard-scaled, logistic regression) with each encoder.
# This page runs beside the banks: they need the encoder, not its checks.

# %% tags=["parameters"]
profile = "demo"
run_dir = "runs/demo"
out_dir = "runs/demo/tile_encoder_checks"
figures_dir = "figures"
tasks = None  # None: every label column of the manifest
encoder = "tile_encoder"  # page parameter: the execution under run_dir whose MoCo encoder is checked

# %%
from pathlib import Path

from gigassl.config import get_profile
from gigassl.book.figures import finding, plot_moco_heldout, save_figure, save_table, show_table
from gigassl.book.plan import MOCO_RETRIEVAL
from gigassl.book.stages import encoder_comparison, moco_finding, moco_heldout

config = get_profile(profile)
encoder_dir = Path(run_dir) / encoder

# %% [markdown]
# ## Label-free check: retrieval of the other augmented view, on held-out slides
# For the random initialisation (epoch 0) and every checkpoint: on tiles of slides MoCo never saw, MoCo's loss
# with fixed negatives (the cross-entropy of the true other view among all of them, at MoCo's temperature; chance
# log M) and the top-1 retrieval; the gain over the random init is paired over the tiles, with its bootstrap
# interval.

# %%
curve, n_heldout = moco_heldout(config, run_dir, encoder_dir)
save_table(curve.drop(columns="weights"), MOCO_RETRIEVAL, figures_dir)
save_figure(plot_moco_heldout(curve), "moco_heldout", figures_dir)
show_table(curve.drop(columns="weights"))

# %% [markdown]
# ## With labels: AverageMIL with the MoCo encoder against a random encoder
# Plain embeddings of every tissue tile with each encoder (`gigassl bank --augmentations 0`; the MoCo ones are the
# previous page's), then the linear probe over the profile's splits at 100% of the labels.

# %%
useful = encoder_comparison(config, run_dir, out_dir, encoder_dir / "plain_moco", tasks)
save_table(useful, "moco_vs_random", figures_dir)

# %%
finding(moco_finding(curve, useful, n_heldout))
