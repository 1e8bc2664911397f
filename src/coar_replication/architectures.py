"""The paper's architectures with random weights, at full size or as tiny test instances.

``build(name, size="full"|"tiny", seed=0)`` returns an eval-mode model without
downloading anything (torchvision ``weights=None``, a Hugging Face config
instead of pretrained weights). ``ARCHITECTURES[name]`` also says which
component kind the paper uses for it and how to make random inputs of the
right shape, which is all the benchmark and the ``coar components`` command need.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from coar_replication.models import MiniResNet


@dataclass(frozen=True)
class Architecture:
    kind: str  # the paper's component kind for this model
    task: str  # "classification" (inputs: images) or "language" (inputs: token ids)
    full: dict  # constructor arguments at the paper's size
    tiny: dict  # constructor arguments of a small instance for CPU tests
    make: Callable[..., nn.Module]
    image_size: tuple[int, int] | None = None  # input side (full, tiny); None for text


def _mini_resnet(**kwargs) -> nn.Module:
    return MiniResNet(**kwargs)


def _resnet50(**kwargs) -> nn.Module:
    from torchvision.models import resnet50
    from torchvision.models.resnet import Bottleneck, ResNet

    if not kwargs:
        return resnet50(weights=None)
    return ResNet(Bottleneck, **kwargs)


def _vit(**kwargs) -> nn.Module:
    from torchvision.models import vit_b_16
    from torchvision.models.vision_transformer import VisionTransformer

    if not kwargs:
        return vit_b_16(weights=None)
    return VisionTransformer(**kwargs)


def _gpt2(**kwargs) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # tiny vocabularies make it warn about GPT-2's token ids
    config = GPT2Config(**kwargs)
    return GPT2LMHeadModel._from_config(config, attn_implementation="sdpa")


ARCHITECTURES: dict[str, Architecture] = {
    # The embedded default's MiniResNet on 8x8 digits (288 conv filters).
    "mini_digits": Architecture(
        "conv_filters",
        "classification",
        dict(in_channels=1, planes=32, num_blocks=4, num_classes=10, pool=2, image_size=8),
        dict(in_channels=1, planes=8, num_blocks=2, num_classes=10, pool=2, image_size=8),
        _mini_resnet,
        (8, 8),
    ),
    # Setup A: CIFAR-10 MiniResNet, 9 convs x 256 filters = 2,304.
    "cifar_miniresnet": Architecture(
        "conv_filters",
        "classification",
        dict(in_channels=3, planes=256, num_blocks=4, num_classes=10, pool=8, image_size=32),
        dict(in_channels=3, planes=8, num_blocks=2, num_classes=10, pool=8, image_size=16),
        _mini_resnet,
        (32, 16),
    ),
    # Setup B: torchvision ResNet-50, 22,720 conv filters (downsample convs excluded).
    "imagenet_resnet50": Architecture(
        "conv_filters",
        "classification",
        dict(),
        dict(layers=[1, 1, 1, 1], num_classes=10, width_per_group=8),
        _resnet50,
        (224, 32),
    ),
    # Setup C: torchvision ViT-B/16, 82,944 neurons.
    "imagenet_vit": Architecture(
        "vit_neurons",
        "classification",
        dict(),
        dict(
            image_size=32,
            patch_size=8,
            num_layers=2,
            num_heads=4,
            hidden_dim=32,
            mlp_dim=64,
            num_classes=10,
        ),
        _vit,
        (224, 32),
    ),
    # GPT-2 small on TinyStories, 64,512 Conv1D rows.
    "gpt2": Architecture(
        "gpt2_rows",
        "language",
        dict(),
        dict(n_layer=2, n_embd=32, n_head=4, n_positions=32, vocab_size=97),
        _gpt2,
    ),
}


def architecture(name: str) -> Architecture:
    if name not in ARCHITECTURES:
        raise KeyError(f"unknown architecture {name!r} (known: {sorted(ARCHITECTURES)})")
    return ARCHITECTURES[name]


def build(name: str, size: str = "full", seed: int = 0) -> nn.Module:
    """A seeded random-weight instance of an architecture, in eval mode, on the CPU."""
    arch = architecture(name)
    if size not in ("full", "tiny"):
        raise ValueError(f"architecture size must be 'full' or 'tiny', got {size!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = arch.make(**(arch.full if size == "full" else arch.tiny))
    return model.eval()


def random_inputs(
    name: str,
    model: nn.Module,
    n_examples: int,
    seed: int = 0,
    size: str = "full",
    seq_len: int | None = None,
):
    """Random inputs and labels for a model built by ``build(name, size)``: images and
    class labels, or token ids (with an all-ones attention mask) and the same ids as
    next-token labels for a language model (``seq_len`` tokens, default its context)."""
    arch = architecture(name)
    generator = torch.Generator().manual_seed(seed)
    if arch.task == "language":
        config = model.config
        length = seq_len or config.n_positions
        ids = torch.randint(0, config.vocab_size, (n_examples, length), generator=generator)
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        return inputs, ids
    side = arch.image_size[0 if size == "full" else 1]
    channels = (
        arch.full.get("in_channels", 3) if size == "full" else arch.tiny.get("in_channels", 3)
    )
    inputs = torch.randn(n_examples, channels, side, side, generator=generator)
    return inputs, torch.randint(0, _n_classes(model), (n_examples,), generator=generator)


def _n_classes(model: nn.Module) -> int:
    last_linear = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    return last_linear.out_features
