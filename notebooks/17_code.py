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
# # How the code is organised
#
# **In this run:** {glue:md}`finding`
#
# One module per stage of the method, named after it; the tables below are read from the package itself
# (`gigassl.book.codemap`): its modules and what each does, where to edit to change one part of the method, and every
# parameter of every stage with its value in each profile and the command-line option that sets it. A notebook
# only sets parameters, calls these functions and draws.

# %% tags=["parameters"]
profile = "demo"
run_dir = "runs/demo"
out_dir = "runs/demo/code"
figures_dir = "figures"

# %%
from gigassl.book.codemap import modules, stage_options, summary, where_to_change
from gigassl.book.figures import finding, save_table

save_table(modules(), "code_modules", figures_dir)

# %% [markdown]
# ## Where to change what
# Each part of the method, the function that implements it and the config whose fields set it.

# %%
save_table(where_to_change(), "code_where", figures_dir)

# %% [markdown]
# ## Every parameter, by stage
# Values of the `smoke` (the tests), `demo` (this book) and `paper` profiles (`gigassl/config.py`); `-` in the
# option column: set from Python or a notebook (a `dataclasses.replace` of the profile's config).

# %%
save_table(stage_options(), "code_options", figures_dir)

# %%
finding(summary())
