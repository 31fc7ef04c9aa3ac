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
# Sec. 5, "Attention-deep-MIL unlearns when trained with SSL": the same SSL training with a gated attention MIL as
# the aggregator instead of the sparse CNN. Both runs were monitored: every few epochs the slides were embedded
# (fewer views than at the final inference, to keep it cheap) and the linear probe run on the NSCLC analogue.

# %% tags=["parameters"]
profile = "demo"
run_dir = "runs/demo"
out_dir = "runs/demo/ablation_deepmil_aggregator"
figures_dir = "figures"
runs = {"sparseconv": "ssl_full", "attention": "ssl_attention"}

# %%
from pathlib import Path

import pandas as pd

from gigassl.figures import curves, save_figure, save_table, training_curves

frames = []
for aggregator, run in runs.items():
    frames.append(pd.read_csv(Path(run_dir) / run / "monitor.csv").assign(aggregator=aggregator))
fig3c = pd.concat(frames, ignore_index=True)
save_table(fig3c, "fig3c_aggregator", figures_dir)

# %%
fig = curves(fig3c, x="epoch", hue="aggregator", xlabel="SSL epoch",
             title=f"Linear AUC during SSL training ({fig3c['task'].iloc[0]})")
save_figure(fig, "fig3c_aggregator", figures_dir)

# %%
logs = {aggregator: pd.read_csv(Path(run_dir) / run / "log.csv") for aggregator, run in runs.items()}
fig = training_curves(logs)
save_figure(fig, "fig3c_training_curves", figures_dir)
