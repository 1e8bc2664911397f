import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from captum.attr import InternalInfluence, LayerConductance
from torch import nn

from coar.baselines import (
    BASELINES,
    attribution_patching,
    compute_baseline,
    gradient_times_parameter,
)
from coar.components import ComponentSpec, conv_filters, zero_components
from coar.outputs import margin


def mlp(dtype=torch.float32):
    """A small linear-layer model with biases (components: the rows of both layers)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 4)).to(dtype).eval()
    return model, ComponentSpec([("0", 7), ("2", 4)])


def margin64(logits, labels):
    """The margin in float64 (coar.outputs.margin computes in float32): for finite differences."""
    correct = logits.gather(1, labels.view(-1, 1)).squeeze(1)
    return correct - logits.scatter(1, labels.view(-1, 1), float("-inf")).max(dim=1).values


def digits_like(n=6, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=generator), torch.arange(n) % 10


def tiny_resnet_case(tiny_resnet):
    inputs, labels = digits_like()
    return tiny_resnet, conv_filters(tiny_resnet), inputs, labels


def mlp_case():
    model, spec = mlp()
    generator = torch.Generator().manual_seed(2)
    return model, spec, torch.randn(6, 5, generator=generator), torch.arange(6) % 4


KINDS = {"conv_filters": tiny_resnet_case, "linear_rows": lambda _: mlp_case()}


@torch.no_grad()
def single_ablation_outputs(model, spec, inputs, labels):
    """Reference: for each component, a copy of the model with its weights literally zeroed."""
    outs = []
    for c in range(len(spec)):
        keep = torch.ones(len(spec), dtype=torch.bool)
        keep[c] = False
        ablated = zero_components(copy.deepcopy(model), spec, keep)
        outs.append(margin(ablated(inputs), labels))
    return torch.stack(outs).numpy()  # (|C|, N)


def test_loo_equals_the_true_single_ablation_effect(tiny_resnet):
    model, spec, inputs, labels = tiny_resnet_case(tiny_resnet)
    loo = compute_baseline("loo", model, spec, inputs, labels, margin, max_batch=48)
    truth = single_ablation_outputs(model, spec, inputs, labels)
    with torch.no_grad():
        full = margin(model(inputs), labels).numpy()
    np.testing.assert_allclose(loo.weight, full - truth, atol=1e-5)
    # so its prediction for a single ablation is that ablation's true output
    single_masks = ~np.eye(len(spec), dtype=bool)
    np.testing.assert_allclose(loo.predict(single_masks), truth, atol=1e-4)
    np.testing.assert_allclose(loo.predict(np.ones((1, len(spec)), bool))[0], full, atol=1e-4)


def test_gp_equals_a_finite_difference_on_a_small_linear_model():
    model, spec = mlp(torch.float64)
    inputs = torch.randn(5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    labels = torch.tensor([0, 1, 2, 3, 0])
    gp = gradient_times_parameter(model, spec, inputs, labels, margin64)
    # d/ds F(theta with component c's weights scaled by s) at s = 1, by central differences
    h = 1e-6
    expected = torch.empty(len(inputs), len(spec), dtype=torch.float64)
    for group in spec.groups:
        for j in range(group.size):
            outs = []
            for scale in (1 + h, 1 - h):
                shifted = copy.deepcopy(model)
                with torch.no_grad():
                    dict(shifted.named_modules())[group.module].weight[j] *= scale
                    outs.append(margin64(shifted(inputs), labels))
            expected[:, group.offset + j] = (outs[0] - outs[1]) / (2 * h)
    torch.testing.assert_close(gp, expected.float(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_atp_equals_gp_for_units_linear_in_their_weights(kind, tiny_resnet):
    # Two independent code paths (activation hooks vs per-example parameter gradients)
    # for the same first-order quantity: the chain rule makes them equal.
    model, spec, inputs, labels = KINDS[kind](tiny_resnet)
    atp = attribution_patching(model, spec, inputs, labels, margin)
    gp = gradient_times_parameter(model, spec, inputs, labels, margin, max_batch=4)
    torch.testing.assert_close(atp, gp, rtol=1e-4, atol=1e-5)
    assert atp.abs().max() > 1e-3


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["nc", "ii"])
def test_path_integrated_baselines_equal_captum_layer_by_layer(kind, method, tiny_resnet):
    model, spec, inputs, labels = KINDS[kind](tiny_resnet)
    n_steps = 8
    ours = compute_baseline(
        method, model, spec, inputs, labels, margin, n_steps=n_steps, max_batch=40
    )
    modules = dict(model.named_modules())
    captum_class = LayerConductance if method == "nc" else InternalInfluence
    for group in spec.groups:
        attr = captum_class(lambda x, y: margin(model(x), y), modules[group.module]).attribute(
            inputs, additional_forward_args=(labels,), n_steps=n_steps
        )
        unit_dim = 1 if isinstance(modules[group.module], nn.Conv2d) else -1
        per_unit = attr.movedim(unit_dim, 1).reshape(len(inputs), group.size, -1).sum(-1)
        np.testing.assert_allclose(
            ours.weight[group.offset : group.offset + group.size],
            per_unit.detach().numpy().T,
            rtol=1e-4,
            atol=1e-5,
            err_msg=f"{method} on {group.module}",
        )


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", BASELINES)
def test_every_baseline_gives_coar_format_and_units(kind, method, tiny_resnet):
    model, spec, inputs, labels = KINDS[kind](tiny_resnet)
    attributions = compute_baseline(
        method, model, spec, inputs, labels, margin, n_steps=4, max_batch=20
    )
    assert attributions.weight.shape == (len(spec), len(inputs))
    assert attributions.component_names == spec.names()
    assert attributions.meta["method"] == method
    assert np.isfinite(attributions.weight).all() and np.abs(attributions.weight).max() > 0
    # the unablated model is predicted exactly: bias = f(full) - sum of weights
    with torch.no_grad():
        full = margin(model(inputs), labels).numpy()
    np.testing.assert_allclose(
        attributions.predict(np.ones((1, len(spec)), bool))[0], full, rtol=1e-5, atol=1e-4
    )


def test_unknown_baseline_and_unknown_module_type_are_named():
    model, spec, inputs, labels = mlp_case()
    with pytest.raises(ValueError, match="'shapley'"):
        compute_baseline("shapley", model, spec, inputs, labels, margin)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 4))
    with pytest.raises(TypeError, match="'1' is Tanh"):
        compute_baseline("gp", model, ComponentSpec([("1", 7)]), inputs, labels, margin)


def test_workflow_and_config_schema_know_every_baseline():
    repo = Path(__file__).resolve().parents[1]
    rules = (repo / "workflow" / "rules" / "evaluate.smk").read_text()
    assert f'method="{"|".join(BASELINES)}"' in rules
    schema = yaml.safe_load((repo / "workflow" / "schemas" / "config.schema.yaml").read_text())
    baselines = schema["$defs"]["setup"]["properties"]["evaluation"]["properties"]["baselines"]
    assert baselines["items"]["enum"] == list(BASELINES) == baselines["default"]
