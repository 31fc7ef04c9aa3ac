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

import pandas as pd

from gigassl.config import get_profile
from gigassl.figures import save_figure, save_table, thumbnails
from gigassl.manifest import read_manifest, task_columns
from gigassl.synth import synthesize
from gigassl.tiling import tile_cohort

config = get_profile(profile)
out = Path(out_dir)
if manifest is None:
    manifest = synthesize(out / "synthetic", config.synth, progress=False)
report = tile_cohort(manifest, out / "coords", config.tile, progress=False)
print(report.summary())
frame = read_manifest(manifest)
frame.to_csv(out / "manifest.csv", index=False)  # the manifest every later notebook reads (absolute paths)

# %% [markdown]
# ## Thumbnails and tile grids
# Green squares are the kept tiles (at least the profile's `min_tissue` fraction of tissue).

# %%
picks = frame.groupby("center").head(1).head(show)["slide_id"].tolist()
fig = thumbnails([out / "coords" / "thumbnails" / f"{s}.png" for s in picks],
                 [f"{s} ({frame.set_index('slide_id').loc[s, 'center']})" for s in picks])
save_figure(fig, "cohort_thumbnails", figures_dir)

# %% [markdown]
# ## Labels and centres

# %%
from IPython.display import display

from gigassl import io

tiles = {s: len(io.read_coords(out / "coords" / f"{s}.h5")[0]) for s in frame["slide_id"] if s not in report.failed}
rows = [{"what": "slides", "value": len(frame)}, {"what": "cases", "value": frame["case_id"].nunique()},
        {"what": "centres", "value": frame["center"].nunique() if "center" in frame else 0},
        {"what": "tiles per slide (mean)", "value": round(sum(tiles.values()) / max(1, len(tiles)), 1)},
        {"what": "slides that failed tiling", "value": len(report.failed)}]
for task in task_columns(frame):
    for label, count in frame[task].value_counts().items():
        rows.append({"what": f"{task} = {label}", "value": int(count)})
counts = pd.DataFrame(rows)
save_table(counts, "cohort_counts", figures_dir)

# %%
if "center" in frame:
    by_centre = pd.crosstab(frame["center"], [frame[t] for t in task_columns(frame)[:1]])
    by_centre["slides"] = frame["center"].value_counts().sort_index()
    display(by_centre)
