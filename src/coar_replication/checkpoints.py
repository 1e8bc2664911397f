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

Every model file the workflow writes has one format, written by `save_model` and
read by `read_model` (`load_checkpoint` for a setup's model, `load_model` for the
model alone), always with ``weights_only=True``: a dict of

- ``format``: the model's constructor in ``coar_replication.architectures.CONSTRUCTORS``
  (``torchvision_resnet``, ``torchvision_vit``, ``gpt2``, ``phi``), left out for this project's
  ``miniresnet`` (the layout its MiniResNet files have always had); ``state_dict``
  for a model that the registry cannot build (the edited CLIP zero-shot classifier),
  whose weights load into their own model with `read_state_dict`;
- ``config``: the constructor's keyword arguments;
- ``state_dict``: the weights (GPT-2's without the tied ``lm_head.weight``);
- metadata: for an imported model its registry ``architecture`` and input
  ``normalization`` (names), which the edited models of it keep; ``metrics``,
  ``edit``, ``components``, ``source``, as their writers give them.

Files of the earlier layout of imported models (``architecture`` a dict of name,
size, number of classes, with ``miniresnet`` arguments for MiniResNets) still load.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from coar.edit import Edit
from coar.serialization import load_torch, save_torch
from coar_replication.architectures import (
    CHECKPOINT_ATTR,
    build_architecture,
    checkpoint_config,
    gpt2_config,
    gpt2_model,
    gpt2_state_dict,
    is_gpt2,
    is_phi,
    make_model,
    phi_config,
)
from coar_replication.models import MiniResNet

# Input normalisation on the 0-255 scale, as the original's FFCV pipelines apply it.
NORMALIZATION = {
    "cifar": {"mean": [125.307, 122.961, 113.8575], "std": [51.5865, 50.847, 51.255]},
    "imagenet": {"mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]},
    "openai_clip": {
        "mean": [122.770938, 116.7460125, 104.09373615],
        "std": [68.5005327, 66.6321579, 70.32316305],
    },
}


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


def restricted_load(path, what: str = "checkpoint", safe_globals: list | None = None):
    """`coar.serialization.load_torch`, raising `CheckpointError`."""
    return load_torch(path, what, safe_globals, error=CheckpointError)


def read_original_pickle(path) -> dict[str, torch.Tensor]:
    """State dict of a whole module pickled by the original code, read without running it."""
    obj = restricted_load(
        path,
        "whole-module checkpoint of the original MiniResNet",
        _original_stand_ins() + _TORCH_LAYERS,
    )
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
    obj = restricted_load(path, "state dict")
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


DEFAULT_FORMAT = "miniresnet"  # a checkpoint without "format"
WEIGHTS_ONLY = "state_dict"  # the format of a model that the registry cannot build
IDENTITY = ("architecture", "normalization")  # metadata that a model's edits keep


def _header(model: nn.Module) -> dict:
    """How to rebuild the model: format, config and its identity metadata."""
    header = dict(getattr(model, CHECKPOINT_ATTR, {}))
    if isinstance(model, MiniResNet):
        header.update(format=DEFAULT_FORMAT, config=model.config)
    elif is_gpt2(model):
        header.update(format="gpt2", config=gpt2_config(model))
    elif is_phi(model):
        header.update(format="phi", config=phi_config(model))
    elif "format" not in header:
        header = {"format": WEIGHTS_ONLY}
    return header


def save_model(model: nn.Module, path, **metadata) -> None:
    """Write a model in the checkpoint format (see the module's docstring), atomically.

    A model loaded by `read_model` keeps its ``architecture`` and ``normalization``."""
    header = _header(model)
    payload = {}
    if header["format"] != DEFAULT_FORMAT:
        payload["format"] = header["format"]
    if "config" in header:
        payload["config"] = header["config"]
    payload["state_dict"] = gpt2_state_dict(model) if is_gpt2(model) else model.state_dict()
    payload.update({key: header[key] for key in IDENTITY if key in header})
    payload.update(metadata)
    save_torch(payload, path)


def _from_earlier_layout(payload: dict) -> dict:
    """An imported model's checkpoint of the earlier layout, in the current one."""
    arch = payload["architecture"]
    if "miniresnet" in arch:
        fmt, config = DEFAULT_FORMAT, arch["miniresnet"]
    else:
        fmt, config = checkpoint_config(arch["architecture"], arch["size"], arch["num_classes"])
    rest = {k: v for k, v in payload.items() if k not in ("architecture", "state_dict")}
    return {
        "format": fmt,
        "config": config,
        "state_dict": payload["state_dict"],
        "architecture": arch["architecture"],
        **rest,
    }


def read_model(path) -> tuple[nn.Module, dict]:
    """(model in eval mode, the checkpoint's metadata) of a file in the checkpoint format."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"model checkpoint {path} does not exist")
    payload = restricted_load(path, "model checkpoint")
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise CheckpointError(f"{path}: not a model checkpoint (no state_dict)")
    if isinstance(payload.get("architecture"), dict):
        payload = _from_earlier_layout(payload)
    fmt = payload.get("format", DEFAULT_FORMAT)
    if fmt == WEIGHTS_ONLY:
        raise CheckpointError(
            f"{path}: the weights of a model that coar_replication.architectures does not "
            "build; load them into that model (read_state_dict)"
        )
    if "config" not in payload:
        raise CheckpointError(f"{path}: checkpoint of format {fmt!r} has no config")
    if fmt == "gpt2":  # ties lm_head.weight, which the file leaves out, to the embeddings
        model = gpt2_model(payload["config"], payload["state_dict"])
    else:
        try:
            model = make_model(fmt, payload["config"])
        except KeyError as err:
            raise CheckpointError(f"{path}: {err.args[0]}") from err
        _load_strict(model, payload["state_dict"], str(path))
    meta = {k: v for k, v in payload.items() if k not in ("format", "config", "state_dict")}
    stamp = {"format": fmt, "config": payload["config"]}
    setattr(model, CHECKPOINT_ATTR, {**stamp, **{k: meta[k] for k in IDENTITY if k in meta}})
    return model.eval(), meta


def load_model(path) -> nn.Module:
    """The model of a checkpoint, in eval mode, on the CPU."""
    return read_model(path)[0]


def load_checkpoint(path) -> tuple[nn.Module, dict]:
    """(model in eval mode, info) of an imported model (or an edit of one): info holds
    ``architecture`` (the name) and ``normalization`` ({mean, std} on the 0-255 scale)."""
    model, meta = read_model(path)
    missing = [key for key in IDENTITY if key not in meta]
    if missing:
        raise CheckpointError(f"{path}: not an imported model's checkpoint (no {missing})")
    info = {
        "architecture": meta["architecture"],
        "normalization": NORMALIZATION[meta["normalization"]],
    }
    return model, info


def load_clip(path) -> nn.Module:
    """OpenAI's CLIP (ViT-B/16 for the typographic-attack experiment), float32, on the CPU.

    OpenAI publishes TorchScript archives; ``torch.jit.load`` runs only TorchScript (no
    arbitrary Python) and the file's full sha256 is pinned by the download rule. Any
    other file is read as a state dict in OpenAI's key layout by `restricted_load`.
    open_clip rebuilds a regular module from the weights; the image encoder is
    ``model.visual``. Inputs are normalised with ``NORMALIZATION["openai_clip"]``.

    The file is read here rather than by ``open_clip.load_openai_model``, whose fallback
    for a non-TorchScript file is a ``torch.load`` with PyTorch's default, which
    ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` turns into unrestricted unpickling.
    """
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    from open_clip.model import build_model_from_openai_state_dict

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CLIP checkpoint {path} does not exist")
    try:
        state = torch.jit.load(str(path), map_location="cpu").state_dict()
    except RuntimeError:  # not a TorchScript archive
        state = read_state_dict(path)
        if "visual.proj" not in state and any(k.startswith("module.") for k in state):
            state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        model = build_model_from_openai_state_dict(state)
    except (KeyError, RuntimeError, ValueError) as err:
        raise CheckpointError(
            f"{path}: not a CLIP checkpoint in OpenAI's layout ({type(err).__name__}: {err})"
        ) from None
    model.float()
    model.visual.image_mean, model.visual.image_std = OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    return model.eval()


def save_edited_model(model: nn.Module, edit: Edit, path, **metadata) -> None:
    """Save the edited weights with the edit's record (what was ablated and why), in the
    checkpoint format (`save_model`)."""
    save_model(model, path, edit=edit.record(), **metadata)
