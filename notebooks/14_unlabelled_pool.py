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
# # More unlabelled slides for SSL
#
# **In this run:** {glue:md}`finding`
#
# An experiment the paper does not have: the paper trained Giga-SSL on about 11,000 TCGA slides and probed on about
# 1,000 labelled ones per task. Here Giga-SSL is trained on the labelled cohort plus a growing part of the unlabelled
# pool (slides with no label, of the labelled slides' size, used by SSL only), and probed on the same labelled slides
# and splits. AverageMIL uses no SSL slide: its AUC is a constant reference. The point without pool is `ssl_ref`.
#
# Two regimes, so that the pool is the one factor each changes: **same steps** (the ablation regime's 180: a larger
# pool means fewer passes over each slide; do more slides help at a given compute?) and **same epochs** (the
# ablation regime's 60: a larger pool means more steps and about the same passes over each slide, not exactly:
# an epoch drops the last incomplete batch, so the passes are given beside each point). Each regime holds one
# thing fixed and not the other: at the same steps the pool is the only change, at a given compute; at the same
# epochs a bigger pool also trains more steps (420 against 180 for 120 pool slides), so a gain there is the pool and
# the longer training together. A run trains whole epochs, so a step count that an epoch does not divide is rounded
# up (the table gives the steps run). The bank's draws and the
# views sample their tiles without replacement (`BankConfig.replacement`, `MapConfig.replacement` off in the demo),
# so the two views of a slide do not share tiles by construction.

# %% tags=["parameters"]
profile = "demo"
run_dir = "runs/demo"
out_dir = "runs/demo/unlabelled_pool"
figures_dir = "figures"
tasks = None
bank = "bank_moco_shared"
no_pool = "ssl_ref"  # the run without pool slides (same steps)

# %%
from gigassl.config import get_profile
from gigassl.book.experiments import unlabelled_pool
from gigassl.book.figures import finding, pool_curves, save_figures, save_table
from gigassl.book.results import pairs_finding

config = get_profile(profile)
result = unlabelled_pool(config, run_dir, out_dir, tasks=tasks, bank=bank, no_pool=no_pool)
save_table(result.summary, "unlabelled_pool", figures_dir)

# %% [markdown]
# Probe AUC of Giga-SSL against the number of unlabelled slides added to the labelled cohort for SSL, one panel per
# regime (band: the std over splits); the dashed lines are AverageMIL on the same splits.

# %%
save_figures(pool_curves(result.summary), "unlabelled_pool", figures_dir)

# %% [markdown]
# In each regime, the largest pool minus no pool, and the largest pool minus AverageMIL, paired over splits, with the
# results page's interval (the corrected resampled t-interval of Nadeau & Bengio, which accounts for the overlap of
# the random splits; the summary's per-method intervals above are bootstraps over splits).

# %%
save_table(result.gain, "unlabelled_pool_paired", figures_dir)

# %%
finding(pairs_finding(result.gain))
