# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Fixing individual errors (paper Section 5.1)
#
# For each misclassified test example, Coar-Edit ablates the components with the lowest Welch
# t-statistic between that example's attributions and those of reference examples (with a
# single target the statistic is the one-sample limit, see `coar.edit.welch_t`), adding one
# component at a time until the example is classified correctly while validation accuracy
# stays within the configured tolerance. This notebook loads the workflow's results (`fig2`
# target), summarises how many errors were fixed and at what cost, and rebuilds one edited
# model from its saved record.
#
# Set `COAR_RESULTS` / `COAR_SETUP` to look at another run (default: the embedded default).

# %%
import json
import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from coar.components import conv_filters
from coar.edit import apply_edit
from coar_replication.checkpoints import load_model
from coar_workflow.notebook import find_results

RESULTS = find_results()  # $COAR_RESULTS, else results/mini here or in a directory above
SETUP = os.environ.get("COAR_SETUP", "mini_noisy")
experiment = RESULTS / "edits" / SETUP / "errors"
summary = json.loads((experiment / "summary.json").read_text())
pd.Series(summary).to_frame("value")

# %% [markdown]
# ## One row per error
# `k` components fix it; the accuracy changes are those of the edited model on the training
# set, on the validation set and on the *other* test examples.

# %%
table = pd.read_csv(experiment / "per_example.csv")
print(f"fixed {table.fixed.sum()} of {len(table)} errors")
table.head(10)

# %%
fixed = table[table.fixed]
(100 * fixed[["train_change", "val_change", "test_change"]]).describe()

# %%
ax = (100 * fixed[["train_change", "test_change"]]).plot.hist(bins=20, alpha=0.6, figsize=(6, 3.5))
ax.set_xlabel("accuracy change (points)")
plt.show()

# %% [markdown]
# ## Rebuild one edit from its record
# `edits.pt` holds, per fixed error, the ablated components and the criterion; zeroing them in
# the original model reproduces the edited model.

# %%
records = torch.load(experiment / "edits.pt", weights_only=True)["edits"]
assert len(records) == table.fixed.sum()
for record in records[:3]:
    model = load_model(RESULTS / "models" / f"{SETUP}.pt")
    edited = apply_edit(model, conv_filters(model), record["ablated"])
    with np.load(RESULTS / "data" / f"{SETUP}.npz") as data:
        x = torch.from_numpy(data["x_test"][record["example"] : record["example"] + 1])
    with torch.no_grad():
        prediction = int(edited(x).argmax(1))
    print(f"test example {record['example']}: label {record['label']}, k = {record['k']}, "
          f"edited prediction {prediction} ({record['criterion']})")
    assert prediction == record["label"]
