"""Causal language models: the per-token margin output, GPT-2 and Phi checkpoints, training,
setups.

Output (paper, GPT-2 appendix): for each story, the next-token margin (correct
token's logit minus the largest other logit) at every position whose next token
is a real token, averaged over those positions. Sequences are right-padded; the
attention mask says which tokens are real.

Evaluation inputs are the token ids alone. With right padding, causal attention
already keeps every pad token out of the context of every real token, so the
model runs without a padding mask (the fastest SDPA path) and gives the same
logits at real positions (tested); the attention mask enters through the
next-token targets, which mark every position that does not count with
``IGNORE``.
"""

from __future__ import annotations

import json
import logging
import math
import os

import numpy as np
import torch
from torch import nn

from coar_replication.architectures import (
    GPT2_CONFIG_KEYS,
    PHI_CONFIG_KEYS,
    context_length,
    gpt2_model,
    is_causal_lm,
    phi_model,
)

log = logging.getLogger(__name__)

IGNORE = -100  # target of a position that does not count (its next token is padding)


# ------------------------------------------------------------------------ output
def next_token_targets(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) targets: input_ids[:, t+1] where tokens t and t+1 are real, else IGNORE."""
    input_ids = torch.as_tensor(input_ids)
    attention_mask = torch.as_tensor(attention_mask).bool()
    if input_ids.shape != attention_mask.shape or input_ids.dim() != 2:
        raise ValueError(
            f"input_ids {tuple(input_ids.shape)} and attention_mask "
            f"{tuple(attention_mask.shape)} must be equal (batch, tokens) shapes"
        )
    targets = torch.full_like(input_ids, IGNORE)
    counts = attention_mask[:, :-1] & attention_mask[:, 1:]
    targets[:, :-1] = torch.where(counts, input_ids[:, 1:], IGNORE)
    return targets


def token_margins(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B, T) float32: logit of targets[b, t] minus the largest other logit at (b, t).

    Positions whose target is IGNORE get 0. Uses the two largest logits instead of
    a masked copy of the (B, T, vocab) tensor, so it needs no extra logits memory.
    """
    valid = targets != IGNORE
    safe = torch.where(valid, targets, 0).unsqueeze(-1)
    correct = logits.gather(-1, safe).squeeze(-1).float()
    top = logits.topk(2, dim=-1)
    top_values = top.values.float()
    best_other = torch.where(
        top.indices[..., 0] == safe.squeeze(-1), top_values[..., 1], top_values[..., 0]
    )
    return torch.where(valid, correct - best_other, 0.0)


def mean_token_margin(logits, targets: torch.Tensor) -> torch.Tensor:
    """Per sequence, the next-token margin averaged over its counted positions: (B,).

    `logits`: (B, T, vocab) or a model output with a ``logits`` field (Hugging Face);
    `targets`: (B, T) from ``next_token_targets``. This is the output function of
    causal-LM setups (``coar_replication.setups.Setup.output_fn``).
    """
    logits = getattr(logits, "logits", logits)
    if logits.shape[:2] != targets.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} do not match targets {tuple(targets.shape)}"
        )
    counted = (targets != IGNORE).sum(1)
    if (counted == 0).any():
        raise ValueError(
            f"sequences {torch.nonzero(counted == 0).flatten()[:10].tolist()} have no "
            "position with a real next token (fewer than 2 real tokens)"
        )
    return token_margins(logits, targets).sum(1) / counted


def check_right_padded(attention_mask: np.ndarray, what: str) -> None:
    """Every row must be 1...1 0...0 with at least two real tokens."""
    mask = np.asarray(attention_mask)
    lengths = mask.sum(1)
    expected = np.arange(mask.shape[1])[None, :] < lengths[:, None]
    bad = np.flatnonzero((mask != expected).any(1) | (lengths < 2))
    if bad.size:
        raise ValueError(
            f"{what}: sequences {bad[:10].tolist()} are not right-padded with at least "
            "two real tokens (attention_mask must be 1...1 0...0)"
        )


# ------------------------------------------------------------------- checkpoints
def load_lm(path, map_location="cpu") -> tuple[nn.Module, dict]:
    """(causal LM in eval mode, the checkpoint's metadata) of a GPT-2 or Phi checkpoint
    (`coar_replication.checkpoints.save_model`)."""
    from coar_replication.checkpoints import read_model

    model, meta = read_model(path)
    if not is_causal_lm(model):
        raise ValueError(f"{path}: not a GPT-2 or Phi checkpoint ({type(model).__name__})")
    return model.to(map_location), meta


def hf_causal_lm_config(config_path) -> tuple[str, dict]:
    """The model type (gpt2 or phi) of a Hugging Face config.json and the config dict that
    `gpt2_model` or `phi_model` builds it from."""
    with open(config_path) as f:
        hf_config = json.load(f)
    model_type = hf_config.get("model_type")
    if model_type not in ("gpt2", "phi"):
        raise ValueError(
            f"{config_path}: model_type {model_type!r}; the importable causal LMs are gpt2 and phi"
        )
    keys = PHI_CONFIG_KEYS if model_type == "phi" else GPT2_CONFIG_KEYS
    return model_type, {k: hf_config[k] for k in keys if hf_config.get(k) is not None}


def read_safetensors(paths) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors checkpoint: one file, or the shards of a sharded one
    (Hugging Face's model-0000K-of-0000N.safetensors) merged. A tensor in two shards is
    refused (the files are not shards of one checkpoint)."""
    from safetensors.torch import load_file

    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    tensors: dict[str, torch.Tensor] = {}
    where: dict[str, str] = {}
    for path in paths:
        for name, tensor in load_file(str(path)).items():
            if name in tensors:
                raise ValueError(
                    f"tensor {name!r} is in both {where[name]} and {path}: list each shard "
                    "of one checkpoint once"
                )
            tensors[name], where[name] = tensor, str(path)
    return tensors


def import_hf_causal_lm(config_path, weights_paths) -> nn.Module:
    """A causal LM from Hugging Face files, offline: config.json (model_type gpt2 or phi)
    and its safetensors weights, one file or all shards of a sharded checkpoint."""
    model_type, config = hf_causal_lm_config(config_path)
    weights = read_safetensors(weights_paths)
    try:
        if model_type == "phi":
            return phi_model(config, weights)
        # The hub's gpt2 checkpoint names tensors without the transformer. prefix and
        # stores attention-mask buffers (attn.bias, attn.masked_bias) that the model no
        # longer has.
        state = {
            (k if k.startswith(("transformer.", "lm_head.")) else f"transformer.{k}"): v
            for k, v in weights.items()
            if not k.endswith((".attn.bias", ".attn.masked_bias"))
        }
        return gpt2_model(config, state)
    except KeyError as err:
        raise KeyError(
            f"{config_path} with {len(weights)} tensors: {err.args[0]} (is a shard missing "
            "from the weights files?)"
        ) from None


def tiny_gpt2(vocab_size: int, n_positions: int, arch: dict, seed: int) -> nn.Module:
    """A small GPT-2 (transformers' architecture) with seeded random weights."""
    torch.manual_seed(seed)
    return gpt2_model(
        dict(
            vocab_size=vocab_size,
            n_positions=n_positions,
            n_embd=arch["n_embd"],
            n_layer=arch["n_layer"],
            n_head=arch["n_head"],
            n_inner=arch["n_inner"],
            bos_token_id=1,
            eos_token_id=2,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
        )
    )


# ---------------------------------------------------------------------- training
def train_lm(
    model: nn.Module,
    input_ids: np.ndarray,
    attention_mask: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
) -> nn.Module:
    """Next-token cross-entropy on real tokens: AdamW, linear warm-up, cosine decay."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    ids = torch.from_numpy(input_ids)
    targets = next_token_targets(ids, torch.from_numpy(attention_mask))
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.98)
    )
    steps = epochs * math.ceil(len(ids) / batch_size)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (
            min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
        ),
    )
    loss_fn = nn.CrossEntropyLoss(ignore_index=IGNORE)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(ids), generator=generator)
        total, batches = 0.0, 0
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            logits = model(input_ids=ids[idx]).logits
            loss = loss_fn(logits.flatten(0, 1), targets[idx].flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            total, batches = total + loss.item(), batches + 1
        log.info("epoch %d/%d  train loss %.4f", epoch + 1, epochs, total / batches)
    return model.eval()


@torch.no_grad()
def lm_metrics(
    model: nn.Module, input_ids: np.ndarray, attention_mask: np.ndarray, batch: int = 256
) -> dict[str, float]:
    """Next-token loss, accuracy and mean per-story margin on the given stories."""
    model.eval()
    ids = torch.from_numpy(input_ids)
    targets = next_token_targets(ids, torch.from_numpy(attention_mask))
    loss_sum, correct, tokens, margins = 0.0, 0, 0, []
    for i in range(0, len(ids), batch):
        logits = model(input_ids=ids[i : i + batch]).logits.float()
        t = targets[i : i + batch]
        valid = t != IGNORE
        loss_sum += nn.functional.cross_entropy(
            logits.flatten(0, 1), t.flatten(), ignore_index=IGNORE, reduction="sum"
        ).item()
        correct += ((logits.argmax(-1) == t) & valid).sum().item()
        tokens += valid.sum().item()
        margins.append(mean_token_margin(logits, t))
    return {
        "loss": loss_sum / tokens,
        "token_accuracy": correct / tokens,
        "mean_margin": torch.cat(margins).mean().item(),
        "tokens": tokens,
    }


# ------------------------------------------------------------------- TinyStories
STORY_SEPARATOR = "<|endoftext|>"


def read_tinystories(path) -> list[str]:
    """Stories of a TinyStories text file (separated by <|endoftext|> lines), in file order."""
    with open(path, encoding="utf-8") as f:
        stories = [story.strip() for story in f.read().split(STORY_SEPARATOR)]
    return [story for story in stories if story]


def tokenize_stories(tokenizer_path, texts: list[str], max_tokens: int) -> dict[str, np.ndarray]:
    """A Hugging Face tokenizer.json with GPT-2's <|endoftext|> token (GPT-2's byte-level
    BPE, phi-2's CodeGen BPE), no special tokens added, truncated to `max_tokens` and
    right-padded with <|endoftext|> as the original does for GPT-2."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    pad_id = tokenizer.token_to_id(STORY_SEPARATOR)
    if pad_id is None:
        raise KeyError(
            f"{tokenizer_path}: no {STORY_SEPARATOR} token (not a GPT-2-style tokenizer?)"
        )
    encoded = [e.ids[:max_tokens] for e in tokenizer.encode_batch(texts, add_special_tokens=False)]
    width = max(len(ids) for ids in encoded)
    input_ids = np.full((len(encoded), width), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(encoded), width), dtype=np.int64)
    for row, ids in enumerate(encoded):
        input_ids[row, : len(ids)] = ids
        attention_mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


# ------------------------------------------------------------------------- setup
def load_causal_lm(name: str, model_path, data_path, device: torch.device):
    """A causal-LM setup: a GPT-2 or Phi checkpoint (``checkpoints.save_model``) whose
    metadata names the component kind (``components``), and evaluation stories (``input_ids`` and
    ``attention_mask``, right-padded) in an .npz file."""
    from coar.components import component_spec
    from coar_replication.setup import Setup

    model, meta = load_lm(model_path)
    if "components" not in meta:
        raise KeyError(f"{model_path}: checkpoint does not name its component kind")
    with np.load(data_path) as data:
        input_ids, attention_mask = data["input_ids"], data["attention_mask"]
    check_right_padded(attention_mask, str(data_path))
    if input_ids.shape[1] > context_length(model):
        raise ValueError(
            f"{data_path}: sequences of {input_ids.shape[1]} tokens exceed the model's "
            f"{context_length(model)} positions"
        )
    targets = next_token_targets(torch.from_numpy(input_ids), torch.from_numpy(attention_mask))
    return Setup(
        name,
        model.to(device),
        component_spec(model, meta["components"]),
        torch.from_numpy(input_ids).to(device),
        targets.to(device),
        mean_token_margin,
    )
