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
# # Selectively forgetting a class (paper Section 5.2)
#
# Coar-Edit scores every component by Welch's t-statistic between the attributions of
# training examples of one class (targets) and of the other classes (references), then
# ablates the highest-scoring components one by one. This notebook loads what the workflow
# wrote (`snakemake --configfile config/mini.yaml` or the `fig3` target), walks through
# the sweep, the choice of k on validation data and the saved edited model, and checks
# that the edited weights reproduce the reported test accuracy.
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
from coar_replication.training import accuracy
from coar_workflow.notebook import find_results

RESULTS = find_results()  # $COAR_RESULTS, else results/mini here or in a directory above
SETUP = os.environ.get("COAR_SETUP", "mini_digits")
experiment = RESULTS / "edits" / SETUP / "forget"
classes = sorted(int(p.name[len("class") :]) for p in experiment.glob("class*"))
print("forgotten classes:", classes)

# %% [markdown]
# ## The chosen edits
# One row per forgotten class: k (components ablated), and test accuracy of the class and of
# the other classes before and after. k was chosen on validation data only.

# %%
summaries = pd.DataFrame(
    [json.loads((experiment / f"class{c}" / "summary.json").read_text()) for c in classes]
)
columns = ["target_class", "k", "test_target_accuracy_before", "test_target_accuracy_after",
           "test_others_accuracy_before", "test_others_accuracy_after"]
summaries[columns]

# %% [markdown]
# ## The sweep
# Accuracy per class on validation and test as components are ablated; the chosen k is the
# one that meets the validation criterion recorded in the edited model.

# %%
target = classes[0]
sweep = pd.read_csv(experiment / f"class{target}" / "sweep.csv")
sweep[["k", "val_target_accuracy", "val_others_accuracy", "test_target_accuracy",
       "test_others_accuracy"]].head(15)

# %%
ax = sweep.plot(x="k", y=["test_target_accuracy", "test_others_accuracy"], figsize=(6, 3.5))
ax.axvline(summaries.set_index("target_class").loc[target, "k"], ls=":", color="black")
ax.set_ylabel("test accuracy")
plt.show()

# %% [markdown]
# ## The edited model: what was ablated, and why

# %%
checkpoint = torch.load(experiment / f"class{target}" / "edited_model.pt", weights_only=True)
edit = checkpoint["edit"]
print("criterion:", edit["criterion"])
print("direction:", edit["direction"], "| k =", edit["k"])
pd.DataFrame({"component": edit["ablated_names"], "welch_t": edit["scores"]})

# %% [markdown]
# ## Check: the saved weights reproduce the test numbers

# %%
model = load_model(experiment / f"class{target}" / "edited_model.pt")
with np.load(RESULTS / "data" / f"{SETUP}.npz") as data:
    x, y = torch.from_numpy(data["x_test"]), torch.from_numpy(data["y_test"])
in_class = y == target
after_target = accuracy(model, x[in_class], y[in_class])
print(f"class {target} test accuracy of the saved edited model: {after_target:.3f}")
assert abs(after_target - summaries.set_index("target_class").loc[target, "test_target_accuracy_after"]) < 1e-6
