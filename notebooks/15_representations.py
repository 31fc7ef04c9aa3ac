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
# # What each representation learnt: label-free diagnostics
#
# **In this run:** {glue:md}`finding`
#
# For the slide embeddings of every model of the plan and for AverageMIL, on the labelled slides
# (`gigassl.evaluation.diagnostics`, no task label involved):
#
# - **alignment** (Wang & Isola 2020): mean squared distance between two independent embeddings of the same slide
#   (Giga-SSL: two sets of R views drawn with different seeds; AverageMIL: the means of two disjoint halves of its
#   tiles). 0: perfectly stable.
# - **uniformity** (Wang & Isola 2020): how evenly the slides spread on the sphere; 0 when collapsed, about -4 at
#   best.
# - **mean cosine** between different slides: near 1, every slide points the same way (collapse, or a strong common
#   component that L2 normalisation keeps and standard scaling removes).
# - **effective rank** (RankMe): how many directions carry the slides; 1 when collapsed.
# - **centre accuracy**: how well a cross-validated logistic regression (folds grouped by case) predicts the centre
#   from the embedding, against chance = 1 / centres: the stain and scanner shortcut of Sec. 5.

# %% tags=["parameters"]
profile = "demo"
run_dir = "runs/demo"
out_dir = "runs/demo/representations"
figures_dir = "figures"
bank = "bank_moco_shared"
runs = ["ssl_full", "ssl_ref", "ssl_no_slide_aug", "ssl_ns", "ssl_no_tile_aug", "ssl_imagenet", "ssl_imagenet_ns",
        "ssl_T2", "ssl_T10", "ssl_T20", "ssl_attention", "ssl_independent_centres", "ssl_bn_joint", "ssl_random_init"]

# %%
from gigassl.config import get_profile
from gigassl.evaluation.diagnostics import reading
from gigassl.book.experiments import representations
from gigassl.book.figures import diagnostics_bars, finding, save_figure, save_table, show_table
from gigassl.book.plan import REPRESENTATIONS
from gigassl.book.results import representations_finding

config = get_profile(profile)
table = representations(config, run_dir, runs, bank=bank)
save_table(table, REPRESENTATIONS, figures_dir)

# %%
save_figure(diagnostics_bars(table), "representations", figures_dir)

# %% [markdown]
# How to read each column:

# %%
show_table(reading())

# %%
finding(representations_finding(table))
