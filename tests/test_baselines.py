import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from captum.attr import InternalInfluence, LayerConductance
from test_masking import ARCHITECTURE_KINDS, tiny
from torch import nn

from coar.baselines import (
    BASELINES,
    _ExposedAttention,
    _per_component,
    compute_baseline,
    gradient_times_parameter,
)
from coar.components import ComponentSpec, component_spec, zero_components
from coar.outputs import margin
from coar_replication.architectures import random_inputs


def mlp(dtype=torch.float32):
    """A small linear-layer model with biases (components: the rows of both layers)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 4)).to(dtype).eval()
    return model, ComponentSpec([("0", 7), ("2", 4)])


def margin64(logits, labels):
    """The margin in float64 (coar.outputs.margin computes in float32): for finite differences."""
    correct = logits.gather(1, labels.view(-1, 1)).squeeze(1)
    return correct - logits.scatter(1, labels.view(-1, 1), float("-inf")).max(dim=1).values


def lm_margin(output, ids):
    """Next-token margin averaged over the sequence (the paper's GPT-2 output)."""
    logits, targets = output.logits[:, :-1].float(), ids[:, 1:].unsqueeze(-1)
    correct = logits.gather(-1, targets).squeeze(-1)
    others = logits.scatter(-1, targets, float("-inf")).max(-1).values
    return (correct - others).mean(-1)


def architecture_case(name, kind):
    model = tiny(name)
    inputs, labels = random_inputs(name, model, 3, seed=2, size="tiny", seq_len=6)
    modules = dict(model.named_modules())
    # The first group of each unit and module type, and the smallest group of the deeper
    # half: every code path of the kind, at a fraction of leave-one-out's cost.
    full = component_spec(model, kind).groups
    deep = min(full[len(full) // 2 :], key=lambda g: g.size)
    first = {}
    for g in full:
        first.setdefault((g.unit, type(modules[g.module]).__name__), g)
    groups = sorted({*first.values(), deep}, key=lambda g: g.offset)
    spec = ComponentSpec([(g.module, g.size, g.unit) for g in groups], kind=kind)
    return model, spec, inputs, labels, (lm_margin if name == "gpt2" else margin)


def mlp_case():
    model, spec = mlp()
    generator = torch.Generator().manual_seed(2)
    return model, spec, torch.randn(6, 5, generator=generator), torch.arange(6) % 4, margin


# Every component kind on small random instances of the paper's architectures, plus the
# rows of a plain MLP. One ResNet stands for the conv-filter kind: the other two run the
# same code paths at several times the cost.
CASES = {"mlp/linear_rows": mlp_case} | {
    f"{name}/{kind}": (lambda name=name, kind=kind: architecture_case(name, kind))
    for name, kind in ARCHITECTURE_KINDS
    if name not in ("cifar_miniresnet", "imagenet_resnet50")
}


def call(model, inputs):
    return model(**inputs) if isinstance(inputs, dict) else model(inputs)


@torch.no_grad()
def single_ablation_outputs(model, spec, inputs, labels, output_fn, components):
    """Reference: per component, a copy of the model with its weights literally zeroed."""
    outs = []
    for c in components:
        keep = torch.ones(len(spec), dtype=torch.bool)
        keep[c] = False
        ablated = zero_components(copy.deepcopy(model), spec, keep)
        outs.append(output_fn(call(ablated, inputs), labels))
    return torch.stack(outs).numpy()  # (components, N)


@pytest.mark.parametrize("case", CASES)
def test_loo_equals_the_true_single_ablation_effect(case):
    model, spec, inputs, labels, output_fn = CASES[case]()
    loo = compute_baseline("loo", model, spec, inputs, labels, output_fn, max_batch=48)
    # the first and last two components of every group
    components = sorted(
        {c for g in spec.groups for c in (g.offset, g.offset + 1, g.offset + g.size - 1)}
    )
    truth = single_ablation_outputs(model, spec, inputs, labels, output_fn, components)
    with torch.no_grad():
        full = output_fn(call(model, inputs), labels).numpy()
    np.testing.assert_allclose(loo.weight[components], full - truth, atol=1e-4)
    # so its prediction for a single ablation is that ablation's true output
    single_masks = np.ones((len(components), len(spec)), bool)
    single_masks[np.arange(len(components)), components] = False
    np.testing.assert_allclose(loo.predict(single_masks), truth, atol=1e-4)


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


@pytest.mark.parametrize("case", CASES)
def test_every_baseline_runs_in_coar_format_and_units(case):
    model, spec, inputs, labels, output_fn = CASES[case]()
    n_examples = len(labels)
    results = {}
    for method in BASELINES:
        attributions = compute_baseline(
            method, model, spec, inputs, labels, output_fn, n_steps=4, max_batch=20
        )
        assert attributions.weight.shape == (len(spec), n_examples)
        assert attributions.component_names == spec.names()
        assert attributions.meta["method"] == method
        assert np.isfinite(attributions.weight).all()
        assert np.abs(attributions.weight).max() > 1e-6
        results[method] = attributions
    # the unablated model is predicted exactly: bias = f(full) - sum of weights
    with torch.no_grad():
        full = output_fn(call(model, inputs), labels).numpy()
    for method, attributions in results.items():
        np.testing.assert_allclose(
            attributions.predict(np.ones((1, len(spec)), bool))[0],
            full,
            rtol=1e-4,
            atol=1e-4,
            err_msg=method,
        )
    # atp (activation hooks) and gp (per-example parameter gradients) are independent
    # code paths for the same first-order quantity: every kind's components are linear
    # in their own weights, so the chain rule makes them equal.
    np.testing.assert_allclose(results["atp"].weight, results["gp"].weight, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("method", ["nc", "ii"])
def test_path_integrated_baselines_equal_captum_layer_by_layer(case, method):
    model, spec, inputs, labels, output_fn = CASES[case]()
    n_steps = 4
    ours = compute_baseline(
        method, model, spec, inputs, labels, output_fn, n_steps=n_steps, max_batch=40
    )
    captum_class = LayerConductance if method == "nc" else InternalInfluence
    if isinstance(inputs, dict):  # a language model: the path runs over token embeddings
        start = model.get_input_embeddings()(inputs["input_ids"]).detach()
        extra = (inputs["attention_mask"], labels)

        def forward(embeds, attention_mask, y):
            return output_fn(model(inputs_embeds=embeds, attention_mask=attention_mask), y)

    else:
        start, extra = inputs, (labels,)

        def forward(x, y):
            return output_fn(model(x), y)

    with _ExposedAttention(model) as exposed:
        for group in spec.groups:
            tap = exposed.tap(model, group)
            attr = captum_class(forward, tap.module).attribute(
                start,
                additional_forward_args=extra,
                n_steps=n_steps,
                attribute_to_layer_input=tap.side == "input",
            )
            np.testing.assert_allclose(
                ours.weight[group.offset : group.offset + group.size],
                _per_component(attr.detach(), tap, group.size).numpy().T,
                rtol=1e-4,
                atol=1e-5,
                err_msg=f"{method} on {group.label}",
            )


def test_a_recomputed_baseline_saves_to_identical_bytes(tmp_path):
    """Timings go to the log, not into the file: an identical rerun gives identical bytes."""
    model, spec, inputs, labels, output_fn = CASES[next(iter(CASES))]()
    for method in ("loo", "atp"):
        paths = [tmp_path / f"{method}{k}.pt" for k in range(2)]
        for path in paths:
            compute_baseline(method, model, spec, inputs, labels, output_fn, max_batch=20).save(
                path
            )
        assert paths[0].read_bytes() == paths[1].read_bytes(), method


def test_exposed_attention_computes_what_the_module_computes():
    model = tiny("imagenet_vit")
    inputs, _ = random_inputs("imagenet_vit", model, 2, seed=5, size="tiny")
    with torch.no_grad():
        plain = model(inputs)
        with _ExposedAttention(model):
            exposed = model(inputs)
    torch.testing.assert_close(exposed, plain, rtol=1e-5, atol=1e-5)
    assert "forward" not in model.encoder.layers[0].self_attention.__dict__


def test_unknown_baseline_and_unknown_module_type_are_named():
    model, spec, inputs, labels, _ = mlp_case()
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
