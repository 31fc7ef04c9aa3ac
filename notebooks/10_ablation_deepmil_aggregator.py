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
# # The aggregator: sparse CNN against attention MIL, the Fig. 3C analogue
#
# **In this run:** {glue:md}`finding`
#
# Sec. 5, "Attention-deep-MIL unlearns when trained with SSL": the same SSL training with a gated attention MIL as
# the aggregator instead of the sparse CNN. Both runs were monitored: every few epochs the slides were embedded
# (fewer views than at the final inference, to keep it cheap) and the linear probe run on the NSCLC analogue.

# %% tags=["parameters"]
profile = "demo"
run_dir = "runs/demo"
out_dir = "runs/demo/ablation_deepmil_aggregator"
figures_dir = "figures"
runs = {"sparseconv": "ssl_ref", "attention": "ssl_attention"}  # both in the ablation regime

# %%
from gigassl.book.experiments import aggregator_ablation
from gigassl.book.figures import aggregator_curve, finding, save_figure, save_table, training_curves
from gigassl.book.results import aggregator_finding

fig3c, logs = aggregator_ablation(run_dir, out_dir, runs)
save_table(fig3c, "fig3c_aggregator", figures_dir)

# %%
save_figure(aggregator_curve(fig3c, protocol="paper"), "fig3c_aggregator", figures_dir)

# %%
fig = training_curves(logs, columns=("loss", "alignment", "uniformity", "effective_rank"))
save_figure(fig, "fig3c_training_curves", figures_dir)

# %%
finding(aggregator_finding(fig3c))
