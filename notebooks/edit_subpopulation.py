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
# # Subpopulation robustness (paper Section 5.3)
#
# A model trained where a spurious feature agrees with the label for most training examples
# (the embedded default: a border bar on digits, a Waterbirds analogue) fails on the groups
# where it disagrees. Coar-Edit ablates the components with the lowest Welch t-statistic
# between the attributions of minority-group training examples (targets) and of the other
# groups (references). This notebook loads the workflow's results (`fig4` target) and walks
# through the sweep, the validation choice of k and the edited model.
#
# Set `COAR_RESULTS` / `COAR_SETUP` to look at another run (default: the embedded default).

# %%
import json
import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from coar_replication.checkpoints import load_model
from coar_workflow.notebook import find_results

RESULTS = find_results()  # $COAR_RESULTS, else results/mini here or in a directory above
SETUP = os.environ.get("COAR_SETUP", "mini_spurious")
experiment = RESULTS / "edits" / SETUP / "subpopulation"
summary = json.loads((experiment / "summary.json").read_text())
pd.Series(summary).to_frame("value")

# %% [markdown]
# ## Accuracy per group against k
# Groups are `2 * label + attribute`; the minority groups are those whose attribute disagrees
# with the label.

# %%
sweep = pd.read_csv(experiment / "sweep.csv")
group_columns = [c for c in sweep if c.startswith("test_group") and c[10].isdigit()]
sweep[["k", "val_worst_group_accuracy", "test_accuracy", "test_worst_group_accuracy",
       *group_columns]].head(15)

# %%
ax = sweep.plot(x="k", y=["test_accuracy", "test_group_average_accuracy",
                          "test_worst_group_accuracy"], figsize=(6, 3.5))
ax.axvline(summary["k"], ls=":", color="black")
plt.show()

# %% [markdown]
# ## The edited model and a check of its worst-group accuracy

# %%
checkpoint = torch.load(experiment / "edited_model.pt", weights_only=True)
print(checkpoint["edit"]["criterion"])
print("ablated:", checkpoint["edit"]["ablated_names"])
model = load_model(experiment / "edited_model.pt")
with np.load(RESULTS / "data" / f"{SETUP}.npz") as data:
    x, y, g = (torch.from_numpy(data[f"{key}_test"]) for key in ("x", "y", "g"))
with torch.no_grad():
    correct = (model(x).argmax(1) == y).double()
per_group = {int(group): correct[g == group].mean().item() for group in torch.unique(g)}
print("test accuracy per group:", per_group)
assert abs(min(per_group.values()) - summary["test_worst_group_accuracy_after"]) < 1e-6
