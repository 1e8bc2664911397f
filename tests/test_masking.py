import copy

import pytest
import torch
from torch import nn

from coar.components import ComponentSpec, conv_filters, zero_components
from coar.masking import MaskedModel, ablated_outputs
from coar.masks import sample_masks
from coar.outputs import margin


def zeroed_outputs(model, spec, inputs, masks):
    """Reference: a deep copy per mask with the ablated weights literally zeroed."""
    outs = []
    for keep in masks:
        ablated = zero_components(copy.deepcopy(model), spec, keep)
        outs.append(ablated(inputs))
    return torch.cat(outs)


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
    spec = ComponentSpec([("0", 7), ("2", 3)])
    inputs = torch.randn(4, 5)
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
