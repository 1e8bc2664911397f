"""One functional forward of ``nn.MultiheadAttention`` (self- and cross-attention).

The module's own forward (``F.multi_head_attention_forward``) reads its packed
Q/K/V projection and ``out_proj.weight`` directly, so neither has an activation
that a hook can see. While the masking engine (`coar.masking`) or the gradient
baselines (`coar.baselines`) are active, every attention module they need runs
`self_attention` instead: the same computation (packed projection, scaled-dot-
product attention, ``out_proj`` called as a module, so that its hooks fire),
with callbacks on the packed projection's output (``on_qkv``) and on the heads'
outputs (``on_heads``), where the engine applies its masks and the baselines
read their activations.
"""

from __future__ import annotations

import types
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

TensorHook = Callable[[torch.Tensor], torch.Tensor]


def _additive_mask(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """nn.MultiheadAttention's mask convention (bool True: not attended; float: added)
    as an additive float mask, which scaled_dot_product_attention reads the same way."""
    if mask is None or mask.is_floating_point():
        return None if mask is None else mask.to(dtype)
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, -torch.inf)


def self_attention(
    module: nn.MultiheadAttention,
    x: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    is_causal: bool = False,
    on_qkv: TensorHook | None = None,
    on_heads: TensorHook | None = None,
    *,
    key: torch.Tensor | None = None,
    value: torch.Tensor | None = None,
    key_padding_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, None]:
    """``module(x, key, value, key_padding_mask, need_weights=False, attn_mask, is_causal)``
    functionally (self-attention: key = value = x); ``on_qkv`` maps the packed projection
    (B, T, 3E) of a self-attention and ``on_heads`` the heads' outputs (B, H, T, d)."""
    key = x if key is None else key
    value = key if value is None else value
    cross = not (x is key is value)
    if cross and on_qkv is not None:
        raise NotImplementedError("packed Q/K/V callbacks need a self-attention")
    if not module.batch_first:
        x, key, value = x.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
    batch, tokens, embed = x.shape
    sources = key.shape[1]
    heads, head_dim = module.num_heads, module.head_dim
    if cross:
        weights = module.in_proj_weight.chunk(3)
        biases = (None,) * 3 if module.in_proj_bias is None else module.in_proj_bias.chunk(3)
        q, k, v = (
            F.linear(t, w, b).view(batch, -1, heads, head_dim).transpose(1, 2)
            for t, w, b in zip((x, key, value), weights, biases, strict=True)
        )
    else:
        qkv = F.linear(x, module.in_proj_weight, module.in_proj_bias)  # (B, T, 3E)
        if on_qkv is not None:
            qkv = on_qkv(qkv)
        q, k, v = qkv.view(batch, tokens, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
    # As F.multi_head_attention_forward: is_causal is a hint when a mask is given, and
    # a key padding mask is added to the attention mask.
    mask = _additive_mask(attn_mask, q.dtype)
    if mask is not None and mask.dim() == 3:  # (B*H, T, S)
        mask = mask.view(batch, heads, tokens, sources)
    padding = _additive_mask(key_padding_mask, q.dtype)
    if padding is not None:
        padding = padding.view(batch, 1, 1, sources)
        mask = padding if mask is None else mask + padding
        is_causal = False
    elif mask is not None and is_causal:
        mask = None
    attended = F.scaled_dot_product_attention(
        q,
        k,
        v,
        attn_mask=mask,
        dropout_p=module.dropout if module.training else 0.0,
        is_causal=is_causal,
    )  # (B, H, T, d)
    if on_heads is not None:
        attended = on_heads(attended)
    attended = attended.transpose(1, 2).reshape(batch, tokens, embed)
    if not module.batch_first:  # out_proj sees the module's own layout, as its hooks expect
        attended = attended.transpose(0, 1)
    return module.out_proj(attended), None  # a module call, so that out_proj's hooks fire


def check_patchable(attention: nn.MultiheadAttention, name: str) -> None:
    """Fail, naming the module, if `patch_self_attention` cannot patch it."""
    if "forward" in attention.__dict__:
        raise RuntimeError(
            f"attention module {name!r} is already patched (by another active MaskedModel "
            "or baseline)"
        )
    if attention.in_proj_weight is None:
        raise NotImplementedError(
            f"attention module {name!r}: MultiheadAttention with separate q/k/v projections "
            "(kdim/vdim) is not supported; exclude it"
        )
    if attention.bias_k is not None or attention.add_zero_attn:
        raise NotImplementedError(
            f"attention module {name!r}: add_bias_kv / add_zero_attn are not supported"
        )


def patch_self_attention(
    attention: nn.MultiheadAttention,
    name: str,
    run: Callable[..., tuple[torch.Tensor, None]],
    who: str,
    active: Callable[[], bool] | None = None,
) -> None:
    """Make ``attention`` call ``run(module, x, attn_mask, is_causal, key=, value=,
    key_padding_mask=)`` (e.g. a `self_attention` with callbacks) while ``active()``
    (default: always); otherwise its own forward. ``who`` names the user in errors.
    `unpatch` undoes it."""
    check_patchable(attention, name)
    original = type(attention).forward

    def forward(module, query, key, value, key_padding_mask=None, need_weights=True, **kw):
        if active is not None and not active():
            return original(module, query, key, value, key_padding_mask, need_weights, **kw)
        if need_weights:
            raise NotImplementedError(
                f"{who} attention {name!r} is called with need_weights=True: masked "
                "attention returns no attention weights (call it with need_weights=False, "
                "as torchvision's ViT and nn.Transformer layers do)"
            )
        extra = {"key": key, "value": value, "key_padding_mask": key_padding_mask}
        return run(module, query, kw.get("attn_mask"), kw.get("is_causal", False), **extra)

    attention.forward = types.MethodType(forward, attention)


def unpatch(attention: nn.Module) -> None:
    attention.__dict__.pop("forward", None)
