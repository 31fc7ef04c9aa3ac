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
# # The DeepMIL baseline
#
# **In this run:** {glue:md}`finding`
#
# Gated attention MIL (Ilse et al. 2018) trained from scratch on the plain tile embeddings of the bank, as the field
# trains attention MIL: tile features standardised on the training bags, Adam, class-balanced cross-entropy, CLAM's
# schedule counted in optimizer steps, early stopping on a validation part of each training split
# (`gigassl.evaluation.baselines.DeepMILClassifier`). It runs on the splits of the linear probe (Table 2: the label budgets;
# Fig. 2: the tiny training sets), whose pages compare it with Giga-SSL and AverageMIL. DeepMIL needs only the tile
# embeddings, not Giga-SSL: it runs beside the SSL training.

# %% tags=["parameters"]
profile = "demo"
run_dir = "runs/demo"
out_dir = "runs/demo/deepmil"
figures_dir = "figures"
tasks = None  # None: every label column of the manifest
bank = "bank_moco_shared"

# %%
from gigassl.config import get_profile
from gigassl.book.experiments import deepmil, deepmil_few_tiles
from gigassl.book.figures import deepmil_curves, finding, save_figure, save_table, show_table
from gigassl.book.plan import DEEPMIL_FEW_TILES
from gigassl.book.results import pairs_finding

config = get_profile(profile)
result = deepmil(config, run_dir, out_dir, tasks=tasks, bank=bank)

# %% [markdown]
# ## Learning curves
# Training and validation loss (class-balanced cross-entropy) against optimizer steps, averaged over the splits
# of each task at 100% of the labels; early stopping kept the state of the lowest validation loss after step
# `min_steps` (CLAM's 50 epochs; a first demo run without that minimum stopped most fits at their first evaluation,
# two epochs in, before any learning). Settings: the profile's `DeepMILConfig` (CLAM's schedule counted in steps;
# in the demo, 5 of the 10 splits for time).

# %%
save_figure(deepmil_curves(result.curves, budget="full"), "deepmil_curves", figures_dir)
show_table(result.stopping())

# %% [markdown]
# ## Where attention should help
# A check that the DeepMIL baseline trains: a task whose label is carried by two of 64 tiles per bag
# (`gigassl.evaluation.baselines.few_tile_task`), where the mean of the tiles dilutes the signal and attention can find it.
# DeepMIL should beat AverageMIL there; on the demo's tasks, whose labels are spread over many tiles, it need not.

# %%
few = deepmil_few_tiles(config)
save_table(few, DEEPMIL_FEW_TILES, figures_dir)

# %%
finding(result.describe(), pairs_finding(few, protocol="paper"))
