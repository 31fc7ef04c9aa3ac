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
# Recorded by the runner (`gigassl run`) for every execution of the plan: wall time and the peak resident memory of
# the notebook's kernel (sampled every 0.25 s). Executions skipped because nothing changed keep the figures of the
# run that made them.

# %% tags=["parameters"]
profile = "demo"
run_dir = "runs/demo"
out_dir = "runs/demo/resources"
figures_dir = "figures"

# %%
import json
import os
import platform
from pathlib import Path

import pandas as pd

from gigassl.figures import resources, save_figure, save_table

state = json.loads((Path(run_dir) / "runner.json").read_text())
frame = pd.DataFrame([{"name": name, "notebook": r["notebook"], "seconds": r["seconds"],
                       "peak_memory_mb": r["peak_memory_mb"], "finished": r["finished"]}
                      for name, r in state.items() if r.get("status") == "ok" and name != Path(out_dir).name])
total = frame["seconds"].sum()
machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}"
save_table(frame, "resources", figures_dir)
print(f"profile {profile}: {len(frame)} executions, {total / 60:.1f} minutes in all, on {machine}")

# %%
fig = resources(frame)
save_figure(fig, "resources", figures_dir)
