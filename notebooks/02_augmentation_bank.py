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
# **In this run:** {glue:md}`finding`
#
# Sec. 3.2, "Freezing the tile encoder": per slide, A augmentation draws; for each, N tiles sampled (with
# replacement in the authors' code and the paper profile; without, while the slide holds N tiles, in the demo:
# `BankConfig.replacement`) and transformed by that one draw (`shared`, the paper's method), or each by its own draw (`independent`, the NS
# ablation of Table 3); all embedded by the frozen tile embedder, plus the plain embedding of every tissue tile.
# `encoder` is `moco` (the tile embedder of the previous page) or `imagenet` (EfficientNet-Lite0 with ImageNet
# weights, the Giga-SSLim ablation; the paper's Giga-SSLim used an ImageNet ResNet18, whose weights no package
# ships offline).

# %% tags=["parameters"]
profile = "demo"
run_dir = "runs/demo"
out_dir = "runs/demo/bank_moco_shared"
figures_dir = "figures"
encoder = "moco"  # page parameter: the tile embedder, moco | imagenet (gigassl.book.stages.bank_encoder)
pool = False  # page parameter: True: also the slides of the unlabelled pool (SSL only)
plain_from = None  # page parameter: under run_dir, a bank of the same encoder whose plain embeddings are reused
first_slide = 0  # page parameter: row of the manifest whose tiles are drawn
tiles_shown = 8  # page parameter: tiles drawn
# AugmentConfig fields (gigassl.config), by their names; None: the profile's value (gigassl.config.override)
mode = None  # shared (the paper) | independent (NS, Table 3)

# %%
from pathlib import Path

from gigassl.config import get_profile
from gigassl.book.figures import augmentation_draws, finding, save_figure, save_table
from gigassl.book.plan import COORDS
from gigassl.book.stages import bank_finding, bank_summary, cohort_manifest, make_bank

config = get_profile(profile)
report = make_bank(config, run_dir, out_dir, encoder=encoder, mode=mode, pool=pool, plain_from=plain_from)
print(report.summary())

# %%
summary = bank_summary(out_dir, report)
save_table(summary, f"{Path(out_dir).name}_summary", figures_dir)

# %% [markdown]
# ## One shared draw against independent draws, on the same tiles
# Row 1: eight tiles of a slide. Row 2: one draw applied to all of them (the colour, crop, flip and blur are the
# same for every tile). Row 3: every tile with its own draw.

# %%
slide = cohort_manifest(run_dir).iloc[first_slide]
fig = augmentation_draws(slide.path, Path(run_dir) / COORDS / f"{slide.slide_id}.h5", config.augment,
                         tiles=tiles_shown)
save_figure(fig, f"{Path(out_dir).name}_augmentations", figures_dir)

# %%
finding(bank_finding(summary))
