"""The paper's models: importing published checkpoints into our safe format.

Published checkpoints come in three formats (``source.model.format`` in the config):

- ``original_pickle``: the original code's ``torch.save(model)`` of a whole
  MiniResNet module (setup A, the backdoored CIFAR model). Unpickling such a file
  with ``weights_only=False`` imports ``src.models.mini_resnet`` and may run any
  code the file names: a tampered file executes arbitrary code on load. We never
  do that: the file is read by PyTorch's restricted ``weights_only`` unpickler,
  with inert stand-in classes allow-listed under the original import paths
  (``src.models.mini_resnet.MiniResNet``, ``src.models.cifar_resnet.BasicBlock``)
  plus the plain ``torch.nn`` layers the model is built from; nothing else can be
  named by the file. The stand-ins only hold the unpickled submodules; we read
  their state dict and load it into our own :class:`~coar_replication.models.MiniResNet`.
- ``state_dict``: a plain state dict (the fine-tuned ResNet-50s, whose parameter
  names carry a ``base_model.`` prefix: give it as ``strip_prefix``).
- ``torchvision``: torchvision's weight files (e.g. ``resnet50-0676ba61.pth``).

Imported models are saved in our format: architecture name, size, number of
classes, input normalisation and the state dict; it loads with
``weights_only=True``.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn
from torchvision.models import ResNet, VisionTransformer, resnet50, vit_b_16
from torchvision.models.resnet import Bottleneck

from coar.atomic import atomic_path
from coar.edit import Edit
from coar_replication.models import MiniResNet, save_model

# Input normalisation on the 0-255 scale, as the original's FFCV pipelines apply it.
NORMALIZATION = {
    "cifar": {"mean": [125.307, 122.961, 113.8575], "std": [51.5865, 50.847, 51.255]},
    "imagenet": {"mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]},
    "openai_clip": {
        "mean": [122.770938, 116.7460125, 104.09373615],
        "std": [68.5005327, 66.6321579, 70.32316305],
    },
}


class _NarrowResNet(ResNet):
    """torchvision's ResNet with every stage's width divided by `divisor` (tiny tests).

    Module names and block structure are those of the full model, so component
    specs, checkpoints and masking run the same code paths. (Narrower than
    coar_replication.architectures' tiny ResNet-50: the workflow tests fit its 424 components
    from a few dozen masks in seconds.)
    """

    def __init__(self, block, layers, num_classes: int, divisor: int):
        self._divisor = divisor
        super().__init__(block, layers, num_classes=num_classes)
        self.fc = nn.Linear(512 // divisor * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        return super()._make_layer(block, planes // self._divisor, blocks, stride, dilate)


def _cifar_miniresnet(size: str, num_classes: int) -> nn.Module:
    planes, blocks = (256, 4) if size == "full" else (8, 2)
    return MiniResNet(3, planes, blocks, num_classes, pool=8, image_size=32)


def _imagenet_resnet50(size: str, num_classes: int) -> nn.Module:
    if size == "full":
        return resnet50(num_classes=num_classes)
    return _NarrowResNet(Bottleneck, [1, 1, 1, 1], num_classes, divisor=16)


def _imagenet_vit(size: str, num_classes: int) -> nn.Module:
    if size == "full":
        return vit_b_16(num_classes=num_classes)
    return VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        mlp_dim=32,
        num_classes=num_classes,
    )


ARCHITECTURES = {
    "cifar_miniresnet": _cifar_miniresnet,
    "imagenet_resnet50": _imagenet_resnet50,
    "imagenet_vit": _imagenet_vit,
}
SIZES = ("full", "tiny")


def build_architecture(name: str, size: str = "full", num_classes: int = 1000) -> nn.Module:
    """A randomly initialised model to load a checkpoint into.

    Unlike ``coar_replication.architectures.build`` it takes the number of classes (2 for the
    fine-tuned Waterbirds and CelebA ResNet-50s), and its tiny sizes take the real
    datasets' inputs (32x32 CIFAR-10 images)."""
    if name not in ARCHITECTURES:
        raise KeyError(f"unknown architecture {name!r} (known: {sorted(ARCHITECTURES)})")
    if size not in SIZES:
        raise ValueError(f"architecture size must be one of {SIZES}, got {size!r}")
    return ARCHITECTURES[name](size, num_classes)


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not match its architecture."""


def _original_stand_ins() -> list[type]:
    """Inert classes under the original code's import paths, for the restricted unpickler."""
    paths = [
        ("src.models.mini_resnet", "MiniResNet"),
        ("src.models.cifar_resnet", "BasicBlock"),
        ("src.models.cifar_resnet", "SequentialWithArgs"),
    ]
    return [type(name, (nn.Module,), {"__module__": module}) for module, name in paths]


_TORCH_LAYERS = [
    nn.Conv2d,
    nn.BatchNorm2d,
    nn.Linear,
    nn.Sequential,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.MaxPool2d,
    nn.Flatten,
    nn.ReLU,
    nn.Identity,
    set,
]


def read_original_pickle(path) -> dict[str, torch.Tensor]:
    """State dict of a whole module pickled by the original code, read without running it."""
    try:
        with torch.serialization.safe_globals(_original_stand_ins() + _TORCH_LAYERS):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise CheckpointError(
            f"{path}: not a whole-module checkpoint of the original MiniResNet that the "
            f"restricted unpickler accepts ({str(err).splitlines()[-1]}). Loading it with "
            "weights_only=False would execute whatever the file names; we do not."
        ) from err
    if not isinstance(obj, nn.Module):
        raise CheckpointError(f"{path}: expected a pickled module, found {type(obj).__name__}")
    return obj.state_dict()


def miniresnet_from_original(state: dict[str, torch.Tensor]) -> MiniResNet:
    """Our MiniResNet carrying the original MiniResNet's weights.

    The original registers its blocks twice (``layer.K`` and ``blockK``); its
    ``layer`` is our ``layers``.
    """
    mapped = {}
    for key, value in state.items():
        if key.startswith("block"):
            continue
        mapped[key.replace("layer.", "layers.", 1) if key.startswith("layer.") else key] = value
    try:
        planes = mapped["conv1.weight"].shape[0]
        num_classes, features = mapped["linear.weight"].shape
    except KeyError as err:
        raise CheckpointError(f"not an original MiniResNet: missing {err}") from err
    num_blocks = len({key.split(".")[1] for key in mapped if key.startswith("layers.")})
    pool = 8
    side = int(round((features / planes) ** 0.5)) * pool
    model = MiniResNet(3, planes, num_blocks, num_classes, pool=pool, image_size=side)
    _load_strict(model, mapped, "original MiniResNet")
    return model


def _load_strict(model: nn.Module, state: dict, what: str) -> None:
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{what}: state dict does not match the architecture: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )


def read_state_dict(path, strip_prefix: str | None = None) -> dict[str, torch.Tensor]:
    """A plain (possibly wrapped) state dict, loaded with weights_only=True."""
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a state dict of tensors")
    if strip_prefix:
        if not any(k.startswith(strip_prefix) for k in obj):
            raise CheckpointError(f"{path}: no parameter name starts with {strip_prefix!r}")
        obj = {k.removeprefix(strip_prefix): v for k, v in obj.items()}
    return obj


def import_checkpoint(path, model_cfg: dict) -> nn.Module:
    """Load a published checkpoint as described by a setup's ``source.model`` config."""
    fmt = model_cfg["format"]
    if fmt == "original_pickle":
        model = miniresnet_from_original(read_original_pickle(path))
        expected = build_architecture(
            model_cfg["architecture"], model_cfg["size"], model_cfg["num_classes"]
        )
        if model.config != getattr(expected, "config", None):
            raise CheckpointError(
                f"{path}: MiniResNet {model.config}, but the config's "
                f"{model_cfg['architecture']} ({model_cfg['size']}) is "
                f"{getattr(expected, 'config', type(expected).__name__)}"
            )
        return model.eval()
    if fmt in ("state_dict", "torchvision"):
        model = build_architecture(
            model_cfg["architecture"], model_cfg["size"], model_cfg["num_classes"]
        )
        state = read_state_dict(path, model_cfg.get("strip_prefix"))
        _load_strict(model, state, str(path))
        return model.eval()
    raise CheckpointError(f"unknown checkpoint format {fmt!r}")


def save_checkpoint(model: nn.Module, path, *, architecture: dict, normalization: str) -> None:
    """Our format: architecture description, input normalisation, state dict."""
    if isinstance(model, MiniResNet):
        architecture = {**architecture, "miniresnet": model.config}
    payload = {
        "architecture": dict(architecture),
        "normalization": normalization,
        "state_dict": model.state_dict(),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path) -> tuple[nn.Module, dict]:
    """(model in eval mode, info): info holds ``architecture`` (the name) and
    ``normalization`` ({mean, std} on the 0-255 scale)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"model checkpoint {path} does not exist")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    arch = payload["architecture"]
    if "miniresnet" in arch:
        model = MiniResNet(**arch["miniresnet"])
    else:
        model = build_architecture(arch["architecture"], arch["size"], arch["num_classes"])
    _load_strict(model, payload["state_dict"], str(path))
    info = {
        "architecture": arch["architecture"],
        "normalization": NORMALIZATION[payload["normalization"]],
    }
    return model.eval(), info


def load_clip(path) -> nn.Module:
    """OpenAI's CLIP (ViT-B/16 for the typographic-attack experiment), float32, on the CPU.

    OpenAI publishes TorchScript archives; ``torch.jit.load`` runs only TorchScript (no
    arbitrary Python, unlike unpickling with weights_only=False) and the file's full
    sha256 is pinned by the download rule. A plain state dict in OpenAI's key layout
    loads too (``weights_only=True``). open_clip rebuilds a regular module from it;
    the image encoder is ``model.visual``. Inputs are normalised with
    ``NORMALIZATION["openai_clip"]``.
    """
    import open_clip

    if not Path(path).is_file():
        raise FileNotFoundError(f"CLIP checkpoint {path} does not exist")
    return open_clip.load_openai_model(str(path), precision="fp32", device="cpu").eval()


def save_edited_model(model: nn.Module, edit: Edit, path, **metadata) -> None:
    """Save the edited weights with the edit's record (what was ablated and why).

    Models of this project keep their architecture arguments (`coar_replication.models`);
    any other model is saved as its state dict, to be loaded into its own class.
    """
    with atomic_path(path) as tmp:
        if hasattr(model, "config"):
            save_model(model, tmp, edit=edit.record(), **metadata)
        else:
            torch.save({"state_dict": model.state_dict(), "edit": edit.record(), **metadata}, tmp)
