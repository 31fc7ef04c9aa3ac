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
# # The cohort: slides, labels, tiles
#
# The embedded default is a synthetic cohort of real pyramidal TIFF slides, written by `gigassl synth` and read
# back through OpenSlide like any scanner's file; your own slides go through the same code (set `manifest`).
# Each slide comes from a centre with its own stain and scanner signature, and carries three labels modelled on the
# paper's tasks (Table 1): `nsclc_like` (balanced binary), `rcc_like` (3 classes) and `brca_like` (about 80/20).
# Tiles are laid on the tissue at the profile's resolution (Sec. 4.1: non-overlapping tiles at 10x).

# %% tags=["parameters"]
profile = "demo"
run_dir = "runs/demo"
out_dir = "runs/demo/cohort"
figures_dir = "figures"
manifest = None  # None: synthesise the profile's cohort; else the path of your manifest.csv
show = 6  # thumbnails to draw

# %%
from pathlib import Path

from IPython.display import display

from gigassl.config import get_profile
from gigassl.figures import cohort_thumbnails, save_figure, save_table
from gigassl.stages import cohort_counts, make_cohort, slides_by_centre

config = get_profile(profile)
frame, report = make_cohort(config, out_dir, manifest)  # writes out_dir/manifest.csv, which every later page reads
print(report.summary())

# %% [markdown]
# ## Thumbnails and tile grids
# Green squares are the kept tiles (at least the profile's `min_tissue` fraction of tissue).

# %%
save_figure(cohort_thumbnails(frame, Path(out_dir) / "coords" / "thumbnails", show), "cohort_thumbnails", figures_dir)

# %% [markdown]
# ## Labels and centres

# %%
save_table(cohort_counts(frame, Path(out_dir) / "coords", report.failed), "cohort_counts", figures_dir)

# %%
display(slides_by_centre(frame))
