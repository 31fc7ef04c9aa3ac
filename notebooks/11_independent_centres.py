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
models = {"full": "ssl_ref", "independent": "ssl_independent_centres"}  # both in the ablation regime
train_size = None  # the tiny training set (the paper: 50 WSI); None: the profile's smallest; 0: none

# %%
from pathlib import Path

import pandas as pd

from gigassl.config import get_profile
from gigassl.figures import save_table
from gigassl.manifest import task_columns
from gigassl.metrics import summarize
from gigassl.protocol import probe_runs
from gigassl.splits import budget_name, centre_holdout

config = get_profile(profile)
manifest = pd.read_csv(Path(run_dir) / "cohort" / "manifest.csv", dtype={"slide_id": str, "case_id": str})
tasks = tasks or task_columns(manifest)
probe_centres = centre_holdout(manifest, seed=config.probe.seed)
probe_slides = manifest[manifest["center"].isin(probe_centres)]
print(f"probe centres {probe_centres}: {len(probe_slides)} slides; the independent model never saw them")
smallest = min(config.probe.train_sizes) if train_size is None else train_size
named = {model: (Path(run_dir) / run / "embeddings.h5", "l2") for model, run in models.items()}
splits = probe_runs(named, probe_slides, tasks, budgets=(1.0,), train_sizes=(smallest,) if smallest else (),
                    config=config.probe, n_splits=config.probe.n_splits)
splits.to_csv(Path(out_dir) / "splits.csv", index=False)
summary = summarize(splits, n_bootstrap=0)
table4 = summary.assign(model=summary["method"],
                        regime=summary["budget"].map({"full": "100%",
                                                      budget_name(size=smallest or 1): f"{smallest} WSI"}))
table4 = table4[["protocol", "model", "task", "regime", "n_train", "auc_mean", "auc_std"]]
save_table(table4, "table4_independent_centres", figures_dir)
table4.pivot_table(index=["protocol", "task", "regime"], columns="model", values="auc_mean")
