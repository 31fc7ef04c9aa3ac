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
# # Linear probes against MIL baselines: the Table 2 analogue
#
# **In this run:** {glue:md}`finding`
#
# Sec. 4.2-4.3: a logistic regression on frozen slide embeddings over the profile's splits (case-grouped,
# stratified), with 100% and 25% of the training labels, against AverageMIL (the mean of the plain tile
# embeddings, probed the same way) and DeepMIL (gated attention MIL trained from scratch on the tile embeddings).
#
# Two probe protocols, side by side:
# - **paper**: the paper's, exactly: C = 10, class-balanced; Giga-SSL embeddings L2-normalised, AverageMIL
#   embeddings standard-scaled (Sec. 4.2 "Default settings").
# - **fair**: one protocol for every representation: the preprocessing (l2, standard, l2 then standard) and C
#   (0.01 to 1000) chosen by a 3-fold cross-validation on the training slides of each split (grouped by case),
#   never on its test slides (`gigassl.evaluation.probe.TunedLinearProbe`).
#
# Every comparison is paired (both methods on the same splits): the mean of the per-split differences, a 95%
# bootstrap interval over splits, and a verdict that is "undecided" when the interval contains 0.

# %% tags=["parameters"]
profile = "demo"
run_dir = "runs/demo"
out_dir = "runs/demo/linear_probe"
figures_dir = "figures"
tasks = None  # None: every label column of the manifest
train = "ssl_full"
bank = "bank_moco_shared"
heat_task = "nsclc_like"  # the binary task of the heat maps
confusion_task = "rcc_like"  # the task whose confusion matrix is drawn (the three-class one)

# %%
import pandas as pd

from gigassl.book.analyses import heat_map_values, main_predictions
from gigassl.book.charts import confusion_matrices, roc_curves, split_strips
from gigassl.config import get_profile
from gigassl.book.experiments import calibration_table, deepmil_finding, run_table2
from gigassl.book.figures import (auc_bars_by_protocol, finding, paired_forest, save_figure, save_figures, save_table,
                                  show_table)
from gigassl.book.plan import DEEPMIL_FEW_TILES, DEEPMIL_VS_AVERAGEMIL, SPEED, table_path
from gigassl.book.results import pairs_finding
from gigassl.book.slideviews import draw_heat_maps
from gigassl.book.stages import cohort_manifest

config = get_profile(profile)
result = run_table2(config, run_dir, out_dir, tasks=tasks, train=train, bank=bank)
save_table(result.table, "table2_linear_probe", figures_dir)

# %%
save_figures(auc_bars_by_protocol(result.table), "table2_linear_probe", figures_dir)

# %% [markdown]
# ## Every split
# The mean hides the spread: below, the AUC of every split of every Table 2 cell (a dot each) with their box, under
# the paper's protocol. Two methods whose dots overlap this much are not told apart by these test sets.

# %%
save_figure(split_strips(result.splits, protocol="paper"), "table2_splits", figures_dir)

# %% [markdown]
# ## ROC curves and the confusion matrix
# The test slides of every split, pooled: ROC curves of Giga-SSL and AverageMIL at 100% of the labels (paper
# protocol; a three-class task shows its mean one-vs-rest curve), and the confusion matrix of the three-class task
# (rows: the true class, shaded by the share of its slides; numbers: slides).

# %%
scores = main_predictions(config, run_dir, tasks=tasks, train=train, bank=bank)
save_figure(roc_curves(scores), "table2_roc", figures_dir)
save_figure(confusion_matrices(scores, confusion_task), "table2_confusion", figures_dir)

# %% [markdown]
# ## Where each model looks: heat maps
# Two test slides of the first split (one of each class of the binary task below), with the models trained on that
# split's training slides at 100% of the labels: DeepMIL's attention weight on each tile, and for Giga-SSL the
# linear probe's score of the embedding of a view made of that tile alone (red: towards the second class, blue:
# towards the first). Attention says where DeepMIL pools from; the Giga-SSL map says which tiles, on their own,
# carry the class the probe learnt.

# %%
heat = heat_map_values(config, run_dir, heat_task, train=train, bank=bank)
save_figure(draw_heat_maps(heat, cohort_manifest(run_dir), config.tile.thumbnail_px), "heat_maps", figures_dir)

# %% [markdown]
# ## Paired differences
# Giga-SSL minus each baseline, per task, budget and protocol (DeepMIL runs on the profile's DeepMIL splits, the
# first of the probe's splits; its differences use those splits only).

# %%
save_table(result.pairs.drop(columns="comparison"), "table2_paired", figures_dir)
save_figure(paired_forest(result.pairs, title="Giga-SSL minus the baselines"), "table2_paired", figures_dir)

# %% [markdown]
# ## What each protocol chose
# The fair protocol's choice of preprocessing and C on each split (count of splits).

# %%
save_table(result.choices, "table2_fair_choices", figures_dir)

# %% [markdown]
# ## DeepMIL against AverageMIL on the demo's tasks
# The same paired differences on the cohort's tasks. The synthetic tasks put their label in a proportion of many
# small regions of a slide (half of the tumour units carry the class morphology, `gigassl.cohorts.synth`): the mean of the
# tile embeddings is the natural estimator of such a proportion, attention pooling weighs a few tiles, and each
# split trains DeepMIL's gated attention on about 70 bags. Where DeepMIL trails AverageMIL below, the few-tile check
# on the DeepMIL page says whether the baseline trains at all (its learning curves are there too).

# %%
save_table(result.deepmil_vs_averagemil, DEEPMIL_VS_AVERAGEMIL, figures_dir)
few_tiles = pd.read_csv(table_path(figures_dir, DEEPMIL_FEW_TILES))  # made by the DeepMIL page
print(deepmil_finding(few_tiles, result.deepmil_vs_averagemil))

# %% [markdown]
# ## Calibration of the synthetic cohort
# Before any comparison, the generator's difficulty was set so that the AverageMIL baseline alone lands between
# AUC 0.65 and 0.92 on every task at 100% of the labels (tasks every method solves perfectly teach nothing). The
# calibration runs (AverageMIL only, recorded in `data/calibration/averagemil.csv`) raised the effect size of
# `rcc_like` once; the cohort was then frozen. The check below is recomputed by every run (it applies to the
# synthetic cohort; on your own slides it only reports).

# %%
show_table(calibration_table())

# %%
save_table(result.calibration, "calibration", figures_dir)

# %% [markdown]
# ## Time
# CPU-seconds of fitting and predicting over all splits of one task at 100% of the labels, per split (the paper:
# 1.25 CPU-seconds for the linear probe on 10 splits of BRCA, 150 GPU-minutes for attention MIL).

# %%
save_table(result.speed, SPEED, figures_dir)

# %%
finding(pairs_finding(result.pairs))
