"""Setups of the paper's models: an imported checkpoint and a prepared examples file."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from coar.components import ComponentSpec, component_spec
from coar.outputs import margin
from coar_replication.architectures import architecture
from coar_replication.checkpoints import load_checkpoint
from coar_replication.setup import Setup


def components_of(model: nn.Module, architecture_name: str) -> ComponentSpec:
    """The paper's components for an architecture: conv filters of the ResNets
    (downsample convs excluded), neurons of the ViT (coar_replication.architectures says which)."""
    return component_spec(model, architecture(architecture_name).kind)


def normalized_images(
    images: np.ndarray, normalization: dict, device: torch.device, chunk: int = 1024
) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float32 normalised on `device`, converted chunk by chunk so
    that the float copy exists only on the device."""
    mean = torch.tensor(normalization["mean"], device=device).view(1, 3, 1, 1)
    std = torch.tensor(normalization["std"], device=device).view(1, 3, 1, 1)
    out = torch.empty(images.shape, dtype=torch.float32, device=device)
    for i in range(0, len(images), chunk):
        block = torch.from_numpy(images[i : i + chunk]).to(device).float()
        out[i : i + chunk] = (block - mean) / std
    return out


EXAMPLE_ARRAYS = ("x", "y", "ids", "g")  # images, labels, positions in the source, groups


def load_examples(data_path, split: str) -> dict[str, np.ndarray]:
    """One split's arrays of an examples file (coar_replication.datasets), keyed x, y, ids and g."""
    with np.load(data_path) as data:
        if f"x_{split}" not in data.files:
            splits = sorted(k[2:] for k in data.files if k.startswith("x_"))
            raise KeyError(f"{data_path}: no split {split!r} (has {splits})")
        return {
            name: data[f"{name}_{split}"]
            for name in EXAMPLE_ARRAYS
            if f"{name}_{split}" in data.files
        }


def load_image_setup(
    name: str, model_path, data_path, device: torch.device, split: str = "test"
) -> Setup:
    """A paper setup on the examples of one split (default: the test/evaluation split)."""
    model, info = load_checkpoint(model_path)
    spec = components_of(model, info["architecture"])
    model = model.to(device)
    examples = load_examples(data_path, split)
    inputs = normalized_images(examples["x"], info["normalization"], device)
    labels = torch.from_numpy(examples["y"]).to(device)
    return Setup(name, model, spec, inputs, labels, margin, groups=examples.get("g"))
