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
# # When can slide-level SSL beat the mean of tiles? A study with known mechanisms
#
# **In this run:** {glue:md}`finding`
#
# The demo's three tasks are diffuse shifts of first moments, for which the mean of tile embeddings is close to a
# sufficient statistic: Giga-SSL's inference (the mean over R views of a function of T tiles) then has AverageMIL as
# its ceiling. This page asks for which kinds of slide-level signal slide-level SSL adds something to the mean, to
# attention MIL, and when it loses (issue #24). Its cohorts are feature-level simulations whose label comes from one
# known mechanism (`gigassl simulate`, `gigassl.cohorts.featsim`): M0 null, M1 diffuse proportion, M2 focal
# presence, M3 heterogeneity at an equal mean, M4 arrangement at an equal composition. The methods run through the
# real commands' functions (`gigassl train` on the features folder then `gigassl embed`; `gigassl train --untrained`
# for the untrained aggregator; AverageMIL; DeepMIL; the oracle, the statistic that made the label), all probed by
# one protocol (a TunedLinearProbe fitted on the 100 training slides, AUC on the cell's own test set;
# `gigassl.book.study`, `gigassl.book.study_analysis`).
#
# The design, its effect sizes (calibrated on the oracle alone) and a prediction per mechanism were committed
# before any method ran; the book runs the design's `book_grid` (one cell: the 6-minute budget, measured and
# written in the file before any run), the full grid is `benchmarks/study.py`'s.

# %% tags=["parameters"]
profile = "demo"
run_dir = "runs/demo"
out_dir = "runs/demo/mechanisms"
figures_dir = "figures"
design = "studies/mechanisms.yml"  # under the project root
grid = "book"  # book: the design's book_grid; full: every cell (the benchmark's hours)
shrink = None  # smoke runs only: {cohort|train|embed|deepmil: field changes} (recorded in each cell's hash)
resamples = 2000  # bootstrap resamples of the test slides (the design's 2,000)
benchmark = "benchmarks/results/study.csv"  # the full grid's recorded table (benchmarks/study.py), when present

# %%
from gigassl.book.figures import finding, glue_text, save_figure, save_figures, save_table, show_table
from gigassl.book.plan import project_root
from gigassl.book.study_page import mechanisms_page, optional_figures, regime_map

root = project_root(run_dir)
page = mechanisms_page(out_dir, root / design, grid, shrink, resamples, root / benchmark)
finding(page.finding())

# %% [markdown]
# ## The design, as committed
#
# Its sha256 below; any change after the first run shows as another hash and a commit.

# %%
glue_text("design_sha256", page.design_sha256)
print(f"sha256 {page.design_sha256}\n")
print(page.design_text)

# %% [markdown]
# ## The regime map
#
# Each cell's AUC (mean over the seeds run) with its 95% interval, a bootstrap of the test slides stratified by
# generator seed (the design's protocol): it holds the sampling of the test slides, the runs fixed. The table also
# gives `seed_sd` (the spread of the runs) and `seed_low`, `seed_high`: a t-interval over the generator seeds (each a
# cohort with its own training set; the SSL seeds averaged inside), empty with one generator seed, as in the book's
# grid. The dashed line is chance.

# %%
save_table(page.table, "mechanisms_auc", figures_dir)
save_figure(regime_map(page.table), "mechanisms_regime_map", figures_dir)

# %% [markdown]
# ## The full grid and the pool-size curves
#
# The full grid's map (6 cells, 3 generator seeds, 2 SSL seeds), read from the benchmark's recorded table when it
# exists (`python benchmarks/study.py`; BENCHMARKS.md gives its command, commit and machine), and the Giga-SSL arms
# that ran at several unlabelled pools (M1 and M3 in the full grid) beside the pool-free methods.

# %%
figures, note = optional_figures(page)
save_figures(figures, "mechanisms", figures_dir)
print(note)

# %% [markdown]
# ## What the representations hold, read without the labels
#
# Per run with an embedding (`gigassl.book.study.representation_reading`), the mean per cell, pool and method: the
# linear CKA of the slide embeddings with the mean of the tile features (AverageMIL's embedding; 1 when one is a
# rotation and scaling of the other), their effective rank, and the R^2 on the test slides of a ridge regression of
# the cohort's oracle statistic (the quantity that made the label) fitted on the training slides. The first two need
# no label; the third uses the simulation's ground truth, which no real cohort has. They say why a method ties the
# mean: an embedding close to a linear map of the mean can see no more than the mean does.

# %%
save_table(page.readings_table(), "mechanisms_readings", figures_dir)

# %% [markdown]
# ## Comparisons
#
# The design's pairs, each a difference of AUC paired on the same bootstrap resamples; Holm-Bonferroni across every
# comparison of every cell (one family); "better" or "worse" only when the adjusted p is below 0.05 and the
# interval excludes 0 (the design's rule). With several generator seeds, `seed_low` and `seed_high` are the
# t-interval over them of the paired difference, and `seeds_agree` says whether a decided verdict also holds over
# the seeds: the verdict is the design's, the seeds' column shows what it does not hold.

# %%
save_table(page.pairs, "mechanisms_pairs", figures_dir)
show_table(page.pairs)

# %% [markdown]
# ## A nuisance: a per-centre change of the features
#
# The design's `sensitivity` section: M1 and M3 again with a per-centre affine change of the features
# (`center_shift`), on the same slides, labels and centres, the same runs otherwise (generator seeds, SSL seed 0, the
# main pool); each method's AUC with the nuisance minus without, paired on the same test slides. The benchmark's
# (`python benchmarks/study.py`), shown when recorded.

# %%
glue_text("mechanism_sensitivity", page.sensitivity())
print(page.sensitivity())

# %% [markdown]
# ## Predictions beside outcomes, and a paragraph per mechanism
#
# On the full grid when it is recorded (every mechanism, 3 generator seeds x 2 SSL seeds), else on the book's grid.

# %%
save_table(page.predictions, "mechanisms_predictions", figures_dir)
glue_text("mechanism_paragraphs", page.paragraphs())
print(page.paragraphs())

# %% [markdown]
# ## The predictions as checks that can fail
#
# Each claim of the predictions that the design's comparisons can test, written out in
# `studies/mechanisms_checks.yml` (its text and sha256 below; it says when it was written and what had run by then),
# decided on the same map: *held*, *failed*, or *undecided* (never counted as held), with the results page's margin
# of 0.02 AUC for ties and chance.

# %%
print(page.checks_summary())
save_table(page.checks, "mechanisms_checks", figures_dir)
print(f"\nsha256 {page.checks_sha256}\n")
print(page.checks_text)

# %% [markdown]
# ## What the map implies for the demo and for TCGA
#
# Which mechanism each of the demo's tasks and of the paper's TCGA tasks is, as far as the cohort's design, the
# paper and the field say, beside what the map's cells (the full grid's when recorded) show of that mechanism.

# %%
glue_text("mechanism_implications", page.implications())
print(page.implications())
