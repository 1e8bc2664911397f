"""Setups: a model, its components, its evaluation examples and its output function."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from coar.components import ComponentSpec, conv_filters
from coar.lm import load_causal_lm
from coar.models import load_model
from coar.outputs import margin

REAL_SETUP_KINDS = (
    "cifar_miniresnet",
    "imagenet_resnet50",
    "imagenet_vit",
    "waterbirds_resnet50",
    "celeba_resnet50",
    "backdoored_cifar",
)


@dataclass
class Setup:
    name: str
    model: nn.Module
    spec: ComponentSpec
    inputs: torch.Tensor  # evaluation examples, already on the device
    labels: torch.Tensor
    output_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    # Indices of the examples within their split (None = all, in order); set by select_examples.
    example_ids: np.ndarray | None = None
    groups: np.ndarray | None = None  # subpopulation of each example, where the data has them

    @property
    def n_examples(self) -> int:
        return len(self.labels)

    def ids(self) -> list[int]:
        if self.example_ids is None:
            return list(range(self.n_examples))
        return [int(i) for i in self.example_ids]


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


def load_clip_zero_shot(name: str, model_path, data_path, device: torch.device, split="test"):
    from coar.edit_clip import load_clip_zero_shot as load

    return load(name, model_path, data_path, device, split=split)


def _load_image_setup(
    name: str, model_path, data_path, device: torch.device, split: str = "test"
) -> Setup:
    from coar.real_setups import load_image_setup

    return load_image_setup(name, model_path, data_path, device, split=split)


LOADERS = {"mini_digits": load_mini_digits}
# The paper's setups: imported checkpoints and prepared examples (coar.real_setups).
LOADERS.update(dict.fromkeys(REAL_SETUP_KINDS, _load_image_setup))
LOADERS["causal_lm"] = load_causal_lm  # GPT-2 and the tiny GPT-2 (coar.lm)
LOADERS["clip_zero_shot"] = load_clip_zero_shot  # Coar-Edit, typographic attacks (paper 5.5)


def load_setup(
    name: str, kind: str, model_path, data_path, device: torch.device, examples: dict | None = None
) -> Setup:
    """Load a setup on its evaluation examples, or on an example set of another split.

    ``examples`` (a Coar-Edit example set, see `coar.edit_examples`) names a
    split and how to select examples from it; loaders of kinds that support
    splits take a ``split`` keyword.
    """
    if kind not in LOADERS:
        raise KeyError(f"setup {name!r}: unknown kind {kind!r} (known: {sorted(LOADERS)})")
    if examples is None:
        return LOADERS[kind](name, model_path, data_path, device)
    from coar.edit_examples import select_examples

    try:
        setup = LOADERS[kind](name, model_path, data_path, device, split=examples["split"])
    except TypeError as err:
        raise TypeError(
            f"setup {name!r}: the loader of kind {kind!r} does not take a split ({err})"
        ) from err
    return select_examples(setup, examples)


def load_setup_of_rule(smk, device: torch.device, examples: dict | None = None) -> Setup:
    """`load_setup` for a workflow job: its ``setup`` wildcard, ``kind`` param and
    ``model`` and ``data`` inputs."""
    return load_setup(
        smk.wildcards.setup,
        smk.params.kind,
        smk.input.model,
        smk.input.data,
        device,
        examples=examples,
    )
