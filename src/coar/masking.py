"""Masking engine: evaluate many ablated copies of a model in one batch.

A batch holds K masks x E examples, mask-major (row k*E + e is example e under
mask k). Forward hooks on every component module multiply each sample's output
units by its own keep-mask, which is exactly what zeroing those units' weights
would give: a zeroed conv filter or linear row outputs its bias (0 if none).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from coar.components import ComponentSpec


def _unit_view(mask: torch.Tensor, module: nn.Module, out: torch.Tensor) -> torch.Tensor:
    """Reshape a (batch, units) mask so that it broadcasts over the module's output."""
    if isinstance(module, nn.Conv2d):
        return mask.view(mask.shape[0], mask.shape[1], *([1] * (out.dim() - 2)))
    return mask.view(mask.shape[0], *([1] * (out.dim() - 2)), mask.shape[1])


def _bias_view(bias: torch.Tensor, module: nn.Module, out: torch.Tensor) -> torch.Tensor:
    if isinstance(module, nn.Conv2d):
        return bias.view(1, -1, *([1] * (out.dim() - 2)))
    return bias


class MaskedModel:
    """Wrap a model and a component spec; call with examples and a stack of keep-masks."""

    def __init__(self, model: nn.Module, spec: ComponentSpec):
        spec.check(model)
        self.model = model
        self.spec = spec
        self._modules = dict(model.named_modules())
        self._batch_mask: torch.Tensor | None = None

    def _hook(self, group):
        def hook(module, inputs, out):
            keep = self._batch_mask[:, group.offset : group.offset + group.size].to(out.dtype)
            keep = _unit_view(keep, module, out)
            # Hooks run only under no_grad (see __call__): modify the fresh output in place.
            out.mul_(keep)
            if module.bias is not None:
                out.add_(_bias_view(module.bias.to(out.dtype), module, out) * (1 - keep))
            return out

        return hook

    @contextmanager
    def _hooked(self, per_sample_mask: torch.Tensor) -> Iterator[None]:
        self._batch_mask = per_sample_mask
        handles = [
            self._modules[g.module].register_forward_hook(self._hook(g)) for g in self.spec.groups
        ]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
            self._batch_mask = None

    @torch.no_grad()
    def __call__(self, inputs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Model outputs for every (mask, example) pair: shape (K * E, ...), mask-major."""
        masks = torch.as_tensor(masks, device=inputs.device)
        if masks.dim() != 2 or masks.shape[1] != len(self.spec):
            raise ValueError(
                f"masks must have shape (K, {len(self.spec)}), got {tuple(masks.shape)}"
            )
        n_examples = inputs.shape[0]
        batch = inputs.repeat(masks.shape[0], *([1] * (inputs.dim() - 1)))
        per_sample = masks.repeat_interleave(n_examples, dim=0)
        with self._hooked(per_sample):
            return self.model(batch)


@torch.no_grad()
def ablated_outputs(
    masked: MaskedModel,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    masks: torch.Tensor,
    output_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    max_batch: int = 4096,
) -> torch.Tensor:
    """output_fn of every ablated model on every example: float32 tensor (K, E).

    Masks are processed in chunks so that one forward pass holds at most
    ``max_batch`` (mask, example) pairs; examples are chunked if needed too.
    """
    n_masks, n_examples = masks.shape[0], inputs.shape[0]
    ex_chunk = min(n_examples, max_batch)
    mask_chunk = max(1, max_batch // ex_chunk)
    out = torch.empty(n_masks, n_examples, dtype=torch.float32)
    for e0 in range(0, n_examples, ex_chunk):
        x, y = inputs[e0 : e0 + ex_chunk], labels[e0 : e0 + ex_chunk]
        for k0 in range(0, n_masks, mask_chunk):
            chunk = masks[k0 : k0 + mask_chunk]
            logits = masked(x, chunk)
            values = output_fn(logits, y.repeat(chunk.shape[0]))
            out[k0 : k0 + chunk.shape[0], e0 : e0 + x.shape[0]] = (
                values.float().view(chunk.shape[0], x.shape[0]).cpu()
            )
    return out
