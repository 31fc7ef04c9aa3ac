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
# # Slide embeddings: R-view inference
#
# One embedding per slide (Sec. 4.2 "Default settings"): R views of T tiles sampled from the plain (non-augmented)
# tile embeddings, each embedded by the trained aggregator, averaged and L2-normalised (written by the training
# run with `gigassl embed`; embedded once more here to show that the same seed gives the same embeddings). Below,
# the first two principal components of the Giga-SSL embeddings and of the AverageMIL embeddings (mean of the plain
# tile embeddings), coloured by each label and by centre.

# %% tags=["parameters"]
profile = "demo"
run_dir = "runs/demo"
out_dir = "runs/demo/slide_embeddings"
figures_dir = "figures"
train = "ssl_full"  # the training run to embed with

# %%
import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from gigassl import io
from gigassl.baselines import average_embeddings
from gigassl.config import get_profile
from gigassl.embed import embed_slides
from gigassl.figures import embedding_map, pca_2d, save_figure, save_table
from gigassl.manifest import task_columns

config = get_profile(profile)
run = Path(run_dir) / train
bank = Path(run_dir) / "bank_moco_shared"
path = run / "embeddings.h5"
ids, emb, attrs = io.read_embeddings(path)
manifest = pd.read_csv(Path(run_dir) / "cohort" / "manifest.csv").set_index("slide_id").loc[ids].reset_index()
print(f"{len(ids)} slides, {emb.shape[1]}-d, R = {attrs['views']} views of T = {attrs['tiles_per_view']} tiles; "
      f"row norms {np.linalg.norm(emb, axis=1).min():.4f}-{np.linalg.norm(emb, axis=1).max():.4f}")

# %%
columns = task_columns(manifest) + ["center"]
fig = embedding_map(pca_2d(emb), manifest, columns, title="Giga-SSL slide embeddings (PCA)")
save_figure(fig, "slide_embeddings_map", figures_dir)

# %%
avg_ids, avg = average_embeddings(bank, ids)
avg = (avg - avg.mean(0)) / (avg.std(0) + 1e-8)
fig = embedding_map(pca_2d(avg), manifest, columns, title="AverageMIL embeddings, standard-scaled (PCA)")
save_figure(fig, "average_embeddings_map", figures_dir)

# %%
again = dataclasses.replace(config.embed, views=int(attrs["views"]), tiles_per_view=int(attrs["tiles_per_view"]),
                            seed=int(attrs["seed"]))
same = io.read_embeddings(embed_slides(bank, run / "checkpoint.pt", Path(out_dir) / "again.h5", again,
                                       progress=False, slide_ids=ids))[1]  # the same slides as the training run's
table = pd.DataFrame([{"slides": len(ids), "dimension": emb.shape[1], "views R": attrs["views"],
                       "tiles per view T": attrs["tiles_per_view"],
                       "same seed, same embeddings (bit for bit on a CPU)": bool(np.array_equal(same, emb)),
                       "largest difference": float(np.abs(same - emb).max()),
                       "size of the embedding file (kB)": round(path.stat().st_size / 1024, 1)}])
save_table(table, "slide_embeddings_summary", figures_dir)
