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
runs = None  # None: ssl_ref (the profile's T, ablation regime) and every ssl_T<k> run of the plan

# %%
from pathlib import Path

import pandas as pd

from gigassl import io
from gigassl.config import get_profile
from gigassl.figures import curves, save_figure, save_table
from gigassl.manifest import task_columns
from gigassl.metrics import summarize
from gigassl.protocol import probe_runs

config = get_profile(profile)
manifest = pd.read_csv(Path(run_dir) / "cohort" / "manifest.csv", dtype={"slide_id": str, "case_id": str})
tasks = tasks or task_columns(manifest)
runs = runs or ["ssl_ref"] + sorted(p.name for p in Path(run_dir).glob("ssl_T*"))
named = {}
for run in runs:
    path = Path(run_dir) / run / "embeddings.h5"
    named[f"T{int(io.read_embeddings(path)[2]['tiles_per_view'])}"] = (path, "l2")
splits = probe_runs(named, manifest, tasks, budgets=(1.0,), train_sizes=(), config=config.probe,
                    n_splits=config.probe.n_splits)
splits.to_csv(Path(out_dir) / "splits.csv", index=False)
fig3a = summarize(splits, n_bootstrap=0)
fig3a = fig3a.assign(tiles_per_view=fig3a["method"].str[1:].astype(int))[
    ["protocol", "tiles_per_view", "task", "auc_mean", "auc_std"]].sort_values(["protocol", "task", "tiles_per_view"])
save_table(fig3a, "fig3a_tiles", figures_dir)
fig3a.pivot_table(index="tiles_per_view", columns=["protocol", "task"], values="auc_mean")

# %%
for protocol, part in fig3a.groupby("protocol"):
    fig = curves(part, x="tiles_per_view", xlabel="tiles per view T (training and inference)", logx=True,
                 title=f"Linear AUC against T ({protocol} protocol)")
    save_figure(fig, f"fig3a_tiles_{protocol}", figures_dir)
