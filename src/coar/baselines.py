"""Baseline component attributions, in the same format and units as Coar's.

Every method returns an `Attributions` whose prediction for a keep-mask v is
``bias + v @ weight`` (raw mask units, one column per example), so one
evaluation path scores Coar and every baseline alike.

Units. Each method estimates, per component c and example, delta_c: the change
of the output when c alone is ablated (f(ablate c) - f(full)). Adding these
effects up over the ablated components gives the linear prediction

    g(v) = f(full) + sum_c (1 - v_c) * delta_c,

that is ``weight[c] = -delta_c`` and ``bias = f(full) + sum_c delta_c``: a
positive weight means keeping the component raises the output, as for Coar.

- ``loo`` (leave-one-out): delta_c measured exactly, one ablated model per
  component, batched with the masking engine.
- ``gp`` (gradient x parameter): delta_c ~ -(dF/dtheta_c) . theta_c, the
  first-order Taylor estimate of zeroing c's weights (the slice that
  `ComponentSpec.unit_weights` names), from per-example parameter gradients.
- ``atp`` (attribution patching): delta_c ~ (dF/da_c) . (a_c^ablated - a_c),
  the activation gradient times the change of c's activation when c is
  ablated. Every component kind we support is linear in its own weights (conv
  filters, linear rows, Conv1D input rows, Q/K/V rows, heads read out by the
  output projection), so the chain rule makes this *exactly* the gp estimate;
  the two are computed by independent code paths (activations vs parameters)
  and the tests check that they agree.
- ``nc`` / ``ii`` (neuron conductance, internal influence): captum's
  path-integrated gradients from a zero input (for a language model: zero
  token embeddings) to the example, taken at each component's activation and
  summed over its positions and features. They are scores, not counterfactual
  estimates: we read a component's score as the contribution that ablating it
  removes (delta_c = -score_c), which is how the paper compares them.

Component kinds plug in through `coar.components.UNIT_KINDS`: which activation a
component owns (`_ExposedAttention.tap`) and which weights it zeroes
(`ComponentSpec.unit_weights`). A gated MLP neuron (unit ``gated``) is read at
down_proj's input and its gp slice is down_proj's column: zeroing it alone
removes the neuron (the gate and up rows that ablation zeroes as well change
nothing more), so gp and atp still agree. Baselines take batch-first inputs
only: a model with sequence-first attention is refused.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from coar.attention import check_patchable, patch_self_attention, self_attention, unpatch
from coar.attributions import Attributions
from coar.components import PACKED_QKV, ComponentGroup, ComponentSpec
from coar.masking import (
    Inputs,
    MaskedModel,
    ablated_outputs,
    batch_size_of,
    call_model,
    resolve_batch_dim,
    take,
)

log = logging.getLogger(__name__)

BASELINES = ("loo", "gp", "nc", "ii", "atp")

# A gradient pass keeps every activation for the backward pass: it gets this fraction
# of the forward passes' batch.
GRADIENT_BATCH_FRACTION = 4

OutputFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _repeat(tensor: torch.Tensor, times: int) -> torch.Tensor:
    return tensor.repeat(times, *([1] * (tensor.dim() - 1)))


def _example_chunks(n_examples: int, step: int) -> Iterator[slice]:
    step = max(1, step)
    for start in range(0, n_examples, step):
        yield slice(start, min(n_examples, start + step))


# --------------------------------------------------------------- activations
@dataclass(frozen=True)
class Tap:
    """Where a group's components are read as activations.

    The activation is ``module``'s output or input (``side``); along ``dim``,
    component j owns features ``j*width .. (j+1)*width - 1``. Ablating the
    component sets them to ``ablated`` (a per-feature bias, or zero if None):
    exactly what the masking engine does, so the activation change is the
    ablation's own.
    """

    module: nn.Module
    side: str
    dim: int
    width: int = 1
    ablated: torch.Tensor | None = None
    start: int = 0  # the group's first unit on that axis (a group can cover a range)


class _ExposedAttention:
    """While active, every ``nn.MultiheadAttention`` runs `coar.attention.self_attention`,
    in which the packed Q/K/V projection passes through an identity module
    (``qkv[name]``) and ``out_proj`` is called as a module, so that hooks see the
    activations of in_proj rows, heads and out_proj rows. (The module's own forward uses
    ``out_proj.weight`` directly and has nothing to hook.)"""

    def __init__(self, model: nn.Module):
        self.attentions = {
            name: m for name, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)
        }
        self.qkv = {name: nn.Identity() for name in self.attentions}

    def __enter__(self):
        for name, module in self.attentions.items():
            check_patchable(module, name)
        for name, module in self.attentions.items():
            patch_self_attention(module, name, self._forward(name), "baseline")
        return self

    def __exit__(self, *exc):
        for module in self.attentions.values():
            unpatch(module)

    def _forward(self, name: str):
        tap = self.qkv[name]

        def forward(module, x, attn_mask, is_causal, **extra):
            # a cross-attention has no packed projection to tap (its in_proj rows are
            # refused by the masking engine too)
            on_qkv = tap if x is extra["key"] is extra["value"] else None
            return self_attention(module, x, attn_mask, is_causal, on_qkv=on_qkv, **extra)

        return forward

    def tap(self, model: nn.Module, group: ComponentGroup) -> Tap:
        """The activation of a component group (see `Tap`), as `UNIT_KINDS` says."""
        module = dict(model.named_modules())[group.module]
        kind = group.kind(module)
        path = kind.site_of(module)
        if path == PACKED_QKV:
            site = self.qkv[group.module]
        else:
            site = module.get_submodule(path) if path else module
        return Tap(site, kind.side, kind.dim, kind.width(module), kind.ablated(module), group.start)


def _per_component(tensor: torch.Tensor, tap: Tap, size: int) -> torch.Tensor:
    """Sum a (batch, ...) tensor over everything but the batch and each component's
    features: (batch, size)."""
    moved = tensor.movedim(tap.dim if tap.dim >= 0 else tensor.dim() + tap.dim, 1)
    if moved.shape[1] < (tap.start + size) * tap.width:
        raise ValueError(
            f"activation has {moved.shape[1]} features on its component axis, "
            f"expected at least {tap.start + size} x {tap.width}"
        )
    moved = moved.narrow(1, tap.start * tap.width, size * tap.width)
    return moved.reshape(moved.shape[0], size, -1).sum(-1)


def _ablated_activation(tap: Tap, act: torch.Tensor) -> torch.Tensor:
    if tap.ablated is None:
        return torch.zeros_like(act)
    shape = [1] * act.dim()
    shape[tap.dim] = -1
    return tap.ablated.detach().to(act.dtype).view(shape).expand_as(act)


@contextmanager
def _capturing(taps: list[Tap]) -> Iterator[list[torch.Tensor | None]]:
    """Record each tap's activation (in the order given) during forward passes."""
    captured: list[torch.Tensor | None] = [None] * len(taps)

    def output_hook(i):
        def hook(module, args, out):
            captured[i] = out

        return hook

    def input_hook(i):
        def hook(module, args):
            captured[i] = args[0]

        return hook

    handles = [
        tap.module.register_forward_hook(output_hook(i))
        if tap.side == "output"
        else tap.module.register_forward_pre_hook(input_hook(i))
        for i, tap in enumerate(taps)
    ]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


# ------------------------------------------------------------------ methods
def leave_one_out(
    model: nn.Module,
    spec: ComponentSpec,
    inputs: Inputs,
    labels: torch.Tensor,
    output_fn: OutputFn,
    max_batch: int = 4096,
    autocast: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """f(full) - f(ablate c alone), exactly, for every component: (N, |C|); and f(full) (N,).

    Both come from the masking engine, as the training and evaluation ablations do,
    with the same ``autocast`` (bf16; default: on CUDA), so they share its numerics.
    """
    masked = MaskedModel(model.eval(), spec)
    n, n_examples = len(spec), batch_size_of(inputs)
    device = labels.device
    keep_all = torch.ones(1, n, dtype=torch.bool, device=device)
    full = ablated_outputs(
        masked, inputs, labels, keep_all, output_fn, max_batch=max_batch, autocast=autocast
    )[0]
    weight = torch.empty(n_examples, n)
    chunk = max(1, max_batch // n_examples)
    for c0 in range(0, n, chunk):
        ids = torch.arange(c0, min(n, c0 + chunk))
        masks = torch.ones(len(ids), n, dtype=torch.bool)
        masks[torch.arange(len(ids)), ids] = False
        single = ablated_outputs(
            masked, inputs, labels, masks.to(device), output_fn, max_batch, autocast
        )
        weight[:, ids] = full[:, None] - single.T
    return weight, full


def gradient_times_parameter(
    model: nn.Module,
    spec: ComponentSpec,
    inputs: Inputs,
    labels: torch.Tensor,
    output_fn: OutputFn,
) -> torch.Tensor:
    """(dF/dtheta_c) . theta_c = -delta_c, from per-example parameter gradients: (N, |C|).

    theta_c is the weight slice that ablating c zeroes (`ComponentSpec.unit_weights`).
    One backward pass per example: per-example gradients by ``torch.func.vmap`` would
    be faster but fail on Hugging Face models, whose attention-mask code branches on
    tensor values.
    """
    spec.check(model)
    unit_weights = spec.unit_weights(model)
    params = list({id(w.param): w.param for _, w in unit_weights}.values())
    index = {id(p): i for i, p in enumerate(params)}
    n_examples = batch_size_of(inputs)
    result = torch.empty(n_examples, len(spec))
    with _ExposedAttention(model), torch.enable_grad():
        for i in range(n_examples):
            one = slice(i, i + 1)
            output = output_fn(call_model(model, take(inputs, one)), labels[one]).sum()
            grads = torch.autograd.grad(output, params, allow_unused=True)
            for g, w in unit_weights:
                grad = grads[index[id(w.param)]]
                if grad is None:  # the output does not depend on these weights
                    result[i, g.offset : g.offset + g.size] = 0
                    continue
                theta = w.units(g.start, g.size).detach()
                grad = grad.narrow(w.dim, g.start * w.width, g.size * w.width)
                prod = (grad * theta).movedim(w.dim, 0).reshape(g.size, -1)
                result[i, g.offset : g.offset + g.size] = prod.sum(-1).float().cpu()
    return result


def attribution_patching(
    model: nn.Module,
    spec: ComponentSpec,
    inputs: Inputs,
    labels: torch.Tensor,
    output_fn: OutputFn,
    max_batch: int = 4096,
) -> torch.Tensor:
    """(dF/da_c) . (a_c - a_c^ablated) = -delta_c, all components in one backward: (N, |C|)."""
    spec.check(model)
    n_examples = batch_size_of(inputs)
    result = torch.empty(n_examples, len(spec))
    with _ExposedAttention(model) as exposed:
        taps = [exposed.tap(model, g) for g in spec.groups]
        with _capturing(taps) as captured:
            for s in _example_chunks(n_examples, max_batch):
                with torch.enable_grad():
                    total = output_fn(call_model(model, take(inputs, s)), labels[s]).sum()
                    acts = list(captured)
                    for g, act in zip(spec.groups, acts, strict=True):
                        if act is None:
                            raise RuntimeError(
                                f"component group {g.label!r}: its activation was never "
                                "computed (a module used without being called, or a "
                                "cross-attention's in_proj rows); exclude it"
                            )
                    # Examples do not interact (eval mode): the gradient of the sum holds
                    # every example's own activation gradients.
                    grads = torch.autograd.grad(total, acts)
                for g, tap, act, grad in zip(spec.groups, taps, acts, grads, strict=True):
                    change = act.detach() - _ablated_activation(tap, act.detach())
                    result[s, g.offset : g.offset + g.size] = (
                        _per_component(grad * change, tap, g.size).float().cpu()
                    )
    return result


def _interpolation(model: nn.Module, inputs: Inputs):
    """The float tensor that path methods interpolate from zero, and how to run the model
    on a stack of interpolated copies: images themselves, or a language model's token
    embeddings (other mapping entries, e.g. attention_mask, are repeated)."""
    if isinstance(inputs, Mapping):
        if "input_ids" not in inputs or not hasattr(model, "get_input_embeddings"):
            raise TypeError(
                "path-integrated baselines need float inputs, or token ids with a model "
                "that has get_input_embeddings()"
            )
        rest = {k: v for k, v in inputs.items() if k != "input_ids"}
        embedded = model.get_input_embeddings()(inputs["input_ids"]).detach()

        def run(path, times):
            return model(inputs_embeds=path, **{k: _repeat(v, times) for k, v in rest.items()})

        return embedded, run
    if not inputs.is_floating_point():
        raise TypeError(f"path-integrated baselines need float inputs, got {inputs.dtype}")
    return inputs, lambda path, times: model(path)


def path_integrated(
    method: str,
    model: nn.Module,
    spec: ComponentSpec,
    inputs: Inputs,
    labels: torch.Tensor,
    output_fn: OutputFn,
    n_steps: int = 50,
    max_batch: int = 4096,
) -> torch.Tensor:
    """captum's LayerConductance ("nc") or InternalInfluence ("ii") summed over each
    component's features: (N, |C|).

    Both integrate gradients at the component activations along the straight path
    from a zero input (captum's default baseline; for a language model, zero token
    embeddings) to the example, with captum's Gauss-Legendre nodes. To take every
    component layer from the same passes instead of one captum call per layer, this
    applies captum's own formulas to captum's multi-layer gradient routine;
    `tests/test_baselines.py` checks it against `captum.attr.LayerConductance` /
    `InternalInfluence` layer by layer.
    """
    if method not in ("nc", "ii"):
        raise ValueError(f"path-integrated baselines are 'nc' and 'ii', not {method!r}")
    spec.check(model)
    # captum loads matplotlib on import: only the path-integrated baselines pay for it.
    from captum._utils.gradient import compute_layer_gradients_and_eval
    from captum.attr._utils.approximation_methods import approximation_parameters

    step_sizes_fn, alphas_fn = approximation_parameters("gausslegendre")
    if method == "nc":
        n_points, step_sizes = n_steps + 1, None
    else:
        n_points, step_sizes = n_steps, torch.tensor(step_sizes_fn(n_steps))
    alphas = alphas_fn(n_points)
    n_examples = batch_size_of(inputs)
    result = torch.empty(n_examples, len(spec))
    with _ExposedAttention(model) as exposed:
        taps = [exposed.tap(model, g) for g in spec.groups]
        for side in ("output", "input"):
            on_side = [
                (g, tap) for g, tap in zip(spec.groups, taps, strict=True) if tap.side == side
            ]
            if not on_side:
                continue
            for s in _example_chunks(n_examples, max_batch // n_points):
                x, run = _interpolation(model, take(inputs, s))
                y = _repeat(labels[s], n_points)
                n = x.shape[0]
                path = torch.cat([a * x for a in alphas]).requires_grad_()
                grads, evals = compute_layer_gradients_and_eval(
                    lambda p: output_fn(run(p, n_points), y),  # noqa: B023 (called right here)
                    [tap.module for _, tap in on_side],
                    path,
                    attribute_to_layer_input=(side == "input"),
                )
                for (g, tap), (grad,), (value,) in zip(on_side, grads, evals, strict=True):
                    if method == "nc":
                        # LayerConductance: gradient x change of the layer between path points
                        attr = (grad[:-n] * (value[n:] - value[:-n])).unflatten(0, (n_steps, n))
                        attr = attr.sum(0)
                    else:
                        # InternalInfluence: quadrature-weighted sum of the gradients
                        weights = step_sizes.to(grad).view(n_steps, *([1] * grad.dim()))
                        attr = (grad.unflatten(0, (n_steps, n)) * weights).sum(0)
                    result[s, g.offset : g.offset + g.size] = (
                        _per_component(attr.detach(), tap, g.size).float().cpu()
                    )
    return result


@torch.no_grad()
def full_outputs(
    model: nn.Module, inputs: Inputs, labels: torch.Tensor, output_fn: OutputFn, max_batch: int
) -> torch.Tensor:
    """Outputs of the unablated model: float32 (N,) on the CPU."""
    return torch.cat(
        [
            output_fn(call_model(model, take(inputs, s)), labels[s]).float().cpu()
            for s in _example_chunks(batch_size_of(inputs), max_batch)
        ]
    )


def compute_baseline(
    method: str,
    model: nn.Module,
    spec: ComponentSpec,
    inputs: Inputs,
    labels: torch.Tensor,
    output_fn: OutputFn,
    *,
    example_ids: list[int] | None = None,
    n_steps: int = 50,
    max_batch: int = 4096,
    autocast: bool | None = None,
    meta: dict | None = None,
) -> Attributions:
    """One baseline's attributions: |C| x N, raw mask units, bias = f(full) - sum of weights.

    ``inputs`` is a tensor or a mapping of tensors (e.g. input_ids, attention_mask);
    ``output_fn(model output, labels)`` gives one output per example. ``max_batch``
    bounds the samples of one forward pass (gradient passes take a quarter of it: they
    keep activations for the backward pass); ``autocast`` (bf16, default on CUDA)
    applies to leave-one-out, which shares the masking engine with the ablations it is
    compared with. The gradient methods run in fp32.

    >>> from coar.components import conv_filters
    >>> from coar.outputs import margin
    >>> model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(),
    ...                       nn.Linear(12, 2)).eval()
    >>> x, y = torch.randn(5, 1, 4, 4), torch.zeros(5, dtype=torch.long)
    >>> loo = compute_baseline("loo", model, conv_filters(model), x, y, margin)
    >>> loo.weight.shape, loo.meta["method"]
    ((3, 5), 'loo')
    """
    if method not in BASELINES:
        raise ValueError(f"unknown baseline {method!r} (known: {', '.join(BASELINES)})")
    model = model.eval()
    resolve_batch_dim(model, None)  # batch-first only: refuses sequence-first attention
    n_examples = batch_size_of(inputs)
    gradient_batch = max(1, max_batch // GRADIENT_BATCH_FRACTION)
    start = time.perf_counter()
    full = None
    if method == "loo":
        weight, full = leave_one_out(
            model, spec, inputs, labels, output_fn, max_batch, autocast=autocast
        )
    elif method == "gp":
        weight = gradient_times_parameter(model, spec, inputs, labels, output_fn)
    elif method == "atp":
        weight = attribution_patching(model, spec, inputs, labels, output_fn, gradient_batch)
    else:
        weight = path_integrated(
            method, model, spec, inputs, labels, output_fn, n_steps, gradient_batch
        )
    if full is None:
        full = full_outputs(model, inputs, labels, output_fn, max_batch)
    weight = weight.double().numpy().T  # (|C|, N)
    if not np.isfinite(weight).all():
        raise FloatingPointError(f"baseline {method!r}: non-finite attributions")
    elapsed = time.perf_counter() - start
    log.info("%s: %d components x %d examples in %.1f s", method, len(spec), n_examples, elapsed)
    return Attributions(
        weight=weight,
        bias=full.double().numpy() - weight.sum(0),
        component_names=spec.names(),
        example_ids=list(range(n_examples)) if example_ids is None else list(example_ids),
        meta={
            "method": method,
            **({"n_steps": n_steps} if method in ("nc", "ii") else {}),
            **(meta or {}),
        },
    )
