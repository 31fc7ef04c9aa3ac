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
# # Number of views at inference: the Fig. 3B analogue
#
# **In this run:** {glue:md}`finding`
#
# Sec. 5, "Ensembling representations brings improvement": one slide embedding is the mean of R views; the paper
# loses up to 4 AUC points without ensembling (R = 1) on NSCLC and sees the gain saturate around R = 50. Here the
# trained model of the paper's setting embeds every slide with each R and is probed at 100% of the labels.

# %% tags=["parameters"]
profile = "demo"
run_dir = "runs/demo"
out_dir = "runs/demo/ablation_views"
figures_dir = "figures"
tasks = None
view_counts = [1, 2, 5, 10, 25, 50]  # page parameter: the numbers of views R compared (each one EmbedConfig.views)
train = "ssl_full"
bank = "bank_moco_shared"

# %%
from gigassl.config import get_profile
from gigassl.book.experiments import by_task, views_ablation
from gigassl.book.figures import curves_by_protocol, finding, save_figures, save_table, show_table
from gigassl.book.results import curve_finding

config = get_profile(profile)
fig3b = views_ablation(config, run_dir, out_dir, view_counts, tasks=tasks, train=train, bank=bank)
save_table(fig3b, "fig3b_views", figures_dir)
show_table(by_task(fig3b, "views"))

# %%
save_figures(curves_by_protocol(fig3b, x="views", xlabel="views R averaged at inference", logx=True,
                                title="Linear AUC against R ({protocol} protocol)"), "fig3b_views", figures_dir)

# %%
finding(curve_finding(fig3b, "views"))
