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
# # Training on independent centres: the Table 4 analogue
#
# **In this run:** {glue:md}`finding`
#
# Sec. 5, "Generalization": the paper trained Giga-SSL on TCGA slides from centres that contributed nothing to the
# NSCLC dataset and probed on NSCLC. Here the centres are split in two (whole centres, about half the slides each,
# `gigassl.evaluation.centres.centre_holdout`); one Giga-SSL model was trained only on the slides of the first half, and both it
# and the model trained on every slide are probed on the slides of the second half.

# %% tags=["parameters"]
profile = "demo"
run_dir = "runs/demo"
out_dir = "runs/demo/independent_centres"
figures_dir = "figures"
tasks = None
models = {"full": "ssl_ref", "independent": "ssl_independent_centres"}  # both in the ablation regime
train_size = None  # the tiny training set (the paper: 50 WSI); None: the profile's smallest; 0: none

# %%
from gigassl.config import get_profile
from gigassl.book.experiments import independent_centres
from gigassl.book.figures import finding, save_table, show_table
from gigassl.book.results import centres_finding

config = get_profile(profile)
result = independent_centres(config, run_dir, out_dir, models, tasks=tasks, train_size=train_size)
save_table(result.table, "table4_independent_centres", figures_dir)
show_table(result.wide())

# %%
finding(centres_finding(result))
