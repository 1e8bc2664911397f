"""Components: the units of a model that can be ablated, with stable names.

A component is one output unit of a module (a conv filter, a row of a linear
layer). Ablating it means zeroing its weights; the module's bias and any
following BatchNorm stay untouched.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

ABLATABLE = (nn.Conv2d, nn.Linear)


@dataclass(frozen=True)
class ComponentGroup:
    module: str  # dotted module path inside the model
    size: int  # number of output units (filters or rows)
    offset: int  # index of its first component in the flat component vector


class ComponentSpec:
    """An ordered list of component groups; component i has a flat index and a name."""

    def __init__(self, groups: Iterable[tuple[str, int]]):
        self.groups: list[ComponentGroup] = []
        offset = 0
        for module, size in groups:
            self.groups.append(ComponentGroup(module, int(size), offset))
            offset += int(size)
        self.n_components = offset

    def __len__(self) -> int:
        return self.n_components

    def names(self) -> list[str]:
        return [f"{g.module}[{j}]" for g in self.groups for j in range(g.size)]

    def table(self) -> list[tuple[str, int]]:
        return [(g.module, g.size) for g in self.groups]

    def check(self, model: nn.Module) -> None:
        """Fail with the culprit's name if a group does not match the model."""
        modules = dict(model.named_modules())
        for g in self.groups:
            if g.module not in modules:
                raise KeyError(f"component module {g.module!r} not found in the model")
            module = modules[g.module]
            if not isinstance(module, ABLATABLE):
                raise TypeError(
                    f"component module {g.module!r} is {type(module).__name__}, "
                    "expected Conv2d or Linear"
                )
            units = module.out_channels if isinstance(module, nn.Conv2d) else module.out_features
            if units != g.size:
                raise ValueError(
                    f"component module {g.module!r} has {units} output units, "
                    f"the spec says {g.size}"
                )


def conv_filters(model: nn.Module, exclude: Iterable[str] = ("shortcut", "downsample")):
    """Every Conv2d's output filters, skipping modules whose path contains an excluded word.

    The paper's ResNet components are all conv filters except the downsample
    (shortcut) convs.
    """
    excluded = tuple(exclude)
    return ComponentSpec(
        (name, m.out_channels)
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d) and not any(word in name for word in excluded)
    )


@torch.no_grad()
def zero_components(model: nn.Module, spec: ComponentSpec, keep: torch.Tensor) -> nn.Module:
    """Literally zero the weights of every component with keep == 0 (in place).

    This is the definition of ablation; every faster path is tested against it.
    """
    keep = torch.as_tensor(keep, dtype=torch.bool).cpu()
    if keep.shape != (len(spec),):
        raise ValueError(f"keep mask has shape {tuple(keep.shape)}, expected ({len(spec)},)")
    modules = dict(model.named_modules())
    for g in spec.groups:
        dropped = (~keep[g.offset : g.offset + g.size]).nonzero().flatten()
        weight = modules[g.module].weight
        weight[dropped.to(weight.device)] = 0
    return model
