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
# # Typographic attacks on CLIP (paper Section 5.5)
#
# Zero-shot CLIP reads text in images: writing the name of another class on a photo flips
# its prediction. Coar-Edit ablates the components (MLP neurons of the image transformer)
# with the lowest Welch t-statistic between the attributions of attacked training images
# and of the same images without the text.
#
# With `COAR_SETUP` naming a `clip_zero_shot` setup whose `typographic` experiment has run
# (paper config: CLIP ViT-B/16), this notebook loads its results. Otherwise it walks through
# the same code path on the tiny random-weight CLIP stand-in used by the tests (random
# weights: the numbers mean nothing, the steps are the real ones).

# %%
import json
import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from PIL import Image

from coar.ablate import ablate_rows
from coar.attributions import Attributions
from coar.outputs import margin
from coar.regression import GramStats, least_squares
from coar_replication.edit_clip import (
    clip_mlp_neurons,
    tiny_clip,
    typographic_attack,
    typographic_splits,
    zero_shot_classifier,
)
from coar_replication.edit_experiments import Split, remove_backdoor
from coar_replication.setups import Setup
from coar_workflow.notebook import find_results

SETUP = os.environ.get("COAR_SETUP", "")
if SETUP:  # $COAR_RESULTS, else results/mini here or in a directory above
    experiment = find_results() / "edits" / SETUP / "typographic"
from_workflow = bool(SETUP) and (experiment / "summary.json").exists()
print("results from the workflow" if from_workflow else "tiny random-weight stand-in")

# %% [markdown]
# ## An attack
# The attack writes a wrong class name on a white box at a seeded position.

# %%
rng = np.random.default_rng(0)
photo = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
attacked = typographic_attack(photo, "dog", seed=0)
changed = (np.asarray(attacked) != np.asarray(photo)).any(-1).mean()
print(f"fraction of pixels the text box covers: {changed:.2f}")

# %% [markdown]
# ## The edit
# From the workflow: the saved sweep and summary. Stand-in: attribute a few images with and
# without the attack (ablate -> fit, as the workflow's stages do) and run the same edit.

# %%
if from_workflow:
    summary = json.loads((experiment / "summary.json").read_text())
    sweep = pd.read_csv(experiment / "sweep.csv")
else:
    classes = ["cat", "dog", "car", "tree"]
    clip_model, tokenizer = tiny_clip(seed=0)
    classifier = zero_shot_classifier(clip_model, tokenizer, classes)
    spec = clip_mlp_neurons(classifier)

    def preprocess(image):
        return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)

    images = {
        split: [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(8)]
        for split in ("train", "val", "test")
    }
    with torch.no_grad():  # stand-in labels: the model's own clean predictions
        labels = {
            split: classifier(torch.stack([preprocess(im) for im in ims])).argmax(1).numpy()
            for split, ims in images.items()
        }
    arrays = typographic_splits(images, labels, classes, preprocess, seed=0)

    def split(name):
        return Split(torch.from_numpy(arrays[f"x_{name}"]), torch.from_numpy(arrays[f"y_{name}"]))

    def attribute(name, n_masks=40):
        data = split(name)
        setup = Setup("clip", classifier, spec, data.inputs, data.labels, margin)
        masks, outputs = ablate_rows(*setup.engine_args(), seed=0, stream="train", rows=range(n_masks),
                                     alpha=0.1, masks_per_batch=8, progress=False)
        stats = GramStats.zeros(len(spec), setup.n_examples)
        stats.update(masks, outputs)
        fit = least_squares(stats)
        return Attributions(fit.weight, fit.bias, spec.names(), list(range(setup.n_examples)))

    result = remove_backdoor(
        "clip_stand_in", classifier, spec, attribute("train_attacked"), attribute("train"),
        split("val"), split("val_attacked"), split("test"), split("test_attacked"),
        target_class=None, k_max=8, k_step=4, max_clean_drop=0.1, experiment="typographic",
    )
    summary, sweep = result.summary, result.sweep
    print(result.edit.criterion)
pd.Series(summary).to_frame("value")

# %% [markdown]
# The sweep (the shared backdoor/typographic code names the attacked copies "triggered").

# %%
sweep[["k", "val_clean_accuracy", "val_triggered_accuracy", "test_clean_accuracy",
       "test_triggered_accuracy"]]

# %%
ax = sweep.plot(x="k", y=["test_clean_accuracy", "test_triggered_accuracy"], figsize=(6, 3.5))
ax.axvline(summary["k"], ls=":", color="black")
ax.set_ylabel("test accuracy (clean / attacked)")
plt.show()
