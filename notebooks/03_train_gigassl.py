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
# temperature 0.05) pull the two views of a slide together. After training, every slide is embedded as the
# L2-normalised mean of R views of T plain tiles (Sec. 4.2). The parameters below select the ablations.

# %% tags=["parameters"]
profile = "demo"
run_dir = "runs/demo"
out_dir = "runs/demo/ssl_full"
figures_dir = "figures"
bank = "bank_moco_shared"  # execution whose bank to train on
tiles_per_view = None  # T; None: the profile's (paper: 5)
aggregator = "sparseconv"  # sparseconv | attention | mean
slide_aug = True  # False: the "w/o slide-aug" ablation
monitor = False  # run the linear probe on the NSCLC analogue every few epochs (Fig. 3C)
monitor_task = "nsclc_like"
exclude_probe_centres = False  # True: train only on centres absent from the probe slides (Table 4)

# %%
import dataclasses
from pathlib import Path

import pandas as pd

from gigassl.config import get_profile
from gigassl.embed import embed_slides, probe_monitor
from gigassl.train import train
from gigassl.figures import save_figure, training_curves
from gigassl.splits import centre_holdout

config = get_profile(profile)
train_config = dataclasses.replace(
    config.train,
    tiles_per_view=tiles_per_view or config.train.tiles_per_view,
    aggregator=aggregator,
    monitor_every=max(1, config.train.epochs // 6) if monitor else 0,
    maps=dataclasses.replace(config.train.maps, slide_aug=slide_aug),
)
bank_dir = Path(run_dir) / bank
manifest = pd.read_csv(Path(run_dir) / "cohort" / "manifest.csv")
slides = None
if exclude_probe_centres:
    probe_centres = centre_holdout(manifest, seed=config.probe.seed)
    slides = manifest.loc[~manifest["center"].isin(probe_centres), "slide_id"].tolist()
    print(f"training on {len(slides)} slides of centres {sorted(set(manifest['center']) - set(probe_centres))}; "
          f"probe centres {probe_centres} excluded")
    train_config = dataclasses.replace(train_config, batch_size=min(train_config.batch_size, len(slides)))
encoder_weights = None
if bank.startswith("bank_moco"):
    encoder_weights = str(Path(run_dir) / "tile_encoder" / "moco" / "checkpoint.pt")
watch = None
if monitor:
    watch = probe_monitor(manifest, [monitor_task], train_config.maps, views=max(1, config.embed.views // 5),
                          tiles=train_config.tiles_per_view, probe=config.probe, seed=config.embed.seed,
                          device=train_config.device)


checkpoint = train(bank_dir, out_dir, train_config, encoder_weights=encoder_weights, slide_ids=slides,
                   monitor=watch, progress=False)
embed_config = dataclasses.replace(config.embed, tiles_per_view=train_config.tiles_per_view)
embeddings = embed_slides(bank_dir, checkpoint, Path(out_dir) / "embeddings.h5", embed_config, progress=False)
print(f"checkpoint {checkpoint}\nembeddings {embeddings}")

# %%
import math

log = pd.read_csv(Path(out_dir) / "log.csv")
fig = training_curves({Path(out_dir).name: log}, columns=("loss", "collapse", "lr"))
chance = math.log(2 * train_config.batch_size - 1)  # NT-Xent when the two views of a slide are no closer than others
fig.axes[0].axhline(chance, color="grey", ls="--", lw=1, label="log(2B - 1)")
fig.axes[1].axhline(1 / math.sqrt(256), color="grey", ls="--", lw=1, label="1/sqrt(256)")
save_figure(fig, f"{Path(out_dir).name}_curves", figures_dir)
print(f"last epoch: loss {log.loss.iloc[-1]:.3f} (log(2B - 1) = {chance:.3f}: a loss near it means the views of a "
      f"slide are no closer than those of other slides); collapse indicator {log.collapse.iloc[-1]:.4f} "
      f"(0: collapsed; 1/sqrt(256) = 0.0625: spread)")
log.tail()

# %%
if monitor:
    display(pd.read_csv(Path(out_dir) / "monitor.csv"))
