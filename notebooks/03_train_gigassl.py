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
# **In this run:** {glue:md}`finding`
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
bank = "bank_moco_shared"  # page parameter: the execution whose bank to train on
pool = 0  # page parameter: unlabelled pool slides added to the labelled cohort (None: the whole pool of the bank)
monitor_task = "nsclc_like"  # page parameter: the label column the monitor probes
exclude_probe_centres = False  # page parameter: True: train only on centres absent from the probe slides (Table 4)
encoder_weights = "tile_encoder/moco/checkpoint.pt"  # page parameter: under run_dir, the tile embedder whose layer4
#                                                      starts the aggregator; None for a bank of another encoder
# TrainConfig fields (gigassl.config), by their names; None: the profile's value (gigassl.config.override)
steps = None  # optimizer steps; None: the profile's (none: its epochs decide)
tiles_per_view = None  # T (paper: 5)
aggregator = None  # sparseconv | attention | mean
aggregator_init = None  # tile_embedder (the paper) | random
bn_views = None  # per_view (the authors' code) | joint
schedule_epochs = None  # cosine horizon (the authors': 3000); the profile's none: the training length
slide_aug = None  # TrainConfig.maps.slide_aug; False: the "w/o slide-aug" ablation
monitor_every = None  # every k epochs: probe the monitor task and compute the diagnostics (0: never)

# %%
from pathlib import Path

import pandas as pd

from gigassl.config import get_profile
from gigassl.book.figures import finding, monitor_curves, save_figure, show_table, ssl_curves
from gigassl.book.stages import monitor_over_training, train_ssl, training_finding

config = get_profile(profile)
run = train_ssl(config, run_dir, out_dir, bank, pool=pool, monitor_task=monitor_task,
                exclude_probe_centres=exclude_probe_centres, encoder_weights=encoder_weights, steps=steps,
                tiles_per_view=tiles_per_view, aggregator=aggregator, aggregator_init=aggregator_init,
                bn_views=bn_views, schedule_epochs=schedule_epochs, slide_aug=slide_aug, monitor_every=monitor_every)
print(f"{run.slides}\ncheckpoint {run.checkpoint}\nembeddings {run.embeddings}")

# %% [markdown]
# ## Training curves
# Loss and collapse indicator per epoch, and the label-free diagnostics of each training batch (mean over the
# epoch's steps): the alignment of the two views' projections and their uniformity (Wang & Isola 2020; the
# space of the loss), the mean pairwise cosine and the effective rank of the representations W (the space used
# downstream). A loss at log(2B - 1) means two views of a slide are no closer than views of other slides.

# %%
log = pd.read_csv(Path(out_dir) / "log.csv")
save_figure(ssl_curves(log, Path(out_dir).name, run.config.batch_size), f"{Path(out_dir).name}_curves", figures_dir)
show_table(log.tail())

# %% [markdown]
# ## The monitor
# With `monitor_every`, the slides were embedded every few epochs (a fifth of the final views) to record the linear
# probe on the monitor task (fair protocol) and the diagnostics of the slide embeddings, among them how well the centre can be
# predicted (the shortcut indicator).

# %%
if run.config.monitor_every:
    over_training = monitor_over_training(out_dir)
    save_figure(monitor_curves(over_training, Path(out_dir).name), f"{Path(out_dir).name}_monitor", figures_dir)
    show_table(over_training)

# %%
finding(run.slides, training_finding(log, run.config.batch_size))
