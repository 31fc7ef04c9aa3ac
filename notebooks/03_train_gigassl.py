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
# # Giga-SSL training
#
# Sec. 3.1 Steps 3-6 on the frozen bank (Sec. 3.2): each view picks one augmentation draw of a slide and T of its
# tiles, places them on a sparse map, augments the map (rotation, flips, per-axis scale), and the aggregator (the
# sparse ResNet18 `layer4`, initialised from the tile embedder's) embeds it; a projector and NT-Xent (Eq. 1,
# temperature 0.05) pull the two views of a slide together. After training, every labelled slide is embedded as the
# L2-normalised mean of R views of T plain tiles (Sec. 4.2). The parameters below select the ablations.

# %% tags=["parameters"]
profile = "demo"
run_dir = "runs/demo"
out_dir = "runs/demo/ssl_full"
figures_dir = "figures"
bank = "bank_moco_shared"  # execution whose bank to train on
pool = 0  # unlabelled pool slides added to the labelled cohort for SSL (None: the whole pool of the bank)
steps = None  # optimizer steps; None: the profile's epochs
tiles_per_view = None  # T; None: the profile's (paper: 5)
aggregator = "sparseconv"  # sparseconv | attention | mean
aggregator_init = "tile_embedder"  # tile_embedder (the paper) | random
bn_views = "per_view"  # per_view (the authors' code) | joint
schedule_epochs = None  # cosine horizon; None: the training length (the authors': 3000)
slide_aug = True  # False: the "w/o slide-aug" ablation
monitor_every = 0  # every k epochs: probe the monitor task and compute the diagnostics (0: never)
monitor_task = "nsclc_like"
exclude_probe_centres = False  # True: train only on centres absent from the probe slides (Table 4)
encoder_weights = "tile_encoder/moco/checkpoint.pt"  # under run_dir: the tile embedder whose layer4 starts the
#                                                      aggregator; None for a bank of another encoder

# %%
import dataclasses
import math
from pathlib import Path

import pandas as pd

from gigassl.bank import bank_slide_ids
from gigassl.config import get_profile
from gigassl.embed import embed_slides, training_monitor
from gigassl.figures import save_figure, training_curves
from gigassl.manifest import labelled_ids, ssl_slide_ids
from gigassl.splits import centre_holdout
from gigassl.train import train

config = get_profile(profile)
train_config = dataclasses.replace(
    config.train, tiles_per_view=tiles_per_view or config.train.tiles_per_view, aggregator=aggregator,
    steps=steps, aggregator_init=aggregator_init, bn_views=bn_views, schedule_epochs=schedule_epochs,
    monitor_every=monitor_every, maps=dataclasses.replace(config.train.maps, slide_aug=slide_aug),
)
bank_dir = Path(run_dir) / bank
manifest = pd.read_csv(Path(run_dir) / "cohort" / "manifest.csv", dtype={"slide_id": str, "case_id": str})
excluded = centre_holdout(manifest, seed=config.probe.seed) if exclude_probe_centres else ()
slides = ssl_slide_ids(manifest, pool=pool, exclude_centres=excluded, available=bank_slide_ids(bank_dir))
train_config = dataclasses.replace(train_config, batch_size=min(train_config.batch_size, len(slides)))
print(f"SSL on {len(slides)} slides ({len(set(slides) - set(labelled_ids(manifest)))} of them from the unlabelled "
      f"pool){'; probe centres ' + str(list(excluded)) + ' excluded' if excluded else ''}")
watch = None
if monitor_every:
    watch = training_monitor(manifest, [monitor_task], train_config.maps, views=max(1, config.embed.views // 5),
                             tiles=train_config.tiles_per_view, probe=config.probe, seed=config.embed.seed,
                             device=train_config.device)
checkpoint = train(bank_dir, out_dir, train_config, encoder_weights=encoder_weights and str(Path(run_dir) / encoder_weights),
                   slide_ids=slides, monitor=watch, progress=False)
embed_config = dataclasses.replace(config.embed, tiles_per_view=train_config.tiles_per_view)
embeddings = embed_slides(bank_dir, checkpoint, Path(out_dir) / "embeddings.h5", embed_config, progress=False,
                          slide_ids=labelled_ids(manifest))
print(f"checkpoint {checkpoint}\nembeddings {embeddings}")

# %% [markdown]
# ## Training curves
# Loss and collapse indicator per epoch, and the label-free diagnostics of each training batch (mean over the
# epoch's steps): the alignment of the two views' projections and their uniformity (Wang & Isola 2020; the
# space of the loss), the mean pairwise cosine and the effective rank of the representations W (the space used
# downstream). A loss at log(2B - 1) means two views of a slide are no closer than views of other slides.

# %%
log = pd.read_csv(Path(out_dir) / "log.csv")
chance = math.log(2 * train_config.batch_size - 1)
fig = training_curves({Path(out_dir).name: log}, columns=("loss", "alignment", "uniformity", "mean_cosine",
                                                          "effective_rank"), x="step",
                      references={"loss": (chance, "log(2B - 1)")})
save_figure(fig, f"{Path(out_dir).name}_curves", figures_dir)
print(f"{int(log.step.iloc[-1])} steps in {len(log)} epochs; last epoch: loss {log.loss.iloc[-1]:.3f} "
      f"(log(2B - 1) = {chance:.3f}), alignment {log.alignment.iloc[-1]:.3f}, uniformity "
      f"{log.uniformity.iloc[-1]:.3f}, mean cosine of W {log.mean_cosine.iloc[-1]:.3f}, effective rank of W "
      f"{log.effective_rank.iloc[-1]:.1f}")
log.tail()

# %% [markdown]
# ## The monitor
# With `monitor_every`, the slides were embedded every few epochs (a fifth of the final views) to record the linear
# probe on the monitor task (fair protocol) and the diagnostics of the slide embeddings, among them how well the centre can be
# predicted (the shortcut indicator).

# %%
if monitor_every:
    monitor = pd.read_csv(Path(out_dir) / "monitor.csv")
    diagnostics = monitor[monitor["kind"] == "diagnostics"].dropna(axis=1, how="all")
    fair = monitor[(monitor["kind"] == "probe") & (monitor["protocol"] == "fair")]
    probe = fair.groupby("epoch")["auc"].mean().rename("probe_auc").reset_index()
    over_training = diagnostics.merge(probe, on="epoch")
    fig = training_curves({Path(out_dir).name: over_training},
                          columns=("probe_auc", "alignment", "uniformity", "effective_rank", "centre_accuracy"))
    save_figure(fig, f"{Path(out_dir).name}_monitor", figures_dir)
    over_training
