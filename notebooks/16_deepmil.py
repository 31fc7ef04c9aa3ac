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
# Gated attention MIL (Ilse et al. 2018) trained from scratch on the plain tile embeddings of the bank, as the field
# trains attention MIL: tile features standardised on the training bags, Adam, class-balanced cross-entropy, CLAM's
# schedule counted in optimizer steps, early stopping on a validation part of each training split
# (`gigassl.baselines.DeepMILClassifier`). It runs on the splits of the linear probe (Table 2: the label budgets;
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
from pathlib import Path

import pandas as pd

from gigassl.baselines import few_tile_task, run_averagemil, run_deepmil
from gigassl.compare import paired
from gigassl.config import get_profile
from gigassl.figures import deepmil_curves, save_figure, save_table
from gigassl.manifest import task_columns

config = get_profile(profile)
manifest = pd.read_csv(Path(run_dir) / "cohort" / "manifest.csv", dtype={"slide_id": str, "case_id": str})
tasks = tasks or task_columns(manifest)
bank_dir = Path(run_dir) / bank
common = dict(config=config.deepmil, probe_config=config.probe, n_splits=config.probe.n_splits)
curves = []
table2 = pd.concat([run_deepmil(bank_dir, manifest, task, budgets=tuple(config.probe.budgets), train_sizes=(),
                                curves=curves, **common) for task in tasks], ignore_index=True)
table2.to_csv(Path(out_dir) / "table2_splits.csv", index=False)
fig2 = pd.concat([run_deepmil(bank_dir, manifest, task, budgets=(), train_sizes=tuple(config.probe.train_sizes),
                              **common) for task in tasks], ignore_index=True)
fig2.to_csv(Path(out_dir) / "fig2_splits.csv", index=False)
print(f"DeepMIL on {table2['split'].nunique()} of the probe's {config.probe.n_splits} splits, {len(tasks)} tasks: "
      f"{len(table2)} fits for Table 2, {len(fig2)} for Fig. 2")

# %% [markdown]
# ## Learning curves
# Training and validation loss (class-balanced cross-entropy) against optimizer steps, averaged over the splits
# of each task at 100% of the labels; early stopping kept the state of the lowest validation loss after step
# `min_steps` (CLAM's 50 epochs; a first demo run without that minimum stopped most fits at their first evaluation,
# two epochs in, before any learning). Settings: the profile's `DeepMILConfig` (CLAM's schedule counted in steps;
# in the demo, 5 of the 10 splits for time).

# %%
curves_frame = pd.DataFrame(curves)
curves_frame.to_csv(Path(out_dir) / "deepmil_curves.csv", index=False)
save_figure(deepmil_curves(curves_frame[curves_frame["budget"] == "full"]), "deepmil_curves", figures_dir)
table2.groupby(["task", "budget"])[["best_step", "steps"]].describe().round(0)

# %% [markdown]
# ## Where attention should help
# A check that the DeepMIL baseline trains: a task whose label is carried by two of 64 tiles per bag
# (`gigassl.baselines.few_tile_task`), where the mean of the tiles dilutes the signal and attention can find it.
# DeepMIL should beat AverageMIL there; on the demo's tasks, whose labels are spread over many tiles, it need not.

# %%
bags, few = few_tile_task(seed=config.probe.seed)
check = pd.concat([run_averagemil(bags, few, "few_tiles", config=config.probe, n_splits=config.probe.n_splits,
                                  budgets=tuple(config.probe.budgets), train_sizes=()),
                   run_deepmil(bags, few, "few_tiles", budgets=tuple(config.probe.budgets), train_sizes=(),
                               **common)])
few_tiles = paired(check.assign(protocol="paper"), "deepmil", "averagemil", n_bootstrap=config.probe.n_bootstrap,
                   seed=config.probe.seed)
save_table(few_tiles, "deepmil_few_tiles", figures_dir)
