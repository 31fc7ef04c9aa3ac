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
# # More unlabelled slides for SSL
#
# An experiment the paper does not have: the paper trained Giga-SSL on about 11,000 TCGA slides and probed on about
# 1,000 labelled ones per task. Here Giga-SSL is trained on the labelled cohort plus a growing part of the unlabelled
# pool (slides with no label, used by SSL only), always for the same number of optimizer steps (the ablation
# regime's; the point without pool is `ssl_ref`), and probed on the same labelled slides and splits. AverageMIL uses
# no SSL slide: its AUC is a constant reference. At a fixed number of steps, a larger pool means fewer passes over
# each slide and more different slides: the curve asks whether diversity helps at a given compute.

# %% tags=["parameters"]
profile = "demo"
run_dir = "runs/demo"
out_dir = "runs/demo/unlabelled_pool"
figures_dir = "figures"
tasks = None
bank = "bank_moco_shared"
no_pool = "ssl_ref"  # the run without pool slides (same steps)

# %%
from pathlib import Path

import pandas as pd

from gigassl.baselines import average_embeddings
from gigassl.compare import paired
from gigassl.config import get_profile
from gigassl.figures import curves, save_figure, save_table
from gigassl.manifest import labelled_ids, task_columns
from gigassl.metrics import summarize
from gigassl.protocol import probe_runs

config = get_profile(profile)
manifest = pd.read_csv(Path(run_dir) / "cohort" / "manifest.csv", dtype={"slide_id": str, "case_id": str})
tasks = tasks or task_columns(manifest)
runs = sorted(Path(run_dir).glob("ssl_pool*"), key=lambda p: int(p.name[len("ssl_pool"):]))
named = {"gigassl_U0": (Path(run_dir) / no_pool / "embeddings.h5", "l2")}
named.update({f"gigassl_U{p.name[len('ssl_pool'):]}": (p / "embeddings.h5", "l2") for p in runs})
named["averagemil"] = (average_embeddings(Path(run_dir) / bank, labelled_ids(manifest)), "standard")
splits = probe_runs(named, manifest, tasks, budgets=(1.0,), train_sizes=(), config=config.probe,
                    n_splits=config.probe.n_splits)
splits.to_csv(Path(out_dir) / "splits.csv", index=False)
summary = summarize(splits, n_bootstrap=config.probe.n_bootstrap, seed=config.probe.seed)
summary = summary.assign(pool=summary["method"].str.extract(r"_U(\d+)$")[0].astype(float))
save_table(summary[["protocol", "method", "pool", "task", "auc_mean", "auc_std", "ci_low", "ci_high"]],
           "unlabelled_pool", figures_dir)

# %% [markdown]
# Probe AUC of Giga-SSL against the number of unlabelled slides added to the labelled cohort for SSL (band: the std
# over splits); the dashed lines are AverageMIL on the same splits.

# %%
for protocol, part in summary.groupby("protocol"):
    ssl = part[part["method"] != "averagemil"]
    fig = curves(ssl, x="pool", xlabel="unlabelled slides added for SSL", title=f"Giga-SSL ({protocol} protocol)")
    for line, (task, row) in zip(fig.axes[0].get_lines(), part[part["method"] == "averagemil"].set_index("task").iterrows()):
        fig.axes[0].axhline(row["auc_mean"], color=line.get_color(), ls="--", lw=1)
    save_figure(fig, f"unlabelled_pool_{protocol}", figures_dir)

# %% [markdown]
# The largest pool minus no pool, and the largest pool minus AverageMIL, paired over splits.

# %%
largest, smallest = list(named)[-2], list(named)[0]
gain = pd.concat([paired(splits, largest, smallest, n_bootstrap=config.probe.n_bootstrap, seed=config.probe.seed),
                  paired(splits, largest, "averagemil", n_bootstrap=config.probe.n_bootstrap,
                         seed=config.probe.seed)], ignore_index=True)
save_table(gain, "unlabelled_pool_paired", figures_dir)
