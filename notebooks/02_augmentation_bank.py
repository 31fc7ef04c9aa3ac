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
# # The bank of augmented tile embeddings
#
# Sec. 3.2, "Freezing the tile encoder": per slide, A augmentation draws; for each, N tiles sampled with replacement
# and transformed by that one draw (`shared`, the paper's method), or each by its own draw (`independent`, the NS
# ablation of Table 3); all embedded by the frozen tile embedder, plus the plain embedding of every tissue tile.
# `encoder` is `moco` (the tile embedder of the previous page) or `imagenet` (EfficientNet-Lite0 with ImageNet
# weights, the Giga-SSLim ablation; the paper's Giga-SSLim used an ImageNet ResNet18, whose weights no package
# ships offline).

# %% tags=["parameters"]
profile = "demo"
run_dir = "runs/demo"
out_dir = "runs/demo/bank_moco_shared"
figures_dir = "figures"
encoder = "moco"  # moco | imagenet
mode = "shared"  # shared | independent
pool = False  # True: also the slides of the unlabelled pool (SSL only)
plain_from = None  # under run_dir: a bank of the same encoder whose plain embeddings are reused

# %%
import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from gigassl import io
from gigassl.augment import TileAugmentation
from gigassl.bank import build_bank
from gigassl.config import get_profile
from gigassl.figures import save_figure, save_table, tile_gallery
from gigassl.manifest import labelled_ids
from gigassl.slides import read_tiles

config = get_profile(profile)
cohort = Path(run_dir) / "cohort"
if encoder == "moco":
    encoder_config = dataclasses.replace(config.encoder, name="resnet18",
                                         weights=str(Path(run_dir) / "tile_encoder" / "moco" / "checkpoint.pt"))
else:
    encoder_config = dataclasses.replace(config.encoder, name="efficientnet_lite0", weights=None)
augment = dataclasses.replace(config.augment, mode=mode)
manifest = pd.read_csv(cohort / "manifest.csv", dtype={"slide_id": str})
report = build_bank(cohort / "manifest.csv", cohort / "coords", out_dir, config.bank, encoder_config, augment,
                    progress=False, slide_ids=None if pool else labelled_ids(manifest),
                    plain_from=plain_from and Path(run_dir) / plain_from)
print(report.summary())

# %%
bank_files = sorted(Path(out_dir).glob("*.h5"))
first = io.read_bank(bank_files[0])
summary = pd.DataFrame([{"slides": len(bank_files), "draws A": first.features.shape[0],
                         "tiles per draw N": first.features.shape[1], "feature dim F": first.features.shape[2],
                         "encoder": first.attrs["encoder"], "mode": first.attrs["augmentation_mode"],
                         "failures": len(report.failed)}])
save_table(summary, f"{Path(out_dir).name}_summary", figures_dir)

# %% [markdown]
# ## One shared draw against independent draws, on the same tiles
# Row 1: eight tiles of a slide. Row 2: one draw applied to all of them (the colour, crop, flip and blur are the
# same for every tile). Row 3: every tile with its own draw.

# %%
slide = manifest.iloc[0]
coords, attrs = io.read_coords(cohort / "coords" / f"{slide.slide_id}.h5")
tiles = read_tiles(slide.path, coords[:8], int(attrs["patch_size_level0"]), int(attrs["patch_size"]))
x = torch.from_numpy(tiles).permute(0, 3, 1, 2).float() / 255
aug = TileAugmentation(config.augment, out_px=tiles.shape[1])
shared = aug(x, torch.Generator().manual_seed(0), shared=True)
independent = aug(x, torch.Generator().manual_seed(0), shared=False)
show = lambda t: t.permute(0, 2, 3, 1).numpy()  # noqa: E731
fig = tile_gallery({"tiles": tiles, "one shared draw": show(shared), "independent draws": show(independent)})
save_figure(fig, f"{Path(out_dir).name}_augmentations", figures_dir)
