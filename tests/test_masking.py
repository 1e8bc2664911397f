import copy

import pytest
import torch
from conftest import randomize_batchnorm
from torch import nn

from coar.components import ComponentSpec, component_spec, conv_filters, zero_components
from coar.masking import MaskedModel, ablated_outputs
from coar.masks import sample_masks
from coar.outputs import margin
from coar_replication.architectures import build, random_inputs

# (architecture, component kind) pairs of the paper, on small random instances.
ARCHITECTURE_KINDS = [
    ("mini_digits", "conv_filters"),
    ("cifar_miniresnet", "conv_filters"),
    ("imagenet_resnet50", "conv_filters"),
    ("imagenet_vit", "vit_neurons"),
    ("imagenet_vit", "attention_heads"),
    ("gpt2", "gpt2_rows"),
    ("gpt2", "attention_heads"),
]

# Counts the paper states for its full-size models.
PAPER_COUNTS = [
    ("cifar_miniresnet", "conv_filters", 2304),
    ("imagenet_resnet50", "conv_filters", 22720),
    ("imagenet_vit", "vit_neurons", 82944),
    ("gpt2", "gpt2_rows", 64512),
    ("imagenet_vit", "attention_heads", 144),
    ("gpt2", "attention_heads", 144),
]


def logits_of(output):
    return output.logits if hasattr(output, "logits") else output


def call(model, inputs):
    return logits_of(model(**inputs) if isinstance(inputs, dict) else model(inputs))


def zeroed_outputs(model, spec, inputs, masks):
    """Reference: a deep copy per mask with the ablated weights literally zeroed."""
    outs = []
    for keep in masks:
        ablated = zero_components(copy.deepcopy(model), spec, keep)
        outs.append(call(ablated, inputs))
    return torch.cat(outs)


def tiny(name):
    """A tiny random instance with no all-zero weights (torchvision zero-initialises
    ViT's classifier) and non-trivial BatchNorm statistics."""
    model = build(name, size="tiny", seed=0)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            if not param.any():
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    randomize_batchnorm(model, generator)
    return model


@pytest.mark.parametrize(("name", "kind", "count"), PAPER_COUNTS)
def test_paper_component_counts(name, kind, count):
    with torch.device("meta"):  # architecture only: no memory, no initialisation cost
        model = build(name)
    spec = component_spec(model, kind)
    assert len(spec) == count
    assert len(set(spec.names())) == count


def test_component_order_is_the_originals():
    """Flat indices follow the original's named_modules order (its masks and attributions)."""
    with torch.device("meta"):
        vit, gpt2 = build("imagenet_vit"), build("gpt2")
    block = "encoder.layers.encoder_layer_0."
    assert component_spec(vit, "vit_neurons").table()[:4] == [
        (block + "self_attention.in_proj", 2304),
        (block + "self_attention.out_proj", 768),
        (block + "mlp.0", 3072),
        (block + "mlp.3", 768),
    ]
    assert component_spec(gpt2, "gpt2_rows").table()[:4] == [
        ("transformer.h.0.attn.c_attn", 768),
        ("transformer.h.0.attn.c_proj", 768),
        ("transformer.h.0.mlp.c_fc", 768),
        ("transformer.h.0.mlp.c_proj", 3072),
    ]
    assert component_spec(gpt2, "gpt2_rows").names()[768 + 5] == "transformer.h.0.attn.c_proj[5]"


@pytest.mark.parametrize(("name", "kind"), ARCHITECTURE_KINDS)
def test_every_architecture_and_kind_equals_zeroing_weights(name, kind):
    model = tiny(name)
    spec = component_spec(model, kind)
    inputs, _ = random_inputs(name, model, 3, seed=2, size="tiny", seq_len=7)
    masks = torch.from_numpy(sample_masks(0, "test", range(4), len(spec), 0.3))
    masks[0] = True  # the plain model
    masks[1] = False  # everything ablated
    masked = logits_of(MaskedModel(model, spec)(inputs, masks))
    reference = zeroed_outputs(model, spec, inputs, masks)
    assert reference.abs().max() > 0
    torch.testing.assert_close(masked, reference, rtol=1e-5, atol=1e-5)
    # the masks make a difference, so the comparison is not vacuous
    n = reference.shape[0] // 4
    assert not torch.allclose(reference[:n], reference[n : 2 * n])


@pytest.mark.parametrize("name", ["gpt2", "imagenet_vit"])
def test_rows_and_heads_together_equal_zeroing_weights(name):
    """Two kinds on the same module (e.g. GPT-2's attn.c_proj rows and heads) compose."""
    model = tiny(name)
    first = "gpt2_rows" if name == "gpt2" else "vit_neurons"
    spec = ComponentSpec(
        [(g.module, g.size, g.unit) for kind in (first, "attention_heads")
         for g in component_spec(model, kind).groups]
    )  # fmt: skip
    inputs, _ = random_inputs(name, model, 2, seed=3, size="tiny", seq_len=5)
    masks = torch.from_numpy(sample_masks(1, "test", range(3), len(spec), 0.4))
    masked = logits_of(MaskedModel(model, spec)(inputs, masks))
    torch.testing.assert_close(
        masked, zeroed_outputs(model, spec, inputs, masks), rtol=1e-5, atol=1e-5
    )


def test_zeroing_keeps_biases_and_norms():
    model = tiny("gpt2")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    spec = component_spec(model, "gpt2_rows")
    zero_components(model, spec, torch.zeros(len(spec), dtype=torch.bool))
    for key, value in model.state_dict().items():
        zeroed = key.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight"))
        assert (not value.any()) if zeroed else torch.equal(value, before[key]), key


def test_language_model_chunks_equal_zeroing_weights():
    """Token-id inputs given as a mapping (input_ids, attention_mask), chunked."""
    model = tiny("gpt2")
    spec = component_spec(model, "gpt2_rows")
    inputs, ids = random_inputs("gpt2", model, 5, seed=4, seq_len=6)
    masks = torch.from_numpy(sample_masks(2, "test", range(3), len(spec), 0.2))

    def mean_token_margin(output, labels):
        logits = logits_of(output)[:, :-1]
        return margin(logits.flatten(0, 1), labels[:, 1:].flatten()).view(len(labels), -1).mean(1)

    got = ablated_outputs(MaskedModel(model, spec), inputs, ids, masks, mean_token_margin, 4)
    reference = mean_token_margin(zeroed_outputs(model, spec, inputs, masks), ids.repeat(3, 1))
    torch.testing.assert_close(got, reference.view(3, 5), rtol=1e-5, atol=1e-5)


def test_conv_filter_spec_names_and_counts(tiny_resnet):
    spec = conv_filters(tiny_resnet)
    # stem + 2 blocks x 2 convs, 8 filters each; shortcuts are identities here
    assert len(spec) == 5 * 8
    names = spec.names()
    assert names[0] == "conv1[0]" and names[-1] == "layers.1.conv2[7]"
    assert len(set(names)) == len(names)


def test_masked_batch_equals_zeroing_weights(tiny_resnet):
    spec = conv_filters(tiny_resnet)
    inputs = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    masks = torch.from_numpy(sample_masks(0, "test", range(5), len(spec), 0.3))
    masked = MaskedModel(tiny_resnet, spec)(inputs, masks)
    reference = zeroed_outputs(tiny_resnet, spec, inputs, masks)
    torch.testing.assert_close(masked, reference, rtol=1e-5, atol=1e-5)


def test_linear_rows_with_bias_equal_zeroing_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3)).eval()
    inputs = torch.randn(4, 5)
    for spec in (
        ComponentSpec([("0", 7), ("2", 3)]),  # output rows
        ComponentSpec([("0", 5, "in"), ("2", 7, "in")]),  # input columns
    ):
        masks = torch.from_numpy(sample_masks(0, "test", range(6), len(spec), 0.4))
        masked = MaskedModel(model, spec)(inputs, masks)
        torch.testing.assert_close(masked, zeroed_outputs(model, spec, inputs, masks))


def test_margins_in_chunks_equal_zeroing_weights(tiny_resnet):
    spec = conv_filters(tiny_resnet)
    inputs = torch.randn(9, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    labels = torch.arange(9) % 10
    masks = torch.from_numpy(sample_masks(1, "test", range(7), len(spec), 0.2))
    got = ablated_outputs(
        MaskedModel(tiny_resnet, spec), inputs, labels, masks, margin, max_batch=20
    )  # forces chunking over masks and examples
    reference = margin(zeroed_outputs(tiny_resnet, spec, inputs, masks), labels.repeat(7))
    torch.testing.assert_close(got, reference.view(7, 9), rtol=1e-5, atol=1e-5)


def test_all_kept_is_the_plain_model(tiny_resnet):
    spec = conv_filters(tiny_resnet)
    inputs = torch.randn(3, 1, 8, 8)
    out = MaskedModel(tiny_resnet, spec)(inputs, torch.ones(2, len(spec), dtype=torch.bool))
    torch.testing.assert_close(out, tiny_resnet(inputs).repeat(2, 1))


def test_hooks_are_removed_after_a_call(tiny_resnet):
    spec = conv_filters(tiny_resnet)
    inputs = torch.randn(2, 1, 8, 8)
    before = tiny_resnet(inputs)
    MaskedModel(tiny_resnet, spec)(inputs, torch.zeros(1, len(spec), dtype=torch.bool))
    torch.testing.assert_close(tiny_resnet(inputs), before)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in tiny_resnet.modules())


def test_attention_is_restored_after_a_call():
    model = tiny("imagenet_vit")
    spec = component_spec(model, "vit_neurons")
    inputs, _ = random_inputs("imagenet_vit", model, 2, size="tiny")
    before = model(inputs)
    masked = MaskedModel(model, spec)
    with masked:  # hooks and patched attention stay while the context is open
        masked(inputs, torch.zeros(1, len(spec), dtype=torch.bool))
        torch.testing.assert_close(model(inputs), before)  # inert outside a masked call
    assert not any("forward" in m.__dict__ for m in model.modules())
    torch.testing.assert_close(model(inputs), before)


def test_spec_mismatch_names_the_module(tiny_resnet):
    with pytest.raises(ValueError, match="layers.0.conv1"):
        MaskedModel(tiny_resnet, ComponentSpec([("layers.0.conv1", 9)]))
    with pytest.raises(KeyError, match="nope"):
        MaskedModel(tiny_resnet, ComponentSpec([("nope", 8)]))


def test_wrong_mask_width_is_rejected(tiny_resnet):
    masked = MaskedModel(tiny_resnet, conv_filters(tiny_resnet))
    with pytest.raises(ValueError, match="masks must have shape"):
        masked(torch.randn(1, 1, 8, 8), torch.ones(2, 3, dtype=torch.bool))


def test_margin():
    logits = torch.tensor([[1.0, 3.0, 2.0], [5.0, 0.0, -1.0]])
    torch.testing.assert_close(margin(logits, torch.tensor([1, 2])), torch.tensor([1.0, -6.0]))
