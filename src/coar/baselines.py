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
  first-order Taylor estimate of zeroing c's parameters, from per-example
  parameter gradients.
- ``atp`` (attribution patching): delta_c ~ (da_c) . (a_c^ablated - a_c), the
  activation gradient times the change of c's activation when c is ablated.
  For a component whose activation is linear in its own weights (a conv filter,
  a linear row, a Conv1D input row) the chain rule makes this *exactly* the
  gp estimate; the two are computed by independent code paths (parameters vs
  activations) and agree to float precision.
- ``nc`` / ``ii`` (neuron conductance, internal influence): captum's
  path-integrated gradients from a zero input to the example, taken at each
  component's units and summed over the unit's positions (and features).
  They are scores, not counterfactual estimates: we read a unit's score as the
  contribution that ablating it removes (delta_c = -score_c), which is how the
  paper compares them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from captum._utils.gradient import compute_layer_gradients_and_eval
from captum.attr._utils.approximation_methods import approximation_parameters
from torch import nn

from coar.attributions import Attributions
from coar.components import ComponentGroup, ComponentSpec, is_conv1d
from coar.masking import MaskedModel, ablated_outputs

log = logging.getLogger(__name__)

BASELINES = ("loo", "gp", "nc", "ii", "atp")

OutputFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class UnitLayout:
    """Where a group's components live: the activation they own and the weights that make it.

    side: "output" (a unit is an output channel/row of the module) or "input"
    (an input feature of the module, e.g. a GPT-2 Conv1D row).
    activation_dim: the axis of that activation indexing the units.
    weight: name of the module's parameter holding the components' weights;
    weight_dim: its axis indexing the units.
    """

    side: str
    activation_dim: int
    weight: str
    weight_dim: int


def unit_layout(module: nn.Module, group: ComponentGroup) -> UnitLayout:
    """The layout of one component group; a new component kind adds its case here."""
    if isinstance(module, nn.Conv2d):
        return UnitLayout("output", 1, "weight", 0)
    if isinstance(module, nn.Linear):
        return UnitLayout("output", -1, "weight", 0)
    if is_conv1d(module) and group.unit == "in":  # GPT-2 rows: Conv1D.weight[j], input j
        return UnitLayout("input", -1, "weight", 0)
    raise TypeError(
        f"component module {group.module!r} is {type(module).__name__}: "
        "the baselines know Conv2d filters and Linear rows"
    )


def _layouts(model: nn.Module, spec: ComponentSpec) -> list[tuple[ComponentGroup, UnitLayout]]:
    spec.check(model)
    modules = dict(model.named_modules())
    return [(g, unit_layout(modules[g.module], g)) for g in spec.groups]


def _per_unit(tensor: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    """Sum a (batch, ...) tensor over everything but the batch and the unit axis: (batch, size)."""
    moved = tensor.movedim(dim if dim >= 0 else tensor.dim() + dim, 1)
    if moved.shape[1] != size:
        raise ValueError(
            f"activation has {moved.shape[1]} units along its unit axis, expected {size}"
        )
    return moved.reshape(moved.shape[0], size, -1).sum(-1)


def _ablated_activation(module: nn.Module, layout: UnitLayout, act: torch.Tensor) -> torch.Tensor:
    """What a unit's activation becomes when its weights are zeroed (as the masking engine does)."""
    bias = getattr(module, "bias", None)
    if layout.side == "input" or bias is None:
        return torch.zeros_like(act)
    shape = [1] * act.dim()
    shape[layout.activation_dim] = -1
    return bias.detach().view(shape).expand_as(act)


def _example_chunks(n_examples: int, per_example_cost: int, max_batch: int):
    step = max(1, max_batch // max(1, per_example_cost))
    for start in range(0, n_examples, step):
        yield slice(start, min(n_examples, start + step))


@torch.no_grad()
def full_outputs(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    output_fn: OutputFn,
    max_batch: int = 4096,
) -> torch.Tensor:
    """Outputs of the unablated model: float32 (N,) on the CPU."""
    outs = [
        output_fn(model(inputs[s]), labels[s]).float().cpu()
        for s in _example_chunks(len(inputs), 1, max_batch)
    ]
    return torch.cat(outs)


def leave_one_out(
    model: nn.Module,
    spec: ComponentSpec,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    output_fn: OutputFn,
    max_batch: int = 4096,
) -> torch.Tensor:
    """-delta: f(full) - f(ablate c alone), exactly, for every component: (N, |C|)."""
    masked = MaskedModel(model.eval(), spec)
    full = full_outputs(model, inputs, labels, output_fn, max_batch)
    n = len(spec)
    chunk = max(1, max_batch // len(inputs))
    weight = torch.empty(len(inputs), n)
    for c0 in range(0, n, chunk):
        ids = torch.arange(c0, min(n, c0 + chunk))
        masks = torch.ones(len(ids), n, dtype=torch.bool)
        masks[torch.arange(len(ids)), ids] = False
        single = ablated_outputs(
            masked, inputs, labels, masks.to(inputs.device), output_fn, max_batch=max_batch
        )
        weight[:, ids] = full[:, None] - single.T
    return weight


def gradient_times_parameter(
    model: nn.Module,
    spec: ComponentSpec,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    output_fn: OutputFn,
    max_batch: int = 4096,
) -> torch.Tensor:
    """-delta ~ (dF/dtheta_c) . theta_c, from per-example parameter gradients: (N, |C|)."""
    from torch.func import functional_call, grad, vmap

    layouts = _layouts(model, spec)
    state = {k: v.detach() for k, v in model.named_parameters()}
    state.update({k: v.detach() for k, v in model.named_buffers()})
    names = [f"{g.module}.{lay.weight}" for g, lay in layouts]
    weights = {name: state[name] for name in names}

    def output_of_one(w, x, y):
        out = functional_call(model, {**state, **w}, (x.unsqueeze(0),))
        return output_fn(out, y.unsqueeze(0)).squeeze(0)

    vmapped = vmap(grad(output_of_one), in_dims=(None, 0, 0))

    def looped(w, xs, ys):
        # Models with data-dependent control flow (Hugging Face's GPT-2 builds its
        # attention mask from the inputs) cannot be vmapped: one gradient per example.
        per_example = [grad(output_of_one)(w, x, y) for x, y in zip(xs, ys, strict=True)]
        return {name: torch.stack([g[name] for g in per_example]) for name in w}

    def per_example_grad(w, xs, ys):
        nonlocal vmapped
        if vmapped is not None:
            try:
                return vmapped(w, xs, ys)
            except RuntimeError as error:
                if "vmap" not in str(error):
                    raise
                log.info("model cannot be vmapped (%s); per-example gradients in a loop", error)
                vmapped = None
        return looped(w, xs, ys)

    n_params = sum(w.numel() for w in weights.values())
    # A chunk's per-example gradients hold chunk x n_params floats: keep them near 64M.
    chunk = max(1, min(max_batch, (64 << 20) // n_params))
    result = torch.empty(len(inputs), len(spec))
    for s in _example_chunks(len(inputs), 1, chunk):
        grads = per_example_grad(weights, inputs[s], labels[s])
        for (g, lay), name in zip(layouts, names, strict=True):
            prod = grads[name] * weights[name].unsqueeze(0)
            dim = lay.weight_dim + 1  # after the example axis
            result[s, g.offset : g.offset + g.size] = (
                prod.movedim(dim, 1).reshape(prod.shape[0], g.size, -1).sum(-1).float().cpu()
            )
    return result


def attribution_patching(
    model: nn.Module,
    spec: ComponentSpec,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    output_fn: OutputFn,
    max_batch: int = 4096,
) -> torch.Tensor:
    """-delta ~ (dF/da_c) . (a_c - a_c^ablated), all components in one backward pass: (N, |C|)."""
    layouts = _layouts(model, spec)
    modules = dict(model.named_modules())
    captured: dict[str, torch.Tensor] = {}

    def capture_output(name):
        def hook(module, args, out):
            captured[name] = out

        return hook

    def capture_input(name):
        def hook(module, args):
            captured[name] = args[0]

        return hook

    handles = []
    for g, lay in layouts:
        module = modules[g.module]
        if lay.side == "output":
            handles.append(module.register_forward_hook(capture_output(g.module)))
        else:
            handles.append(module.register_forward_pre_hook(capture_input(g.module)))
    result = torch.empty(len(inputs), len(spec))
    try:
        for s in _example_chunks(len(inputs), 1, max_batch):
            with torch.enable_grad():
                total = output_fn(model(inputs[s]), labels[s]).sum()
                acts = [captured[g.module] for g, _ in layouts]
                # Examples do not interact (eval mode), so the gradient of the sum holds
                # every example's own activation gradients.
                grads = torch.autograd.grad(total, acts)
            for (g, lay), act, grad in zip(layouts, acts, grads, strict=True):
                act = act.detach()
                change = act - _ablated_activation(modules[g.module], lay, act)
                result[s, g.offset : g.offset + g.size] = (
                    _per_unit(grad * change, lay.activation_dim, g.size).float().cpu()
                )
    finally:
        for handle in handles:
            handle.remove()
    return result


def _path_integrated(
    method: str,
    model: nn.Module,
    spec: ComponentSpec,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    output_fn: OutputFn,
    n_steps: int,
    max_batch: int,
) -> torch.Tensor:
    """captum's LayerConductance ("nc") or InternalInfluence ("ii") at every component layer.

    Both integrate gradients at the layers along the straight path from a zero
    input to the example (captum's default baseline, Gauss-Legendre nodes). To
    take every component layer from the same forward/backward passes instead of
    one captum call per layer, this applies captum's own formulas to captum's
    multi-layer gradient routine; `tests/test_baselines.py` checks the result
    against `captum.attr.LayerConductance` / `InternalInfluence` layer by layer.
    """
    if not inputs.is_floating_point():
        raise TypeError(
            f"{method}: path-integrated gradients need floating-point inputs, got {inputs.dtype}"
        )
    layouts = _layouts(model, spec)
    modules = dict(model.named_modules())
    step_sizes_fn, alphas_fn = approximation_parameters("gausslegendre")
    if method == "nc":
        n_points, step_sizes = n_steps + 1, None
    else:
        n_points, step_sizes = n_steps, torch.tensor(step_sizes_fn(n_steps))
    alphas = alphas_fn(n_points)

    def forward(x, y):
        return output_fn(model(x), y)

    result = torch.empty(len(inputs), len(spec))
    for side in ("output", "input"):
        on_side = [(g, lay) for g, lay in layouts if lay.side == side]
        if not on_side:
            continue
        layers = [modules[g.module] for g, _ in on_side]
        for s in _example_chunks(len(inputs), n_points, max_batch):
            x, y = inputs[s], labels[s]
            n = x.shape[0]
            path = torch.cat([a * x for a in alphas]).requires_grad_()
            grads, evals = compute_layer_gradients_and_eval(
                forward,
                layers,
                path,
                additional_forward_args=(y.repeat(n_points, *([1] * (y.dim() - 1))),),
                attribute_to_layer_input=(side == "input"),
            )
            for (g, lay), (grad,), (value,) in zip(on_side, grads, evals, strict=True):
                if method == "nc":
                    # captum LayerConductance: gradient x change of the layer between path points
                    per_point = grad[:-n] * (value[n:] - value[:-n])
                    attr = per_point.view(n_steps, n, *grad.shape[1:]).sum(0)
                else:
                    # captum InternalInfluence: quadrature-weighted mean of the gradients
                    weights = step_sizes.to(grad).view(n_steps, *([1] * grad.dim()))
                    attr = (grad.view(n_steps, n, *grad.shape[1:]) * weights).sum(0)
                result[s, g.offset : g.offset + g.size] = (
                    _per_unit(attr.detach(), lay.activation_dim, g.size).float().cpu()
                )
    return result


def compute_baseline(
    method: str,
    model: nn.Module,
    spec: ComponentSpec,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    output_fn: OutputFn,
    *,
    example_ids: list[int] | None = None,
    n_steps: int = 50,
    max_batch: int = 4096,
    meta: dict | None = None,
) -> Attributions:
    """One baseline's attributions (|C| x N, raw mask units, bias = f(full) - sum of weights)."""
    if method not in BASELINES:
        raise ValueError(f"unknown baseline {method!r} (known: {', '.join(BASELINES)})")
    model = model.eval()
    start = time.perf_counter()
    if method == "loo":
        weight = leave_one_out(model, spec, inputs, labels, output_fn, max_batch)
    elif method == "gp":
        weight = gradient_times_parameter(model, spec, inputs, labels, output_fn, max_batch)
    elif method == "atp":
        weight = attribution_patching(model, spec, inputs, labels, output_fn, max_batch)
    else:
        weight = _path_integrated(
            method, model, spec, inputs, labels, output_fn, n_steps, max_batch
        )
    full = full_outputs(model, inputs, labels, output_fn, max_batch).double().numpy()
    weight = weight.double().numpy().T  # (|C|, N)
    if not np.isfinite(weight).all():
        raise FloatingPointError(f"baseline {method!r}: non-finite attributions")
    elapsed = time.perf_counter() - start
    log.info("%s: %d components x %d examples in %.1f s", method, len(spec), len(inputs), elapsed)
    return Attributions(
        weight=weight,
        bias=full - weight.sum(0),
        component_names=spec.names(),
        example_ids=list(range(len(inputs))) if example_ids is None else list(example_ids),
        meta={
            "method": method,
            **({"n_steps": n_steps} if method in ("nc", "ii") else {}),
            "seconds": elapsed,
            **(meta or {}),
        },
    )
