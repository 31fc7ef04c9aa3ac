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
# The tile embedder e_theta1 is a ResNet18 cut at the start of its fourth block (Sec. 3.1); the paper pre-trains the
# full ResNet18 with MoCo on tiles (Sec. 4.1). Here MoCo v2 runs on tiles of the cohort with the profile's budget.
# Is the encoder useful? The check: the AverageMIL linear probe (mean of a slide's plain tile embeddings,
# standard-scaled, logistic regression) with the MoCo encoder against the same probe with a randomly initialised one.

# %% tags=["parameters"]
profile = "demo"
run_dir = "runs/demo"
out_dir = "runs/demo/tile_encoder"
figures_dir = "figures"
tasks = None  # None: every label column of the manifest

# %%
import dataclasses
from pathlib import Path

import pandas as pd

from gigassl.baselines import run_averagemil
from gigassl.bank import build_bank
from gigassl.config import get_profile
from gigassl.figures import save_figure, save_table, training_curves
from gigassl.manifest import task_columns
from gigassl.moco import pretrain_tiles
from gigassl.probe import summarize

config = get_profile(profile)
cohort = Path(run_dir) / "cohort"
manifest = cohort / "manifest.csv"
out = Path(out_dir)
checkpoint = pretrain_tiles(manifest, cohort / "coords", out / "moco", config.moco, config.augment,
                            device=config.encoder.device, progress=False)
log = pd.read_csv(out / "moco" / "log.csv")
log

# %%
fig = training_curves({"MoCo v2": log}, columns=("loss", "top1"))
save_figure(fig, "moco_loss", figures_dir)

# %% [markdown]
# ## Useful? AverageMIL with the MoCo encoder against a random encoder
# Plain embeddings of every tissue tile with each encoder (`gigassl bank --augmentations 0`), then the linear probe
# over the profile's splits at 100% of the labels.

# %%
plain = dataclasses.replace(config.bank, augmentations=0)
rows = []
for name, weights in (("random init", None), ("MoCo", str(checkpoint))):
    encoder = dataclasses.replace(config.encoder, weights=weights)
    folder = out / f"plain_{name.split()[0].lower()}"
    build_bank(manifest, cohort / "coords", folder, plain, encoder, config.augment, progress=False)
    labels = pd.read_csv(manifest)
    for task in tasks or task_columns(labels):
        table = run_averagemil(folder, labels, task, n_splits=config.probe.n_splits, budgets=(1.0,),
                               train_sizes=(), config=config.probe)
        summary = summarize(table, n_bootstrap=config.probe.n_bootstrap, seed=config.probe.seed)
        rows.append({"encoder": name, "task": task, "auc_mean": summary["auc_mean"].iloc[0],
                     "auc_std": summary["auc_std"].iloc[0]})
useful = pd.DataFrame(rows).pivot(index="task", columns="encoder", values="auc_mean").reset_index()
useful["MoCo - random"] = useful["MoCo"] - useful["random init"]
save_table(useful, "moco_vs_random", figures_dir)

# %%
print(f"MoCo beats the random encoder on {int((useful['MoCo - random'] > 0).sum())} of {len(useful)} tasks "
      f"(mean difference {useful['MoCo - random'].mean():+.3f} AUC).")
