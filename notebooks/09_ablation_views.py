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
# # Number of views at inference: the Fig. 3B analogue
#
# Sec. 5, "Ensembling representations brings improvement": one slide embedding is the mean of R views; the paper
# loses up to 4 AUC points without ensembling (R = 1) on NSCLC and sees the gain saturate around R = 50. Here the
# trained model of the paper's setting embeds every slide with each R and is probed at 100% of the labels.

# %% tags=["parameters"]
profile = "demo"
run_dir = "runs/demo"
out_dir = "runs/demo/ablation_views"
figures_dir = "figures"
tasks = None
views = [1, 2, 5, 10, 25, 50]
train = "ssl_full"
bank = "bank_moco_shared"

# %%
import dataclasses
from pathlib import Path

import pandas as pd

from gigassl.config import get_profile
from gigassl.embed import embed_slides
from gigassl.figures import curves, save_figure, save_table
from gigassl.manifest import task_columns
from gigassl.metrics import summarize
from gigassl.protocol import probe_runs

config = get_profile(profile)
manifest = pd.read_csv(Path(run_dir) / "cohort" / "manifest.csv", dtype={"slide_id": str, "case_id": str})
tasks = tasks or task_columns(manifest)
named = {f"R{r}": (embed_slides(Path(run_dir) / bank, Path(run_dir) / train / "checkpoint.pt",
                                Path(out_dir) / f"R{r}.h5", dataclasses.replace(config.embed, views=r),
                                progress=False), "l2") for r in views}
splits = probe_runs(named, manifest, tasks, budgets=(1.0,), train_sizes=(), config=config.probe,
                    n_splits=config.probe.n_splits)
splits.to_csv(Path(out_dir) / "splits.csv", index=False)
fig3b = summarize(splits, n_bootstrap=0)
fig3b = fig3b.assign(views=fig3b["method"].str[1:].astype(int))[["protocol", "views", "task", "auc_mean", "auc_std"]]
save_table(fig3b, "fig3b_views", figures_dir)
fig3b.pivot_table(index="views", columns=["protocol", "task"], values="auc_mean")

# %%
for protocol, part in fig3b.groupby("protocol"):
    fig = curves(part, x="views", xlabel="views R averaged at inference", logx=True,
                 title=f"Linear AUC against R ({protocol} protocol)")
    save_figure(fig, f"fig3b_views_{protocol}", figures_dir)
