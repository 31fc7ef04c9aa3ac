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
# Sec. 5, "Generalization": the paper trained Giga-SSL on TCGA slides from centres that contributed nothing to the
# NSCLC dataset and probed on NSCLC. Here the centres are split in two (whole centres, about half the slides each,
# `gigassl.splits.centre_holdout`); one Giga-SSL model was trained only on the slides of the first half, and both it
# and the model trained on every slide are probed on the slides of the second half.

# %% tags=["parameters"]
profile = "demo"
run_dir = "runs/demo"
out_dir = "runs/demo/independent_centres"
figures_dir = "figures"
tasks = None
models = {"full": "ssl_full", "independent": "ssl_independent_centres"}
train_size = None  # the tiny training set (the paper: 50 WSI); None: the profile's smallest; 0: none

# %%
from pathlib import Path

import pandas as pd

from gigassl.config import get_profile
from gigassl.figures import save_table
from gigassl.manifest import task_columns
from gigassl.probe import run_probe, summarize
from gigassl.splits import centre_holdout

config = get_profile(profile)
manifest = pd.read_csv(Path(run_dir) / "cohort" / "manifest.csv")
tasks = tasks or task_columns(manifest)
probe_centres = centre_holdout(manifest, seed=config.probe.seed)
probe_slides = manifest[manifest["center"].isin(probe_centres)]
print(f"probe centres {probe_centres}: {len(probe_slides)} slides; the independent model never saw them")
smallest = min(config.probe.train_sizes) if train_size is None else train_size
rows = []
for model, run in models.items():
    for task in tasks:
        table = run_probe(Path(run_dir) / run / "embeddings.h5", probe_slides, task, n_splits=config.probe.n_splits,
                          budgets=(1.0,), train_sizes=(smallest,) if smallest else (), config=config.probe)
        for row in summarize(table, n_bootstrap=0).itertuples():
            rows.append({"model": model, "task": task, "regime": "100%" if row.budget == "full" else "50 WSI",
                         "train_size": row.n_train, "auc_mean": row.auc_mean, "auc_std": row.auc_std})
table4 = pd.DataFrame(rows)
save_table(table4, "table4_independent_centres", figures_dir)
table4.pivot(index=["task", "regime"], columns="model", values="auc_mean")
