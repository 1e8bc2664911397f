"""The paper's architectures with random weights, at full size or as tiny test instances.

This is the one registry of architectures: checkpoints (`coar_replication.checkpoints`)
name a constructor of `CONSTRUCTORS` and its arguments, and imported checkpoints are
built by `build_architecture`.

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
from torchvision.models import ResNet, VisionTransformer, resnet50, vit_b_16
from torchvision.models.resnet import Bottleneck

from coar_replication.models import MiniResNet


# ------------------------------------------------------------------ constructors
class _NarrowResNet(ResNet):
    """torchvision's ResNet with every stage's width divided by `divisor` (tiny tests).

    Module names and block structure are those of the full model, so component
    specs, checkpoints and masking run the same code paths. (Narrower than the
    registry's tiny ResNet-50: the workflow tests fit its 424 components from a few
    dozen masks in seconds.)
    """

    def __init__(self, block, layers, num_classes: int, divisor: int):
        self._divisor = divisor
        super().__init__(block, layers, num_classes=num_classes)
        self.fc = nn.Linear(512 // divisor * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        return super()._make_layer(block, planes // self._divisor, blocks, stride, dilate)


def _resnet50(divisor: int = 1, **kwargs) -> nn.Module:
    """ResNet-50 (``resnet50(weights=None, **kwargs)``), or a torchvision ResNet of
    Bottleneck ``layers``, narrowed by ``divisor``."""
    if divisor != 1:
        return _NarrowResNet(Bottleneck, kwargs.pop("layers"), divisor=divisor, **kwargs)
    if "layers" not in kwargs:
        return resnet50(weights=None, **kwargs)
    return ResNet(Bottleneck, **kwargs)


def _vit(**kwargs) -> nn.Module:
    """ViT-B/16 (``vit_b_16(weights=None, **kwargs)``), or a VisionTransformer."""
    if "image_size" not in kwargs:
        return vit_b_16(weights=None, **kwargs)
    return VisionTransformer(**kwargs)


# Keys of a GPT2Config that checkpoints keep (with a non-None value).
GPT2_CONFIG_KEYS = (
    "vocab_size",
    "n_positions",
    "n_embd",
    "n_layer",
    "n_head",
    "n_inner",
    "activation_function",
    "layer_norm_epsilon",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "tie_word_embeddings",
)


def gpt2_model(config: dict, state_dict: dict | None = None) -> nn.Module:
    """A transformers GPT2LMHeadModel (SDPA attention, no KV cache) from a config dict,
    with the given weights (``lm_head.weight`` may be left out: it is tied to
    ``transformer.wte.weight``), in eval mode. The one place that constructs GPT-2."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(**{**config, "use_cache": False})
    cfg._attn_implementation = "sdpa"
    model = GPT2LMHeadModel(cfg)
    if state_dict is not None:
        result = model.load_state_dict(state_dict, strict=False)
        missing = set(result.missing_keys) - {"lm_head.weight"}
        if missing or result.unexpected_keys:
            raise KeyError(
                f"GPT-2 weights do not match the architecture: missing {sorted(missing)[:5]}, "
                f"unexpected {sorted(result.unexpected_keys)[:5]}"
            )
        model.tie_weights()
    return model.eval()


def is_gpt2(model: nn.Module) -> bool:
    return type(model).__name__ == "GPT2LMHeadModel"


def gpt2_config(model: nn.Module) -> dict:
    """The config dict that `gpt2_model` rebuilds the model from."""
    return {
        key: value
        for key, value in model.config.to_dict().items()
        if key in GPT2_CONFIG_KEYS and value is not None
    }


def gpt2_state_dict(model: nn.Module) -> dict:
    """The weights a GPT-2 checkpoint keeps: on the CPU, without the tied lm_head."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    state.pop("lm_head.weight", None)  # tied to transformer.wte.weight
    return state


def _gpt2(**config) -> nn.Module:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # tiny vocabularies make it warn about GPT-2's token ids
    return gpt2_model(config)


# Keys of a PhiConfig that checkpoints keep (with a non-None value). Hugging Face's
# config.json of phi-2 gives the rotary settings as partial_rotary_factor and rope_theta;
# transformers 5 keeps them in rope_parameters, which is what a saved model's config holds.
PHI_CONFIG_KEYS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "max_position_embeddings",
    "hidden_act",
    "layer_norm_eps",
    "partial_rotary_factor",
    "rope_theta",
    "rope_parameters",
    "qk_layernorm",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "tie_word_embeddings",
)


def phi_model(config: dict, state_dict: dict | None = None) -> nn.Module:
    """A transformers PhiForCausalLM (phi-2's architecture; SDPA attention, no KV cache,
    no dropout) from a config dict, with the given weights (all of them: Phi's lm_head is
    not tied and has a bias), in eval mode. The one place that constructs Phi."""
    from transformers import PhiConfig, PhiForCausalLM

    dropout = dict(resid_pdrop=0.0, embd_pdrop=0.0, attention_dropout=0.0)
    cfg = PhiConfig(**{**config, **dropout, "use_cache": False})
    cfg._attn_implementation = "sdpa"
    model = PhiForCausalLM(cfg)
    if state_dict is not None:
        result = model.load_state_dict(state_dict, strict=False)
        if result.missing_keys or result.unexpected_keys:
            missing, unexpected = sorted(result.missing_keys), sorted(result.unexpected_keys)
            raise KeyError(
                f"Phi weights do not match the architecture: missing {missing[:5]}, "
                f"unexpected {unexpected[:5]}"
            )
    return model.eval()


def is_phi(model: nn.Module) -> bool:
    return type(model).__name__ == "PhiForCausalLM"


def phi_config(model: nn.Module) -> dict:
    """The config dict that `phi_model` rebuilds the model from."""
    return {
        key: value
        for key, value in model.config.to_dict().items()
        if key in PHI_CONFIG_KEYS and value is not None
    }


def is_causal_lm(model: nn.Module) -> bool:
    """A causal language model of this registry: GPT-2 or Phi."""
    return is_gpt2(model) or is_phi(model)


def context_length(model: nn.Module) -> int:
    """The most tokens a causal LM of this registry takes (GPT2Config maps
    max_position_embeddings to its n_positions)."""
    return int(model.config.max_position_embeddings)


# A model's constructor, by the name checkpoints give it (their "format" entry).
CONSTRUCTORS: dict[str, Callable[..., nn.Module]] = {
    "miniresnet": MiniResNet,
    "torchvision_resnet": _resnet50,
    "torchvision_vit": _vit,
    "gpt2": _gpt2,
    "phi": lambda **config: phi_model(config),
}
# Set on models built by `make_model` (and loaded checkpoints): how to build them again.
CHECKPOINT_ATTR = "coar_checkpoint"


def make_model(constructor: str, config: dict) -> nn.Module:
    """``CONSTRUCTORS[constructor](**config)``, remembering both on the model (see
    `CHECKPOINT_ATTR`), so that its checkpoint can say how to rebuild it."""
    if constructor not in CONSTRUCTORS:
        raise KeyError(f"unknown model constructor {constructor!r} (known: {sorted(CONSTRUCTORS)})")
    model = CONSTRUCTORS[constructor](**config)
    setattr(model, CHECKPOINT_ATTR, {"format": constructor, "config": dict(config)})
    return model


# ------------------------------------------------------------------ architectures
@dataclass(frozen=True)
class Architecture:
    kind: str  # the paper's component kind for this model
    task: str  # "classification" (inputs: images) or "language" (inputs: token ids)
    full: dict  # constructor arguments at the paper's size
    tiny: dict  # constructor arguments of a small instance for CPU tests
    constructor: str  # its entry of CONSTRUCTORS
    image_size: tuple[int, int] | None = None  # input side (full, tiny); None for text
    # Imported checkpoints' tiny size (the tiny paper config's stand-ins of the published
    # files: the real datasets' inputs, e.g. 32x32 CIFAR-10 images); default: ``tiny``.
    checkpoint_tiny: dict | None = None

    @property
    def make(self) -> Callable[..., nn.Module]:
        return CONSTRUCTORS[self.constructor]


ARCHITECTURES: dict[str, Architecture] = {
    # The embedded default's MiniResNet on 8x8 digits (288 conv filters).
    "mini_digits": Architecture(
        "conv_filters",
        "classification",
        dict(in_channels=1, planes=32, num_blocks=4, num_classes=10, pool=2, image_size=8),
        dict(in_channels=1, planes=8, num_blocks=2, num_classes=10, pool=2, image_size=8),
        "miniresnet",
        (8, 8),
    ),
    # Setup A: CIFAR-10 MiniResNet, 9 convs x 256 filters = 2,304.
    "cifar_miniresnet": Architecture(
        "conv_filters",
        "classification",
        dict(in_channels=3, planes=256, num_blocks=4, num_classes=10, pool=8, image_size=32),
        dict(in_channels=3, planes=8, num_blocks=2, num_classes=10, pool=8, image_size=16),
        "miniresnet",
        (32, 16),
        dict(in_channels=3, planes=8, num_blocks=2, num_classes=10, pool=8, image_size=32),
    ),
    # Setup B: torchvision ResNet-50, 22,720 conv filters (downsample convs excluded).
    "imagenet_resnet50": Architecture(
        "conv_filters",
        "classification",
        dict(),
        dict(layers=[1, 1, 1, 1], num_classes=10, width_per_group=8),
        "torchvision_resnet",
        (224, 32),
        dict(layers=[1, 1, 1, 1], num_classes=10, divisor=16),
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
        "torchvision_vit",
        (224, 32),
        dict(
            image_size=32,
            patch_size=8,
            num_layers=2,
            num_heads=2,
            hidden_dim=16,
            mlp_dim=32,
            num_classes=10,
        ),
    ),
    # GPT-2 small on TinyStories, 64,512 Conv1D rows.
    "gpt2": Architecture(
        "gpt2_rows",
        "language",
        dict(),
        dict(n_layer=2, n_embd=32, n_head=4, n_positions=32, vocab_size=97),
        "gpt2",
    ),
    # microsoft/phi-2 (not in the paper): 1,024 attention heads, 327,680 MLP neurons.
    "phi2": Architecture(
        "attention_heads",
        "language",
        dict(
            vocab_size=51200,
            hidden_size=2560,
            intermediate_size=10240,
            num_hidden_layers=32,
            num_attention_heads=32,
            max_position_embeddings=2048,
            partial_rotary_factor=0.4,
        ),
        dict(
            vocab_size=97,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=32,
            partial_rotary_factor=0.5,
        ),
        "phi",
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
        model = make_model(arch.constructor, arch.full if size == "full" else arch.tiny)
    return model.eval()


SIZES = ("full", "tiny")


def checkpoint_config(name: str, size: str, num_classes: int) -> tuple[str, dict]:
    """(constructor, config) of an image classifier as checkpoints of a setup's
    ``source.model`` (architecture, size, num_classes) have it."""
    arch = architecture(name)
    if arch.task != "classification":
        raise KeyError(f"architecture {name!r} is not an image classifier")
    if size not in SIZES:
        raise ValueError(f"architecture size must be one of {SIZES}, got {size!r}")
    base = arch.full if size == "full" else (arch.checkpoint_tiny or arch.tiny)
    return arch.constructor, {**base, "num_classes": num_classes}


def build_architecture(name: str, size: str = "full", num_classes: int = 1000) -> nn.Module:
    """A randomly initialised model to load a checkpoint into.

    Unlike `build` it takes the number of classes (2 for the fine-tuned Waterbirds and
    CelebA ResNet-50s), and its tiny sizes (``checkpoint_tiny``) take the real datasets'
    inputs (32x32 CIFAR-10 images)."""
    return make_model(*checkpoint_config(name, size, num_classes))


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
        length = seq_len or context_length(model)
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
