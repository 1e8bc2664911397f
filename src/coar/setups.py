"""Setups: a model, its components, its evaluation examples and its output function."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from coar.components import ComponentSpec, conv_filters
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

    @property
    def n_examples(self) -> int:
        return len(self.labels)


def load_mini_digits(name: str, model_path, data_path, device: torch.device) -> Setup:
    """The embedded default: a MiniResNet trained on digits, evaluated on the test split."""
    model = load_model(model_path).to(device)
    with np.load(data_path) as data:
        inputs = torch.from_numpy(data["x_test"]).to(device)
        labels = torch.from_numpy(data["y_test"]).to(device)
    return Setup(name, model, conv_filters(model), inputs, labels, margin)


def _load_image_setup(name: str, model_path, data_path, device: torch.device) -> Setup:
    from coar.real_setups import load_image_setup

    return load_image_setup(name, model_path, data_path, device)


LOADERS = {"mini_digits": load_mini_digits}
# The paper's setups: imported checkpoints and prepared examples (coar.real_setups).
LOADERS.update(dict.fromkeys(REAL_SETUP_KINDS, _load_image_setup))


def load_setup(name: str, kind: str, model_path, data_path, device: torch.device) -> Setup:
    if kind not in LOADERS:
        raise KeyError(f"setup {name!r}: unknown kind {kind!r} (known: {sorted(LOADERS)})")
    return LOADERS[kind](name, model_path, data_path, device)
