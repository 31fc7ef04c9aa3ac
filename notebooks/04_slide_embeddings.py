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
# **In this run:** {glue:md}`finding`
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
bank = "bank_moco_shared"  # execution whose plain tile embeddings the slides are embedded from
retrieval_k = [1, 5, 10]  # neighbours counted by the retrieval precision
queries = 3  # query slides shown with their neighbours
views_drawn = 3  # views of one slide drawn step by step
interactive_colour = "center"  # the column that colours the interactive map

# %%
from pathlib import Path

from gigassl.book.analyses import retrieval
from gigassl.book.atlas import interactive_map, umap_2d, umap_figure
from gigassl.book.charts import neighbours_gallery, retrieval_bars
from gigassl.config import get_profile
from gigassl.book.figures import finding, save_figure, save_html, save_table, slide_map
from gigassl.manifest import task_columns
from gigassl.book.plan import COORDS
from gigassl.book.results import retrieval_finding
from gigassl.book.slideviews import run_views
from gigassl.book.stages import embedding_reproducibility, run_embeddings, standardized_average

config = get_profile(profile)
embeddings = run_embeddings(run_dir, train)
print(embeddings.describe())

# %% [markdown]
# ## A view, step by step (Sec. 3.1, Steps 3-4)
# What the aggregator sees during training, for one slide and three views: the T tiles one view samples from one
# augmentation draw of the bank, drawn on the thumbnail; the same tiles placed on the sparse map (their level-0
# coordinates divided by the map's downsampling); and the map after the slide-level augmentation (a rotation,
# flips and a per-axis scale), which is what the sparse CNN convolves.

# %%
save_figure(run_views(run_dir, train, bank, draws=views_drawn, thumbnail_px=config.tile.thumbnail_px), "views",
            figures_dir)

# %% [markdown]
# ## The slide embeddings in two dimensions

# %%
fig = slide_map(embeddings.matrix, embeddings.manifest, title="Giga-SSL slide embeddings (PCA)")
save_figure(fig, "slide_embeddings_map", figures_dir)

# %%
fig = slide_map(standardized_average(Path(run_dir) / bank, embeddings.ids), embeddings.manifest,
                title="AverageMIL embeddings, standard-scaled (PCA)")
save_figure(fig, "average_embeddings_map", figures_dir)

# %%
table = embedding_reproducibility(config, run_dir, train, bank, out_dir, embeddings)  # the same slides, seed, R, T
save_table(table, "slide_embeddings_summary", figures_dir)

# %% [markdown]
# ## UMAP, and an interactive map
# The same slide embeddings in UMAP (cosine distance, seeded), coloured by each label and by centre; then one map
# to explore: hover a slide to see its id, its labels, its centre and its thumbnail (colour: the parameter
# `interactive_colour`).

# %%
points = umap_2d(embeddings.matrix, seed=config.embed.seed)
save_figure(umap_figure(points, embeddings.manifest, title="Giga-SSL slide embeddings (UMAP)"), "slide_embeddings_umap",
            figures_dir)
save_html(interactive_map(points, embeddings.manifest, Path(run_dir) / COORDS / "thumbnails",
                          interactive_colour, title="Giga-SSL slide embeddings (UMAP): hover a slide"),
          "slide_embeddings_interactive", figures_dir)

# %% [markdown]
# ## Slide retrieval
# The everyday use of slide embeddings: find the slides most like a query. For each slide, the share of its k
# nearest neighbours (cosine) that share its label, or its centre, in Giga-SSL and in AverageMIL space, against
# the share expected by chance (dashed). Retrieval by centre measures how much of the similarity is the centre's
# stain and scanner rather than the tissue.

# %%
found = retrieval(run_dir, ks=retrieval_k, queries=queries, train=train, bank=bank)
save_table(found.precision, "retrieval_precision", figures_dir)
save_figure(retrieval_bars(found.precision), "retrieval_precision", figures_dir)

# %% [markdown]
# A few queries (first column) and their nearest slides in each space, titled with their labels and centre.

# %%
fig = neighbours_gallery(found.neighbours, Path(run_dir) / COORDS / "thumbnails",
                         [*task_columns(embeddings.manifest), "center"])
save_figure(fig, "retrieval_neighbours", figures_dir)

# %%
finding(embeddings.describe(), retrieval_finding(found.precision))
