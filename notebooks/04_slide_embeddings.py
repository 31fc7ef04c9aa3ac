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
bank = "bank_moco_shared"  # execution whose plain tile embeddings the slides are embedded from

# %%
from pathlib import Path

from gigassl.config import get_profile
from gigassl.figures import save_figure, save_table, slide_map
from gigassl.stages import embedding_reproducibility, run_embeddings, standardized_average

config = get_profile(profile)
embeddings = run_embeddings(run_dir, train)
print(embeddings.describe())

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
