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
from gigassl.encoders import build_embedder
from gigassl.figures import save_figure, save_table, training_curves
from gigassl.manifest import labelled_ids, pool_ids, task_columns
from gigassl.moco import heldout_tiles, pretrain_tiles, retrieval_check
from gigassl.probe import summarize

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
# Per step (the queue starts with random keys, which are easy negatives: the loss is lowest in the first steps, then
# rises while the queue fills with real keys, then falls as the encoder learns).

# %%
steps = pd.read_csv(out / "moco" / "steps.csv")
steps["loss (mean of 25 steps)"] = steps["loss"].rolling(25, min_periods=1).mean()
steps["top1 (mean of 25 steps)"] = steps["top1"].rolling(25, min_periods=1).mean()
fig = training_curves({"MoCo v2": steps}, columns=("loss (mean of 25 steps)", "top1 (mean of 25 steps)"), x="step")
save_figure(fig, "moco_loss", figures_dir)

# %% [markdown]
# ## Label-free check: retrieval of the other augmented view, on held-out slides

# %%
heldout = heldout_tiles(manifest, cohort / "coords", pool or labelled, config.moco.heldout_tiles, config.moco.seed)
rows = []
for name, weights in (("random init", None), ("MoCo", str(checkpoint))):
    embedder = build_embedder(dataclasses.replace(config.encoder, weights=weights))
    rows.append({"encoder": name, "tiles": len(heldout), "held-out slides": bool(pool),
                 "top1_retrieval": retrieval_check(embedder, heldout, config.augment, seed=config.moco.seed,
                                                   device=config.encoder.device),
                 "chance": 1 / len(heldout)})
retrieval = pd.DataFrame(rows)
save_table(retrieval, "moco_retrieval", figures_dir)

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
trained, random = retrieval.set_index("encoder")["top1_retrieval"][["MoCo", "random init"]]
print(f"Retrieval of the other view on {len(heldout)} held-out tiles: MoCo {trained:.3f}, random init "
      f"{random:.3f} (chance {1 / len(heldout):.4f}). MoCo beats the random encoder's AverageMIL on "
      f"{int((useful['MoCo - random'] > 0).sum())} of {len(useful)} tasks "
      f"(mean difference {useful['MoCo - random'].mean():+.3f} AUC).")
