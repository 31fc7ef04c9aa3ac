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
# # Time and memory of the run
#
# **In this run:** {glue:md}`finding`
#
# Recorded by the runner (`gigassl run`) for every execution of the plan: wall time and the peak resident memory of
# the notebook's kernel (sampled every 0.25 s). Executions skipped because nothing changed keep the figures of the
# run that made them.

# %% tags=["parameters"]
profile = "demo"
run_dir = "runs/demo"
out_dir = "runs/demo/resources"
figures_dir = "figures"

# %%
from pathlib import Path

from gigassl.book.experiments import resources
from gigassl.book.figures import finding, plot_resources, save_figure, save_table

frame, said = resources(run_dir, profile, exclude=Path(out_dir).name)
save_table(frame, "resources", figures_dir)

# %%
save_figure(plot_resources(frame), "resources", figures_dir)

# %%
finding(said)
