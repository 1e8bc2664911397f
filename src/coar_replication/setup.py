"""A setup: a model, its components, its evaluation examples and its output function."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from coar import AttributionRun, ComponentSpec


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

    def engine_args(self) -> tuple:
        """(model, components, inputs, labels, output_fn): the leading arguments of
        `coar.ablate.ablate_rows` and `coar.compute_baseline`."""
        return self.model, self.spec, self.inputs, self.labels, self.output_fn

    def attribution_run(
        self,
        *,
        n_masks: int,
        alpha: float,
        seed: int,
        stream: str = "train",
        name: str | None = None,
        **settings,
    ) -> AttributionRun:
        """A `coar.AttributionRun` of this setup's model, components, examples and output
        (``settings``: masks_per_batch, precision, compile, store, progress); ``name``
        labels its progress (default: the setup's name). Its shards are fitted by the
        workflow's fit step, on the device and with the solver of the config, so the run
        itself checks no fit cost (``solver=None``)."""
        settings.setdefault("solver", None)
        return AttributionRun(
            self.model,
            self.inputs,
            self.labels,
            components=self.spec,
            output=self.output_fn,
            n_masks=n_masks,
            alpha=alpha,
            seed=seed,
            stream=stream,
            device=self.labels.device,
            name=self.name if name is None else name,
            **settings,
        )
