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
# The plain embeddings of every tissue tile with the trained encoder are computed here too: the MoCo banks reuse
# them. Whether the encoder learnt is the next page's question (its checks run beside the banks, which need only
# the encoder).

# %% tags=["parameters"]
profile = "demo"
run_dir = "runs/demo"
out_dir = "runs/demo/tile_encoder"
figures_dir = "figures"
smoothing = 25  # steps of the running mean in the plot of the MoCo loss

# %%
from pathlib import Path

import pandas as pd

from gigassl.config import get_profile
from gigassl.book.figures import finding, moco_loss, save_figure, show_table
from gigassl.book.stages import plain_embeddings, pretrain, pretrain_finding

config = get_profile(profile)
checkpoint = pretrain(config, run_dir, out_dir)
plain_embeddings(config, run_dir, Path(out_dir) / "plain_moco", checkpoint)
log = pd.read_csv(Path(out_dir) / "moco" / "log.csv")
show_table(log)

# %% [markdown]
# ## The MoCo loss
# Per step, during training. This loss is measured against the queue, whose negatives change: at first they are
# random keys (easy), then keys of real tiles from a key encoder that gets better, so they get harder. A rising
# training loss therefore does not mean the encoder gets worse; the curve that can be compared from one epoch to
# the next is the held-out one of the next page, whose negatives are fixed.

# %%
save_figure(moco_loss(pd.read_csv(Path(out_dir) / "moco" / "steps.csv"), smoothing), "moco_loss", figures_dir)
finding(pretrain_finding(log))
