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
# **In this run:** {glue:md}`finding`
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
tissue_slide = None  # the slide whose tissue detection is drawn; None: the first with an artefact
gallery_tiles = 8  # tiles per row of the galleries

# %%
from pathlib import Path


from gigassl.config import get_profile
from gigassl.book.figures import cohort_thumbnails, finding, save_figure, save_figures, save_table, show_table
from gigassl.book.slideviews import galleries, tissue_picture
from gigassl.book.stages import cohort_counts, cohort_finding, example_slide, make_cohort, slides_by_centre

config = get_profile(profile)
frame, report = make_cohort(config, out_dir, manifest)  # writes out_dir/manifest.csv, which every later page reads
print(report.summary())

# %% [markdown]
# ## Thumbnails and tile grids
# Green squares are the kept tiles (at least the profile's `min_tissue` fraction of tissue).

# %%
save_figure(cohort_thumbnails(frame, Path(out_dir) / "coords" / "thumbnails", show), "cohort_thumbnails", figures_dir)

# %% [markdown]
# ## What tiling keeps and leaves out
# One slide with an artefact: its thumbnail; what the tissue detector saw (grey: glass, below the saturation
# threshold; red: pen ink and near-black pixels, removed before the tissue mask; green: the tissue mask); and the
# tiles kept. Look at the artefact: the mask is closed and its holes filled after the ink is removed, so a thin
# stroke across tissue is filled back in and the tiles on it are kept; a tissue fold is tissue to the detector.

# %%
slide = example_slide(config, frame, tissue_slide)
fig = tissue_picture(slide.path, Path(out_dir) / "coords" / f"{slide.slide_id}.h5", config.tile.thumbnail_px)
save_figure(fig, "cohort_tissue", figures_dir)

# %% [markdown]
# ## The classes and the centres, tile by tile
# Tiles of two slides of each class of each task, then of each centre: the morphology a class carries is subtle in
# any one tile (it is a proportion over the slide), while a centre's stain and scanner signature is shared by all
# the tiles of its slides, which is the shortcut of Sec. 5.

# %%
save_figures(galleries(frame, Path(out_dir) / "coords", gallery_tiles), "cohort_gallery", figures_dir)

# %% [markdown]
# ## Labels and centres

# %%
counts = cohort_counts(frame, Path(out_dir) / "coords", report.failed)
save_table(counts, "cohort_counts", figures_dir)

# %%
show_table(slides_by_centre(frame))

# %%
finding(cohort_finding(counts))
