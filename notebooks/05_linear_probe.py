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
# # Linear probes against MIL baselines: the Table 2 analogue
#
# Sec. 4.2-4.3: a logistic regression (C = 10, class-balanced) on frozen slide embeddings, over the profile's splits
# (case-grouped, stratified), with 100% and 25% of the training labels. Giga-SSL embeddings are L2-normalised,
# AverageMIL embeddings (the mean of the plain tile embeddings) standard-scaled; DeepMIL is a gated attention MIL
# trained from scratch on the same splits, with early stopping on a validation part of each training split. The
# CPU time of each method is recorded with its results.

# %% tags=["parameters"]
profile = "demo"
run_dir = "runs/demo"
out_dir = "runs/demo/linear_probe"
figures_dir = "figures"
tasks = None  # None: every label column of the manifest
train = "ssl_full"
bank = "bank_moco_shared"

# %%
from pathlib import Path

import pandas as pd

from gigassl.baselines import run_averagemil, run_deepmil
from gigassl.config import get_profile
from gigassl.figures import auc_bars, save_figure, save_table
from gigassl.manifest import task_columns
from gigassl.probe import run_probe, summarize

config = get_profile(profile)
manifest = pd.read_csv(Path(run_dir) / "cohort" / "manifest.csv")
tasks = tasks or task_columns(manifest)
embeddings = Path(run_dir) / train / "embeddings.h5"
bank_dir = Path(run_dir) / bank
budgets = tuple(config.probe.budgets)
common = dict(n_splits=config.probe.n_splits, budgets=budgets, train_sizes=())
tables = []
for task in tasks:
    tables.append(run_probe(embeddings, manifest, task, config=config.probe, **common))
    tables.append(run_averagemil(bank_dir, manifest, task, config=config.probe, **common))
    tables.append(run_deepmil(bank_dir, manifest, task, config=config.deepmil, probe_config=config.probe, **common))
splits = pd.concat(tables, ignore_index=True)
splits.to_csv(Path(out_dir) / "splits.csv", index=False)
summary = summarize(splits, n_bootstrap=config.probe.n_bootstrap, seed=config.probe.seed)
table2 = summary[["task", "budget", "method", "auc_mean", "auc_std", "ci_low", "ci_high", "n_train", "n_test",
                  "cpu_seconds", "wall_seconds"]].sort_values(["task", "budget", "method"])
save_table(table2, "table2_linear_probe", figures_dir)

# %%
fig = auc_bars(table2)
save_figure(fig, "table2_linear_probe", figures_dir)

# %% [markdown]
# ## Calibration of the synthetic cohort
# Before any comparison, the generator's difficulty was set so that the AverageMIL baseline alone lands between
# AUC 0.65 and 0.92 on every task at 100% of the labels (tasks every method solves perfectly teach nothing). The
# calibration runs (AverageMIL only, recorded in `data/calibration/averagemil.csv`) raised the effect size of
# `rcc_like` once; the cohort was then frozen. The check below is recomputed by every run (it applies to the
# synthetic cohort; on your own slides it only reports).

# %%
from gigassl.paper import calibration_history

history = calibration_history()
history.pivot_table(index=["step", "synth_changes", "encoder"], columns="task", values="auc_mean").reset_index()

# %%
calibration = table2[(table2["method"] == "averagemil") & (table2["budget"] == "full")][["task", "auc_mean", "auc_std"]]
calibration = calibration.assign(within_0_65_0_92=calibration["auc_mean"].between(0.65, 0.92))
save_table(calibration, "calibration", figures_dir)

# %% [markdown]
# ## Time
# CPU-seconds of fitting and predicting over all splits of one task at 100% of the labels (the paper: 1.25
# CPU-seconds for the linear probe on BRCA, 150 GPU-minutes for attention MIL).

# %%
full = splits[splits["budget"] == "full"]
speed = full.groupby(["method", "task"], sort=False)[["cpu_seconds", "wall_seconds"]].sum().reset_index()
speed = speed.groupby("method", sort=False)[["cpu_seconds", "wall_seconds"]].mean().reset_index()
probe_cpu = float(speed.loc[speed["method"] == "gigassl", "cpu_seconds"].iloc[0])
speed["x linear probe"] = speed["cpu_seconds"] / probe_cpu
save_table(speed, "speed", figures_dir)
