"""Tiny random-weight models of every family the masking engine supports, and the
exactness matrix over them: engine vs literal zeroing for every applicable kind.

Used by tests/test_exactness_matrix.py and bench/exactness_matrix.py (one copy).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torchvision
from torch import nn

import coar
from coar.masking import MaskedModel
from coar.masks import sample_masks

KIND_SPECS: dict[str, Callable] = {
    "conv_filters": coar.conv_filters,
    "linear_neurons out": coar.linear_neurons,
    "linear_neurons in": lambda model: coar.linear_neurons(model, unit="in"),
    "mlp_neurons": coar.mlp_neurons,
    "attention_heads": coar.attention_heads,
}


@dataclass
class Case:
    model: nn.Module
    inputs: object
    batch_dim: int = 0


def _nonzero(model: nn.Module, seed: int = 1) -> nn.Module:
    """Random values for all-zero parameters (zero-initialised heads would make the
    comparison vacuous) and non-trivial BatchNorm statistics; eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if not param.any():
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
    return model.eval()


def _images(size: int, channels: int = 3, n: int = 2) -> torch.Tensor:
    return torch.randn(n, channels, size, size, generator=torch.Generator().manual_seed(2))


def _tokens(vocab: int, n: int = 2, length: int = 6) -> dict:
    ids = torch.randint(3, vocab, (n, length), generator=torch.Generator().manual_seed(3))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


CONV = ("conv_filters", "linear_neurons out", "linear_neurons in")
# torchvision CNNs whose only Linears are the output layer (left out): filters only.
FILTERS = ("conv_filters",)
TRANSFORMER = ("linear_neurons out", "linear_neurons in", "mlp_neurons", "attention_heads")


class EncoderModel(nn.Module):
    """nn.TransformerEncoder over float token vectors, with a per-token head."""

    def __init__(self, batch_first: bool, norm_first: bool, width: int = 16):
        super().__init__()
        layer = nn.TransformerEncoderLayer(
            width, 2, 32, dropout=0.0, batch_first=batch_first, norm_first=norm_first
        )
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(width, 3)

    def forward(self, x):
        return self.head(self.encoder(x))


class PaddedEncoderModel(EncoderModel):
    """The encoder with a key padding mask (the last 2 tokens of the batch's examples
    are padding) and a bool causal mask."""

    def forward(self, x):
        padding = torch.zeros(x.shape[0], x.shape[1], dtype=torch.bool, device=x.device)
        padding[:, -2:] = True
        causal = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool).triu(1)
        return self.head(self.encoder(x, mask=causal, src_key_padding_mask=padding))


class DecoderModel(nn.Module):
    """nn.TransformerDecoder (causal self-attention, cross-attention to the first 3
    tokens as memory), batch-first."""

    def __init__(self, width: int = 16):
        super().__init__()
        layer = nn.TransformerDecoderLayer(width, 2, 32, dropout=0.0, batch_first=True)
        self.decoder = nn.TransformerDecoder(layer, 2)
        self.head = nn.Linear(width, 3)

    def forward(self, x):
        causal = nn.Transformer.generate_square_subsequent_mask(x.shape[1])
        out = self.decoder(x, x[:, :3].contiguous(), tgt_mask=causal, tgt_is_causal=True)
        return self.head(out)


def _transformer(model_cls: type) -> Case:
    torch.manual_seed(0)
    model = _nonzero(model_cls(True, False) if model_cls is PaddedEncoderModel else model_cls())
    return Case(model, torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(4)))


def _encoder(batch_first: bool, norm_first: bool = False) -> Case:
    torch.manual_seed(0)
    x = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(4))
    model = _nonzero(EncoderModel(batch_first, norm_first))
    return Case(model, x if batch_first else x.transpose(0, 1), 0 if batch_first else 1)


def _hf(config_cls, model_cls, **config) -> nn.Module:
    torch.manual_seed(0)
    return _nonzero(model_cls(config_cls(**config)))


def _llama(tied: bool) -> Case:
    from transformers import LlamaConfig, LlamaForCausalLM

    model = _hf(
        LlamaConfig,
        LlamaForCausalLM,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=32,
        vocab_size=64,
        tie_word_embeddings=tied,
    )
    return Case(model, _tokens(64))


def _text(name: str) -> Case:
    import transformers as t

    small = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=4, vocab_size=64)
    small["intermediate_size"] = 32
    config, model = {
        "bert": (t.BertConfig, t.BertForSequenceClassification),
        "roberta": (t.RobertaConfig, t.RobertaForSequenceClassification),
        "qwen2": (t.Qwen2Config, t.Qwen2ForCausalLM),
        "mistral": (t.MistralConfig, t.MistralForCausalLM),
        "phi": (t.PhiConfig, t.PhiForCausalLM),
        "gpt_neox": (t.GPTNeoXConfig, t.GPTNeoXForCausalLM),
    }[name]
    if name in ("qwen2", "mistral"):
        small["num_key_value_heads"] = 2
    return Case(_hf(config, model, **small), _tokens(64))


def _gpt2() -> Case:
    from transformers import GPT2Config, GPT2LMHeadModel

    model = _hf(GPT2Config, GPT2LMHeadModel, n_embd=16, n_layer=2, n_head=2, vocab_size=64)
    return Case(model, _tokens(64))


def _hf_vision(name: str) -> Case:
    import transformers as t

    small = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2)
    small.update(intermediate_size=32, image_size=16, patch_size=4)
    if name == "vit":
        model = _hf(t.ViTConfig, t.ViTForImageClassification, num_labels=3, **small)
    else:
        model = _hf(t.CLIPVisionConfig, t.CLIPVisionModel, **small)
    return Case(model, _images(16))


def _torchvision(name: str) -> Case:
    torch.manual_seed(0)
    models = torchvision.models
    if name == "convnext_tiny":  # convnext_tiny's classes, at a tiny width and depth
        from torchvision.models.convnext import CNBlockConfig, ConvNeXt

        settings = [CNBlockConfig(16, 32, 1), CNBlockConfig(32, None, 1)]
        # layer_scale 1e-6 (the default) would make the blocks' Linears nearly inert
        model = ConvNeXt(settings, layer_scale=0.5, num_classes=5)
        return Case(_nonzero(model), _images(32))
    if name == "swin_t":  # swin_t's classes, tiny
        model = models.SwinTransformer([4, 4], 16, [1, 1], [2, 2], [4, 4], num_classes=5)
        return Case(_nonzero(model), _images(32))
    if name == "vit_b_16":  # vit_b_16's class, tiny
        model = models.VisionTransformer(32, 8, 2, 2, 16, 32, num_classes=5)
        return Case(_nonzero(model), _images(32))
    builder = getattr(models, name)
    return Case(_nonzero(builder(num_classes=5)), _images(32))


CONV_MLP = (*CONV, "mlp_neurons")
VISION_TRANSFORMER = ("conv_filters", *TRANSFORMER)

# name -> (factory, the kinds that apply)
MODELS: dict[str, tuple[Callable[[], Case], tuple[str, ...]]] = {
    "resnet18": (lambda: _torchvision("resnet18"), FILTERS),
    "mobilenet_v3_small": (lambda: _torchvision("mobilenet_v3_small"), FILTERS),
    "efficientnet_b0": (lambda: _torchvision("efficientnet_b0"), FILTERS),
    "convnext_tiny (tiny config)": (lambda: _torchvision("convnext_tiny"), CONV_MLP),
    "swin_t (tiny config)": (lambda: _torchvision("swin_t"), CONV_MLP),
    "vit_b_16 (tiny config)": (lambda: _torchvision("vit_b_16"), VISION_TRANSFORMER),
    "TransformerEncoder batch_first": (lambda: _encoder(True), TRANSFORMER),
    "TransformerEncoder seq-first": (lambda: _encoder(False), TRANSFORMER),
    "TransformerEncoder norm_first": (lambda: _encoder(True, norm_first=True), TRANSFORMER),
    "TransformerEncoder key padding": (lambda: _transformer(PaddedEncoderModel), TRANSFORMER),
    "TransformerDecoder (cross-attention)": (lambda: _transformer(DecoderModel), TRANSFORMER),
    "BERT": (lambda: _text("bert"), TRANSFORMER),
    "RoBERTa": (lambda: _text("roberta"), TRANSFORMER),
    "GPT-2": (_gpt2, TRANSFORMER),
    "Llama (GQA, tied)": (lambda: _llama(True), TRANSFORMER),
    "Llama (GQA, untied)": (lambda: _llama(False), TRANSFORMER),
    "Qwen2 (GQA)": (lambda: _text("qwen2"), TRANSFORMER),
    "Mistral (GQA)": (lambda: _text("mistral"), TRANSFORMER),
    "Phi": (lambda: _text("phi"), TRANSFORMER),
    "GPT-NeoX": (lambda: _text("gpt_neox"), TRANSFORMER),
    "HF ViT": (lambda: _hf_vision("vit"), VISION_TRANSFORMER),
    "CLIP vision": (lambda: _hf_vision("clip"), VISION_TRANSFORMER),
}


@functools.cache
def case(name: str) -> Case:
    """The model (built once per process; `coar.check_exact` leaves it unchanged)."""
    return MODELS[name][0]()


def matrix_cells() -> list[tuple[str, str]]:
    return [(name, kind) for name, (_, kinds) in MODELS.items() for kind in kinds]


def _output_tensor(out) -> torch.Tensor:
    from coar.exactness import _tensor_of

    return _tensor_of(out)


def measure(name: str, kind: str, n_masks: int = 3) -> dict:
    """Engine vs zeroing (``error``: `coar.check_exact`, relative to the outputs' scale)
    and how much the masks change the outputs (``effect``, same scale: the comparison
    is not vacuous), for one model and kind."""
    c = case(name)
    spec = KIND_SPECS[kind](c.model)
    error = coar.check_exact(c.model, spec, c.inputs, n_masks=n_masks, batch_dim=c.batch_dim)
    masks = torch.from_numpy(sample_masks(0, "check_exact", range(n_masks), len(spec), 0.5))
    masked = MaskedModel(c.model, spec, batch_dim=c.batch_dim)
    ablated = _output_tensor(masked(c.inputs, masks)).float()
    full = _output_tensor(masked(c.inputs, torch.ones(n_masks, len(spec)).bool())).float()
    effect = (ablated - full).abs().max().item() / (full.abs().max().item() or 1.0)
    return {"components": len(spec), "groups": len(spec.groups), "error": error, "effect": effect}
