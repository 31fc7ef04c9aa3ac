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
# # Tiny training sets: the Fig. 2 analogue
#
# **In this run:** {glue:md}`finding`
#
# Sec. 4.3, "Tiny datasets": the training part of every split is cut to exactly N slides (stratified, whole cases;
# the test part untouched), and Giga-SSL's linear probe is compared with DeepMIL trained from scratch. The paper
# (N = 250, 100, 50) finds the gain of Giga-SSL grows as N shrinks: +5.1 AUC points at 100 WSI, +6.3 at 50. The
# profile's sizes are scaled to the cohort.

# %% tags=["parameters"]
profile = "demo"
run_dir = "runs/demo"
out_dir = "runs/demo/tiny_datasets"
figures_dir = "figures"
tasks = None
train = "ssl_full"

# %%
from gigassl.book.charts import plot_fig2
from gigassl.config import get_profile
from gigassl.book.experiments import tiny_datasets
from gigassl.book.figures import finding, gain_curves, save_figure, save_figures, save_table, show_table
from gigassl.book.results import pairs_finding

config = get_profile(profile)
result = tiny_datasets(config, run_dir, out_dir, tasks=tasks, train=train)
save_table(result.gains, "fig2_tiny_datasets", figures_dir)

# %% [markdown]
# The gain of Giga-SSL over DeepMIL per training size (paired over the DeepMIL splits), per task and averaged over
# the tasks as the paper draws it; the band is the 95% paired bootstrap interval.

# %%
save_figures(gain_curves(result.gains), "fig2_tiny_datasets", figures_dir)
show_table(result.claims)

# %% [markdown]
# Fig. 2 as the paper draws it: the AUC of both methods against the size of the training set (mean over the tasks;
# band: the std over splits), and the gain beneath (each task with its paired interval, and their mean).

# %%
save_figure(plot_fig2(result.splits, result.gains, protocol="fair"), "fig2_curves", figures_dir)

# %%
finding(pairs_finding(result.gains))
