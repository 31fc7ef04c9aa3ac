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
# full ResNet18 with MoCo on tiles (Sec. 4.1). Here MoCo v2 runs on tiles of the labelled cohort with the profile's
# budget; its learning rate follows MoCo's linear scaling rule (0.03 at batch 256, so 0.0075 at the demo's 64).
# Does it learn? Two checks. Label-free: on tiles of slides MoCo never saw (the unlabelled pool), how often the
# other augmented view of a tile is its nearest neighbour among all the second views (top-1 retrieval), for the
# trained encoder and for its random initialisation. With labels: the AverageMIL linear probe (mean of a slide's
# plain tile embeddings, standard-scaled, logistic regression) with each encoder.

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
from gigassl.manifest import labelled_ids, pool_ids, task_columns
from gigassl.moco import heldout_tiles, pretrain_tiles, retrieval_curve
from gigassl.metrics import summarize

config = get_profile(profile)
cohort = Path(run_dir) / "cohort"
manifest = cohort / "manifest.csv"
frame = pd.read_csv(manifest, dtype={"slide_id": str})
labelled, pool = labelled_ids(frame), pool_ids(frame)
out = Path(out_dir)
checkpoint = pretrain_tiles(manifest, cohort / "coords", out / "moco", config.moco, config.augment,
                            device=config.encoder.device, progress=False, slide_ids=labelled)
log = pd.read_csv(out / "moco" / "log.csv")
log

# %% [markdown]
# ## The MoCo loss
# Per step, during training. This loss is measured against the queue, whose negatives change: at first they are
# random keys (easy), then keys of real tiles from a key encoder that gets better, so they get harder. A rising
# training loss therefore does not mean the encoder gets worse; the curve that can be compared from one epoch to
# the next is the held-out one below, whose negatives are fixed.

# %%
steps = pd.read_csv(out / "moco" / "steps.csv")
steps["loss (mean of 25 steps)"] = steps["loss"].rolling(25, min_periods=1).mean()
steps["top1 (mean of 25 steps)"] = steps["top1"].rolling(25, min_periods=1).mean()
fig = training_curves({"MoCo v2": steps}, columns=("loss (mean of 25 steps)", "top1 (mean of 25 steps)"), x="step")
save_figure(fig, "moco_loss", figures_dir)

# %% [markdown]
# ## Label-free check: retrieval of the other augmented view, on held-out slides
# For the random initialisation (epoch 0) and every checkpoint: on tiles of slides MoCo never saw, MoCo's loss
# with fixed negatives (the cross-entropy of the true other view among all of them, at MoCo's temperature; chance
# log M) and the top-1 retrieval; the gain over the random init is paired over the tiles, with its bootstrap
# interval.

# %%
heldout = heldout_tiles(manifest, cohort / "coords", pool or labelled, config.moco.heldout_tiles, config.moco.seed)
curve = retrieval_curve(out / "moco", heldout, config.encoder, config.augment, seed=config.moco.seed,
                        n_bootstrap=config.probe.n_bootstrap)
curve = curve.assign(held_out_slides=bool(pool))
save_table(curve.drop(columns="weights"), "moco_retrieval", figures_dir)
fig = training_curves({"MoCo v2, held-out tiles": curve}, columns=("infonce", "top1"), x="epoch",
                      references={"infonce": (float(curve["chance_infonce"].iloc[0]), "log M (chance)"),
                                  "top1": (float(curve["chance_top1"].iloc[0]), "1 / M (chance)")})
save_figure(fig, "moco_heldout", figures_dir)
curve.drop(columns="weights")

# %% [markdown]
# ## With labels: AverageMIL with the MoCo encoder against a random encoder
# Plain embeddings of every tissue tile with each encoder (`gigassl bank --augmentations 0`), then the linear probe
# over the profile's splits at 100% of the labels. The MoCo plain embeddings are reused by the MoCo banks.

# %%
plain = dataclasses.replace(config.bank, augmentations=0)
rows = []
for name, weights in (("random init", None), ("MoCo", str(checkpoint))):
    encoder = dataclasses.replace(config.encoder, weights=weights)
    folder = out / f"plain_{name.split()[0].lower()}"
    build_bank(manifest, cohort / "coords", folder, plain, encoder, config.augment, progress=False,
               slide_ids=labelled)
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
last, first = curve.iloc[-1], curve.iloc[0]
print(f"On {len(heldout)} held-out tiles, MoCo's loss with fixed negatives goes from {first.infonce:.3f} (random "
      f"init) to {last.infonce:.3f} at epoch {int(last.epoch)} (chance {first.chance_infonce:.3f}); top-1 retrieval "
      f"from {first.top1:.4f} to {last.top1:.4f} (chance {first.chance_top1:.4f}; gain {last.gain:+.4f} "
      f"[{last.ci_low:+.4f}, {last.ci_high:+.4f}], {last.verdict}). MoCo beats the random encoder's AverageMIL on "
      f"{int((useful['MoCo - random'] > 0).sum())} of {len(useful)} tasks "
      f"(mean difference {useful['MoCo - random'].mean():+.3f} AUC).")
