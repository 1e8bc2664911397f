"""Setups: a model, its components, its evaluation examples and its output function."""

from __future__ import annotations

import numpy as np
import torch

from coar.components import conv_filters
from coar.outputs import margin
from coar_replication.checkpoints import load_model
from coar_replication.edit_clip import load_clip_zero_shot
from coar_replication.edit_examples import select_examples
from coar_replication.lm import load_causal_lm
from coar_replication.real_setups import load_image_setup
from coar_replication.setup import Setup

REAL_SETUP_KINDS = (
    "cifar_miniresnet",
    "imagenet_resnet50",
    "imagenet_vit",
    "waterbirds_resnet50",
    "celeba_resnet50",
    "backdoored_cifar",
)


def load_mini_digits(
    name: str, model_path, data_path, device: torch.device, split: str = "test"
) -> Setup:
    """The embedded default: a MiniResNet trained on digits, evaluated on the test split.

    Other splits of the data file (``x_<split>``, ``y_<split>``, optional groups
    ``g_<split>``) serve the Coar-Edit experiments.
    """
    model = load_model(model_path).to(device)
    with np.load(data_path) as data:
        if f"x_{split}" not in data.files:
            splits = sorted(k[2:] for k in data.files if k.startswith("x_"))
            raise KeyError(f"{data_path} has no split {split!r} (splits: {splits})")
        inputs = torch.from_numpy(data[f"x_{split}"]).to(device)
        labels = torch.from_numpy(data[f"y_{split}"]).to(device)
        groups = data[f"g_{split}"] if f"g_{split}" in data.files else None
    return Setup(name, model, conv_filters(model), inputs, labels, margin, groups=groups)


LOADERS = {"mini_digits": load_mini_digits}
# The paper's setups: imported checkpoints and prepared examples (coar_replication.real_setups).
LOADERS.update(dict.fromkeys(REAL_SETUP_KINDS, load_image_setup))
LOADERS["causal_lm"] = load_causal_lm  # GPT-2 and the tiny GPT-2 (coar_replication.lm)
LOADERS["clip_zero_shot"] = load_clip_zero_shot  # Coar-Edit, typographic attacks (paper 5.5)


def load_setup(
    name: str, kind: str, model_path, data_path, device: torch.device, examples: dict | None = None
) -> Setup:
    """Load a setup on its evaluation examples, or on an example set of another split.

    ``examples`` (a Coar-Edit example set, see `coar_replication.edit_examples`) names a
    split and how to select examples from it; loaders of kinds that support
    splits take a ``split`` keyword.
    """
    if kind not in LOADERS:
        raise KeyError(f"setup {name!r}: unknown kind {kind!r} (known: {sorted(LOADERS)})")
    if examples is None:
        return LOADERS[kind](name, model_path, data_path, device)
    try:
        setup = LOADERS[kind](name, model_path, data_path, device, split=examples["split"])
    except TypeError as err:
        raise TypeError(
            f"setup {name!r}: the loader of kind {kind!r} does not take a split ({err})"
        ) from err
    return select_examples(setup, examples)
