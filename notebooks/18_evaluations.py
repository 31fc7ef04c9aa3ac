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
# # The field's evaluations: survival, few-shot, retrieval, patients, unseen centres
#
# **In this run:** {glue:md}`finding`
#
# Beyond the paper's linear probe on random splits, what slide-encoder papers and benchmarks now report (TITAN,
# PRISM, Patho-Bench, eva), run on the demo cohort for Giga-SSL (the main run's embeddings), AverageMIL (the mean of
# the plain tile embeddings) and, where it applies, DeepMIL. The slide embeddings go through
# `gigassl.evaluation.headtohead.evaluate`, the function of `gigassl evaluate` (README: "Evaluate any slide
# embeddings"): every representation on the same splits and draws, made from the labels and the seed only, with one
# fixed probe for every set (the paper's C = 10 on L2-normalised rows; no choice made per representation).
#
# - **Survival**: a penalised Cox model (scikit-survival's elastic-net Coxnet, the penalty chosen by inner
#   cross-validation on each split's training slides, grouped by patient); Harrell's and Uno's concordance over
#   splits grouped by patient and stratified by event. The synthetic cohort's outcome was fixed before any probe
#   ran (`gigassl.cohorts.synth`: exponential hazard rising with the nuclear size of the case's `rcc_like` class,
#   beta 0.8 per sd, about 30% censored at random; the generating factor's own Harrell C is about 0.69, the
#   ceiling to read the results against).
# - **Few-shot**: K = 1, 2, 4, 8, 16 training slides per class (one per patient), 20 draws per K (the same for
#   every representation), logistic regression, k-nearest neighbours (cosine) and class prototypes (cosine).
# - **Retrieval**: leave-one-patient-out, top-1/3/5 accuracy by majority vote (never the query's own patient).
# - **Patients**: splits by patient; late fusion (mean slide embedding, mean predicted probability) and, for
#   Giga-SSL, early fusion (each view draws its tiles across all of the patient's slides).
# - **Unseen centres**: every centre held out in turn (train on the others), beside random splits of the same sizes.
#
# Intervals: the corrected resampled t (Nadeau & Bengio) over the splits where test sets overlap (patients,
# survival), a bootstrap over draws for few-shot (its draws share most test slides: the interval holds the
# training-set variance, not the test-set sampling) and over centres for `held_out:all`; retrieval (one gallery)
# and a single held-out centre have one draw and no interval, so they are never decided. The SSL training seed and
# the cohort are fixed: no interval here holds their variance (see the results page).

# %% tags=["parameters"]
profile = "demo"
run_dir = "runs/demo"
out_dir = "runs/demo/evaluations"
figures_dir = "figures"
tasks = None  # None: every label column of the manifest
train = "ssl_full"
bank = "bank_moco_shared"
deepmil = True  # DeepMIL on every unseen-centre split
early_fusion = True  # Giga-SSL's early fusion of a patient's slides (needs the run's checkpoint and bank)

# %%
from gigassl.config import get_profile
from gigassl.book.charts import fewshot_curves, kaplan_meier_curves, unseen_centre_strips
from gigassl.book.evaluations import evaluations_finding, fewshot_curve_table, field_evaluations, kaplan_meier_table
from gigassl.book.figures import finding, save_figure, save_table, show_table

config = get_profile(profile)
result = field_evaluations(config, run_dir, tasks=tasks, train=train, bank=bank, deepmil=deepmil,
                           early_fusion=early_fusion)
result.runs.to_csv(f"{out_dir}/runs.csv", index=False)

# %% [markdown]
# ## Survival
#
# Concordance of the Cox probe's risk on the test slides (0.5: chance; the generating factor itself: about 0.69),
# and the Kaplan-Meier curves of the test slides cut at the training median of the predicted risk.

# %%
save_table(result.table("survival"), "evaluations_survival", figures_dir)
save_figure(kaplan_meier_curves(*kaplan_meier_table(result.risks)), "evaluations_kaplan_meier", figures_dir)

# %% [markdown]
# ## Few-shot

# %%
curves = fewshot_curve_table(result.runs)
save_table(curves, "evaluations_fewshot", figures_dir)
save_figure(fewshot_curves(curves), "evaluations_fewshot", figures_dir)

# %% [markdown]
# ## Retrieval, patients and unseen centres

# %%
save_table(result.table("retrieval"), "evaluations_retrieval", figures_dir)
save_table(result.table("patients"), "evaluations_patients", figures_dir)
save_table(result.table("unseen_centres"), "evaluations_unseen_centres", figures_dir)
save_figure(unseen_centre_strips(result.runs), "evaluations_unseen_centres", figures_dir)

# %% [markdown]
# ## Every comparison, paired
#
# Each row pairs two representations on the same splits or draws (`difference` = a - b), with the interval's
# sources named (`interval`) and the verdict: decided only when the interval excludes 0; `corrected_verdict` keeps a
# decision only where Holm's correction across every pair of the page (`p_holm`, from the pair's t statistic:
# corrected where its interval is) still rejects at 0.05. What was not run, and why:

# %%
show_table(result.not_run)
save_table(result.pair_table(), "evaluations_pairs", figures_dir)
finding(evaluations_finding(result.pairs, result.runs))
