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
# # Number of tiles per view: the Fig. 3A analogue
#
# Sec. 5, "The fewer tiles, the better": Giga-SSL trained with different numbers T of tiles per view (inference
# uses the same T, as the paper's supplementary material requires), probed at 100% of the labels.

# %% tags=["parameters"]
profile = "demo"
run_dir = "runs/demo"
out_dir = "runs/demo/ablation_tiles"
figures_dir = "figures"
tasks = None
runs = None  # None: ssl_full (the profile's T) and every ssl_T<k> run of the plan

# %%
from pathlib import Path

import pandas as pd

from gigassl import io
from gigassl.config import get_profile
from gigassl.figures import curves, save_figure, save_table
from gigassl.manifest import task_columns
from gigassl.probe import run_probe, summarize

config = get_profile(profile)
manifest = pd.read_csv(Path(run_dir) / "cohort" / "manifest.csv")
tasks = tasks or task_columns(manifest)
runs = runs or ["ssl_full"] + sorted(p.name for p in Path(run_dir).glob("ssl_T*"))
rows = []
for run in runs:
    path = Path(run_dir) / run / "embeddings.h5"
    tiles = int(io.read_embeddings(path)[2]["tiles_per_view"])
    for task in tasks:
        table = run_probe(path, manifest, task, n_splits=config.probe.n_splits, budgets=(1.0,), train_sizes=(),
                          config=config.probe)
        s = summarize(table, n_bootstrap=0).iloc[0]
        rows.append({"run": run, "tiles_per_view": tiles, "task": task, "auc_mean": s.auc_mean, "auc_std": s.auc_std})
fig3a = pd.DataFrame(rows).sort_values(["task", "tiles_per_view"])
save_table(fig3a, "fig3a_tiles", figures_dir)
fig3a.pivot(index="tiles_per_view", columns="task", values="auc_mean")

# %%
fig = curves(fig3a, x="tiles_per_view", xlabel="tiles per view T (training and inference)", logx=True,
             title="Linear AUC against T")
save_figure(fig, "fig3a_tiles", figures_dir)
