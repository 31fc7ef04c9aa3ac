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
# # Tiny training sets: the Fig. 2 analogue
#
# Sec. 4.3, "Tiny datasets": the training part of every split is cut to exactly N slides (stratified, whole cases;
# the test part untouched), and Giga-SSL's linear probe is compared with DeepMIL trained from scratch. The paper
# (N = 250, 100, 50) finds the gain of Giga-SSL grows as N shrinks: +5.1 AUC points at 100 WSI, +6.3 at 50. The
# profile's sizes are scaled to the cohort.

# %% tags=["parameters"]
profile = "demo"
run_dir = "runs/demo"
out_dir = "runs/demo/tiny_datasets"
figures_dir = "figures"
tasks = None
train = "ssl_full"
bank = "bank_moco_shared"

# %%
from pathlib import Path

import pandas as pd

from gigassl.baselines import run_deepmil
from gigassl.config import get_profile
from gigassl.figures import curves, save_figure, save_table
from gigassl.manifest import task_columns
from gigassl.probe import run_probe, summarize

config = get_profile(profile)
manifest = pd.read_csv(Path(run_dir) / "cohort" / "manifest.csv")
tasks = tasks or task_columns(manifest)
sizes = tuple(config.probe.train_sizes)
common = dict(n_splits=config.probe.n_splits, budgets=(), train_sizes=sizes)
tables = []
for task in tasks:
    tables.append(run_probe(Path(run_dir) / train / "embeddings.h5", manifest, task, config=config.probe, **common))
    tables.append(run_deepmil(Path(run_dir) / bank, manifest, task, config=config.deepmil, probe_config=config.probe,
                              **common))
splits = pd.concat(tables, ignore_index=True)
splits.to_csv(Path(out_dir) / "splits.csv", index=False)
summary = summarize(splits, n_bootstrap=config.probe.n_bootstrap, seed=config.probe.seed)
summary["train_size"] = summary["budget"].astype(int)
wide = summary.pivot(index=["task", "train_size"], columns="method", values="auc_mean").reset_index()
wide["gain"] = wide["gigassl"] - wide["deepmil"]
save_table(wide, "fig2_tiny_datasets", figures_dir)

# %%
mean = wide.groupby("train_size")["gain"].mean().reset_index().assign(task="mean of tasks")
fig = curves(pd.concat([wide, mean]), x="train_size", y="gain", hue="task", err=None,
             xlabel="training slides", title="AUC gain of Giga-SSL over DeepMIL")
fig.axes[0].axhline(0, color="red", lw=1)
save_figure(fig, "fig2_tiny_datasets", figures_dir)
