"""Exact or refused: the masking engine against literal zeroing for every model family
and component kind (tiny random configs), and a clear error where it cannot be exact."""

import copy

import pytest
import torch
import torch.nn.functional as F
from exactness_models import case, matrix_cells, measure
from torch import nn

import coar
from coar.baselines import compute_baseline
from coar.components import ComponentSpec, zero_components
from coar.exactness import verify_exact
from coar.masking import MaskedModel
from coar.outputs import margin


@pytest.mark.parametrize(("name", "kind"), matrix_cells())
def test_engine_equals_zeroing(name, kind):
    result = measure(name, kind)
    assert result["components"] > 0
    assert result["error"] <= 1e-5, result
    assert result["effect"] > 1e-4, f"the masks barely change the outputs: {result}"


def test_transformer_layer_fast_path_is_off_while_masking_and_restored():
    """nn.TransformerEncoderLayer's fused path ignores hooks; the engine switches it off."""
    c = case("TransformerEncoder batch_first")
    spec = coar.attention_heads(c.model)
    assert torch.backends.mha.get_fastpath_enabled()
    out = MaskedModel(c.model, spec)(c.inputs, torch.zeros(1, len(spec), dtype=torch.bool))
    assert not torch.allclose(out, c.model(c.inputs))  # every head ablated
    assert torch.backends.mha.get_fastpath_enabled()


def test_sequence_first_attention_needs_batch_dim():
    c = case("TransformerEncoder seq-first")
    spec = coar.mlp_neurons(c.model)
    for call in (
        lambda: MaskedModel(c.model, spec),
        lambda: coar.attribute(
            c.model, c.inputs, torch.zeros(2), components=spec, output=lambda o, y: o.sum((0, 2))
        ),
    ):
        with pytest.raises(ValueError, match=r"encoder\.layers\.0\.self_attn.*batch_dim=1"):
            call()
    assert coar.check_exact(c.model, spec, c.inputs, batch_dim=1) < 1e-5

    def last_token_logit(output, labels):  # output (T, K*E, 3): one value per example
        return output[-1].gather(1, labels[:, None]).squeeze(1)

    attributions = coar.attribute(
        c.model, c.inputs, torch.tensor([0, 2]), components=spec, output=last_token_logit,
        n_masks=40, batch_dim=1, progress=False,
    )  # fmt: skip
    assert attributions.weight.shape == (len(spec), 2)
    run = coar.AttributionRun(
        c.model, c.inputs, torch.tensor([0, 2]), components=spec, output=last_token_logit,
        n_masks=3, alpha=0.5, batch_dim=1, masks_per_batch=2, progress=False,
    )  # fmt: skip
    masks, outputs = run.ablate_rows([0, 1, 2])
    for keep, recorded in zip(masks, outputs, strict=True):
        zeroed = zero_components(copy.deepcopy(c.model), spec, torch.from_numpy(keep))
        expected = last_token_logit(zeroed(c.inputs), torch.tensor([0, 2]))
        torch.testing.assert_close(torch.from_numpy(recorded), expected, rtol=1e-5, atol=1e-6)


def test_tied_output_embedding_is_refused_untied_is_exact():
    tied, untied = case("Llama (GQA, tied)"), case("Llama (GQA, untied)")
    spec = coar.linear_neurons(tied.model, include=["lm_head"], include_output=True)
    assert spec.table() == [("lm_head", 64)]
    with pytest.raises(ValueError, match=r"'model\.embed_tokens', 'lm_head'.*untie"):
        MaskedModel(tied.model, spec)
    with pytest.raises(ValueError, match="tied parameters"):
        zero_components(tied.model, spec, torch.ones(len(spec)))
    assert coar.check_exact(untied.model, spec, untied.inputs) < 1e-5


def test_soft_masks_are_refused():
    model = nn.Sequential(nn.Linear(3, 4)).eval()
    spec = coar.linear_neurons(model, include_output=True)
    with pytest.raises(ValueError, match="only 0 and 1.*0.5"):
        MaskedModel(model, spec)(torch.randn(2, 3), torch.full((1, 4), 0.5))
    with pytest.raises(ValueError, match="only 0 and 1"):
        zero_components(model, spec, torch.tensor([1.0, 0.5, 1.0, 0.0]))
    MaskedModel(model, spec)(torch.randn(2, 3), torch.tensor([[1.0, 0.0, 1, 1]]))  # 0/1 floats


def test_output_layers_are_left_out_unless_asked():
    vit, llama = case("HF ViT").model, case("Llama (GQA, untied)").model
    assert not any("classifier" in n for n in coar.vit_neurons(vit).names())
    assert not any("lm_head" in n for n in coar.linear_neurons(llama).names())
    assert coar.output_modules(llama) == ["lm_head"]
    resnet = case("resnet18").model
    assert len(coar.linear_neurons(resnet)) == 0
    assert coar.linear_neurons(resnet, include_output=True).table() == [("fc", 5)]


def test_heads_of_bert_llama_and_vit_are_their_query_heads():
    assert coar.attention_heads(case("BERT").model).table() == [
        (f"bert.encoder.layer.{i}.attention.head", 4) for i in range(2)
    ]
    llama = coar.attention_heads(case("Llama (GQA, tied)").model)  # 4 query, 2 key/value heads
    assert llama.names()[1] == "model.layers.0.self_attn.head[1]"
    assert len(llama) == 8
    assert len(coar.attention_heads(case("HF ViT").model)) == 4


class FunctionalAttention(nn.Module):
    """Uses its Linear's weight without calling it (as torchvision's Swin does)."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, x):
        return F.linear(x, self.proj.weight, self.proj.bias)


def test_attention_the_engine_does_not_understand_is_refused():
    swin = case("swin_t (tiny config)").model
    with pytest.raises(ValueError, match="ShiftedWindowAttention"):
        coar.attention_heads(swin)
    with pytest.raises(ValueError, match="uses its weights directly"):
        MaskedModel(swin, ComponentSpec([("features.1.0.attn.qkv", 48)]))
    with pytest.raises(ValueError, match=r"'0' \(FunctionalAttention\)"):
        coar.attention_heads(nn.Sequential(FunctionalAttention()))
    with pytest.raises(ValueError, match="no attention module"):
        coar.attention_heads(nn.Sequential(nn.Linear(2, 2)))


def test_a_module_used_without_being_called_fails_the_exactness_check():
    model = nn.Sequential(FunctionalAttention(), nn.Linear(4, 2)).eval()
    spec = ComponentSpec([("0.proj", 4)], kind="custom")
    x, y = torch.randn(2, 4), torch.zeros(2, dtype=torch.long)
    with pytest.raises(RuntimeError, match=r"'custom'.*hooks of 0\.proj never ran"):
        verify_exact(model, spec, x, y, output=margin)
    with pytest.raises(RuntimeError, match="check_exact=False"):
        coar.attribute(model, x, y, components=spec, n_masks=10, progress=False)
    coar.attribute(model, x, y, components=spec, n_masks=10, progress=False, check_exact=False)


def test_mha_with_bias_kv_is_refused():
    attention = nn.MultiheadAttention(4, 2, add_bias_kv=True, batch_first=True)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = attention

        def forward(self, x):
            return self.attn(x, x, x, need_weights=False)[0]

    model = Model().eval()
    spec = coar.attention_heads(model)
    with pytest.raises(NotImplementedError, match="'attn'.*add_bias_kv"):
        MaskedModel(model, spec)(torch.randn(1, 3, 4), torch.ones(1, 2))
    assert torch.backends.mha.get_fastpath_enabled()
    separate = nn.MultiheadAttention(4, 2, kdim=3, vdim=3, batch_first=True)
    with pytest.raises(NotImplementedError, match="'': MultiheadAttention with separate q/k/v"):
        MaskedModel(separate, ComponentSpec([("", 2, "head")]))(
            torch.randn(1, 2, 4), torch.ones(1, 2)
        )


def test_cross_attention_in_proj_rows_are_refused():
    c = case("TransformerDecoder (cross-attention)")
    spec = coar.vit_neurons(c.model)  # in_proj rows of every MultiheadAttention
    with pytest.raises(NotImplementedError, match=r"'decoder\.layers\.0\.multihead_attn'.*cross"):
        MaskedModel(c.model, spec)(c.inputs, torch.ones(1, len(spec)))
    self_only = coar.vit_neurons(
        c.model, exclude=["decoder.layers.0.multihead_attn", "decoder.layers.1.multihead_attn"]
    )
    assert coar.check_exact(c.model, self_only, c.inputs) < 1e-5


def test_unit_ranges_equal_zeroing():
    gpt2 = case("GPT-2")
    spec = ComponentSpec(
        [("transformer.h.0.attn", 1, "head", 1), ("transformer.h.1.mlp.c_fc", 5, "out", 10)]
    )
    assert spec.names()[:2] == ["transformer.h.0.attn.head[1]", "transformer.h.1.mlp.c_fc[10]"]
    assert coar.check_exact(gpt2.model, spec, gpt2.inputs, alpha=0.5) < 1e-5
    with pytest.raises(ValueError, match=r"has 2 'head' units, the spec says units 1\.\.2"):
        ComponentSpec([("transformer.h.0.attn", 2, "head", 1)]).check(gpt2.model)
    resnet = case("resnet18")
    filters = ComponentSpec([("conv1", 4, "out", 2), ("layer1.0.conv1", 60, "out", 4)])
    assert filters.table() == [("conv1[2:6]", 4), ("layer1.0.conv1[4:64]", 60)]
    assert coar.check_exact(resnet.model, filters, resnet.inputs) < 1e-5
    model = nn.Sequential(nn.Linear(3, 8)).eval()
    part = ComponentSpec([("0", 3, "out", 2)])
    keep = torch.tensor([[True, False, False]])
    out = MaskedModel(model, part)(torch.ones(1, 3), keep)
    torch.testing.assert_close(out, zero_components(model, part, keep[0])(torch.ones(1, 3)))


def test_new_kinds_gradient_baselines_agree():
    """gp (parameters) and atp (activations) read gated neurons at down_proj's input and
    heads at o_proj's input, ranges included: independent paths that must agree."""
    c = case("Llama (GQA, untied)")
    spec = ComponentSpec(
        [
            ("model.layers.1.mlp", 32, "gated"),
            ("model.layers.0.mlp", 10, "gated", 5),
            ("model.layers.1.self_attn", 3, "head", 1),
        ]
    )
    assert coar.mlp_neurons(c.model).table()[1] == ("model.layers.1.mlp", 32)
    labels = c.inputs["input_ids"][:, -1]

    def last_token_margin(output, y):
        return margin(output.logits[:, -1], y)

    gp, atp = (
        compute_baseline(m, c.model, spec, c.inputs, labels, last_token_margin)
        for m in ("gp", "atp")
    )
    assert abs(gp.weight).max() > 0
    torch.testing.assert_close(torch.from_numpy(gp.weight), torch.from_numpy(atp.weight))
