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
runs = {"sparseconv": "ssl_ref", "attention": "ssl_attention"}  # both in the ablation regime

# %%
from pathlib import Path

import pandas as pd

from gigassl.embed import monitor_table
from gigassl.figures import curves, save_figure, save_table, training_curves

per_split, per_epoch = zip(*(monitor_table(pd.read_csv(Path(run_dir) / run / "monitor.csv"), aggregator)
                             for aggregator, run in runs.items()))
pd.concat(per_split, ignore_index=True).to_csv(Path(out_dir) / "splits.csv", index=False)
fig3c = pd.concat(per_epoch, ignore_index=True)
save_table(fig3c, "fig3c_aggregator", figures_dir)

# %%
paper_protocol = fig3c[fig3c["protocol"] == "paper"]
fig = curves(paper_protocol, x="epoch", hue="aggregator", xlabel="SSL epoch",
             title=f"Linear AUC during SSL training ({fig3c['task'].iloc[0]}, paper protocol)")
save_figure(fig, "fig3c_aggregator", figures_dir)

# %%
logs = {aggregator: pd.read_csv(Path(run_dir) / run / "log.csv") for aggregator, run in runs.items()}
fig = training_curves(logs, columns=("loss", "alignment", "uniformity", "effective_rank"))
save_figure(fig, "fig3c_training_curves", figures_dir)
