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
# # Number of tiles per view: the Fig. 3A analogue
#
# **In this run:** {glue:md}`finding`
#
# Sec. 5, "The fewer tiles, the better": Giga-SSL trained with different numbers T of tiles per view (inference
# uses the same T, as the paper's supplementary material requires), probed at 100% of the labels.

# %% tags=["parameters"]
profile = "demo"
run_dir = "runs/demo"
out_dir = "runs/demo/ablation_tiles"
figures_dir = "figures"
tasks = None
runs = None  # None: ssl_ref (the profile's T, ablation regime) and every ssl_T<k> run of the plan

# %%
from gigassl.config import get_profile
from gigassl.book.experiments import by_task, tiles_ablation
from gigassl.book.figures import curves_by_protocol, finding, save_figures, save_table, show_table
from gigassl.book.results import curve_finding

config = get_profile(profile)
fig3a = tiles_ablation(config, run_dir, out_dir, tasks=tasks, runs=runs)
save_table(fig3a, "fig3a_tiles", figures_dir)
show_table(by_task(fig3a, "tiles_per_view"))

# %%
save_figures(curves_by_protocol(fig3a, x="tiles_per_view", xlabel="tiles per view T (training and inference)",
                                logx=True, title="Linear AUC against T ({protocol} protocol)"),
             "fig3a_tiles", figures_dir)

# %%
finding(curve_finding(fig3a, "tiles_per_view"))
