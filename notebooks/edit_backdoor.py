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
# # Removing a backdoor (paper Section 5.4)
#
# A model trained with a trigger patch tied to one class predicts that class whenever the
# trigger is present. Coar-Edit ablates the components with the lowest Welch t-statistic
# between the attributions of triggered training images (targets, true labels) and of the
# same images without the trigger (references). This notebook loads the workflow's results
# (`fig7` target): clean and triggered accuracy against k, the validation choice of k, the
# correlation of the outputs on paired clean/triggered images, and the edited model.
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
SETUP = os.environ.get("COAR_SETUP", "mini_backdoor")
experiment = RESULTS / "edits" / SETUP / "backdoor"
summary = json.loads((experiment / "summary.json").read_text())
pd.Series(summary).to_frame("value")

# %%
sweep = pd.read_csv(experiment / "sweep.csv")
sweep

# %%
ax = sweep.plot(x="k", y=["test_clean_accuracy", "test_triggered_accuracy"], figsize=(6, 3.5))
ax.axvline(summary["k"], ls=":", color="black")
plt.show()

# %% [markdown]
# ## The edited model
# Triggered accuracy counts the test images whose true class is not the backdoor's target.

# %%
checkpoint = torch.load(experiment / "edited_model.pt", weights_only=True)
edit = checkpoint["edit"]
print(edit["criterion"])
print(f"ablated {edit['k']} of {summary['n_components']} components:", edit["ablated_names"])
model = load_model(experiment / "edited_model.pt")
with np.load(RESULTS / "data" / f"{SETUP}.npz") as data:
    x, y = torch.from_numpy(data["x_test_triggered"]), torch.from_numpy(data["y_test_triggered"])
keep = y != edit["target_class"]
with torch.no_grad():
    triggered = (model(x[keep]).argmax(1) == y[keep]).double().mean().item()
print(f"triggered test accuracy of the saved edited model: {triggered:.3f}")
assert abs(triggered - summary["test_triggered_accuracy_after"]) < 1e-6
