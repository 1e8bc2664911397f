"""Check that the masking engine equals literally zeroing the weights, on a model.

`check_exact` runs a few random keep-masks through the masking engine
(`coar.masking.MaskedModel`) and through the model with the ablated weight
slices zeroed in place (`coar.components.dropped_slices`; the slices are saved
first and restored afterwards, also on error, so no copy of the model is made),
and returns the worst difference relative to the outputs' scale. `verify_exact`
raises if that exceeds a tolerance; `coar.attribute` and `coar.AttributionRun`
call it once on a small batch unless ``check_exact=False``.

The check runs without autocast, whatever precision a run uses: it tests the
engine's logic (which activation each component's mask reaches), not bf16
rounding, so fp32 weights get the tight tolerance `TOLERANCE_FP32` and only
half-precision weights the looser `TOLERANCE_HALF`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from coar.components import ComponentSpec, dropped_slices, keep_mask
from coar.masking import Inputs, MaskedModel, batch_size_of, call_model, resolve_batch_dim
from coar.masks import sample_masks

# Worst relative difference tolerated by `verify_exact`: fp32 (or fp64) weights, and
# half-precision weights (bf16/fp16 rounding differs between kernels).
TOLERANCE_FP32 = 1e-4
TOLERANCE_HALF = 1e-2


def _tensor_of(output) -> torch.Tensor:
    """The tensor of a model's output: itself, its ``logits``, or its first element."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, Mapping):
        return _tensor_of(next(iter(output.values())))
    if isinstance(output, (tuple, list)) and output:
        return _tensor_of(output[0])
    last = getattr(output, "last_hidden_state", None)
    if isinstance(last, torch.Tensor):
        return last
    raise TypeError(f"cannot find a tensor in the model's output ({type(output).__name__})")


@torch.no_grad()
def check_exact(
    model: nn.Module,
    spec: ComponentSpec,
    inputs: Inputs,
    labels: torch.Tensor | None = None,
    *,
    n_masks: int = 3,
    alpha: float = 0.5,
    seed: int = 0,
    output: Callable | None = None,
    batch_dim: int | None = None,
) -> float:
    """max |engine - zeroed| / max |zeroed| over ``n_masks`` random masks and every example.

    The masks ablate a fraction ``alpha`` of the components (drawn from ``seed``).
    Compared are ``output(model_output, labels)`` (one value per example) if
    ``output`` is given, else the model's output tensor (its ``logits`` if it has
    them) in full; the scale is the largest absolute value of the zeroed model's
    outputs over all masks (1 if they are all zero). The model must be in eval mode.
    ``batch_dim`` as `coar.masking.MaskedModel`.

    >>> import coar
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    >>> check_exact(model, coar.linear_neurons(model), torch.randn(5, 4)) < 1e-6
    True
    """
    if model.training:
        raise ValueError("check_exact: the model is in training mode; call model.eval() first")
    batch_dim = resolve_batch_dim(model, batch_dim)
    masked = MaskedModel(model, spec, batch_dim=batch_dim)
    first = next(iter(inputs.values())) if isinstance(inputs, Mapping) else inputs
    masks = torch.from_numpy(sample_masks(seed, "check_exact", range(n_masks), len(spec), alpha))
    masks = keep_mask(masks).to(first.device)
    n_examples = batch_size_of(inputs, batch_dim)

    def values(out, repeats: int) -> torch.Tensor:
        if output is None:
            return _tensor_of(out).float()
        y = labels if repeats == 1 else labels.repeat(repeats, *([1] * (labels.dim() - 1)))
        return output(out, y).float()

    engine = values(masked(inputs, masks), n_masks)
    reference = []
    for keep in masks:
        saved = []
        try:
            for param, dim, indices in dropped_slices(model, spec, keep.cpu()):
                saved.append((param, dim, indices, param.index_select(dim, indices).clone()))
                param.index_fill_(dim, indices, 0)
            reference.append(values(call_model(model, inputs), 1))
        finally:
            for param, dim, indices, values_before in reversed(saved):
                param.index_copy_(dim, indices, values_before)
    along = 0 if output is not None else batch_dim
    reference = torch.cat(reference, dim=along)
    if engine.shape != reference.shape:
        raise ValueError(
            f"check_exact: the engine's outputs have shape {tuple(engine.shape)}, the zeroed "
            f"model's {tuple(reference.shape)} ({n_masks} masks x {n_examples} examples): is "
            "batch_dim right?"
        )
    scale = reference.abs().max().item() or 1.0
    return (engine - reference).abs().max().item() / scale


def tolerance_of(model: nn.Module) -> float:
    """`TOLERANCE_FP32`, or `TOLERANCE_HALF` if any weight is in half precision."""
    half = any(p.dtype in (torch.float16, torch.bfloat16) for p in model.parameters())
    return TOLERANCE_HALF if half else TOLERANCE_FP32


def verify_exact(
    model: nn.Module,
    spec: ComponentSpec,
    inputs: Inputs,
    labels: torch.Tensor | None = None,
    *,
    output: Callable | None = None,
    batch_dim: int | None = None,
    n_masks: int = 2,
) -> float:
    """`check_exact` on the given (small) batch; raises if the difference exceeds the
    tolerance (`tolerance_of`), naming the spec's kind and the modules whose hooks did
    not run (the likely culprits: weights used without calling the module)."""
    difference = check_exact(
        model, spec, inputs, labels, n_masks=n_masks, output=output, batch_dim=batch_dim
    )
    tolerance = tolerance_of(model)
    if not difference <= tolerance:  # NaN fails too
        masked = MaskedModel(model, spec, batch_dim=batch_dim)
        keep = torch.ones(1, len(spec), dtype=torch.bool)
        first = next(iter(inputs.values())) if isinstance(inputs, Mapping) else inputs
        masked(inputs, keep.to(first.device))
        silent = [g.module for g in spec.groups if g.module not in masked.fired]
        modules = [g.module for g in spec.groups]
        raise RuntimeError(
            f"the masking engine differs from zeroing the weights by {difference:.3g} (relative; "
            f"tolerance {tolerance:g}) for components {spec.kind or 'of the given spec'!r} "
            f"(modules {', '.join(modules[:4])}{' ...' if len(modules) > 4 else ''})"
            + (
                f"; the hooks of {', '.join(silent[:4])} never ran (their weights are used "
                "without calling the module): exclude them"
                if silent
                else ""
            )
            + "; pass check_exact=False to skip this check"
        )
    return difference
