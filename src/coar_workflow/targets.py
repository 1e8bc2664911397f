"""The models `coar components` lists: from a name, a file, a directory or a factory.

`resolve` turns the command's TARGET into a `Target` (the model and the component kind
it names, if any), trying in this order:

1. an existing path: a Hugging Face model directory or ``config.json`` (built from the
   config, offline), a model file of this project in any format the workflow writes
   (`coar_replication.checkpoints`: MiniResNets, imported torchvision models and their
   edits, GPT-2 language models, the description file of a zero-shot CLIP setup), or
   the original code's pickled MiniResNet;
2. ``package.module:factory``: the module imported, the factory called with no arguments;
3. a setup of the config (every setup of ``config/config.yaml`` and ``config/mini.yaml``,
   or of the config files given): its architecture, built as the workflow builds it;
4. an architecture of `coar_replication.architectures` (``gpt2``, ``imagenet_vit``, ...);
5. a torchvision model name (``resnet18``), built with ``weights=None``.

Models are built on the ``meta`` device wherever their weights are not needed (the
components depend only on the modules and their shapes), so the paper's largest
models take no memory; one whose constructor needs real tensors is built on the CPU
(`without_weights`). Anything the command cannot use raises `TargetError`, whose
one-line message names the target and says what to pass instead.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from coar.components import KINDS, ComponentSpec

REPO = Path(__file__).resolve().parents[2]
# The workflow's configs: the paper's (the default profile's) and the embedded default.
DEFAULT_CONFIGS = ("config/config.yaml", "config/mini.yaml")
# A model's kind when neither the target nor --kind names one, by preference: a
# transformer's heads, else a convnet's filters, else (any other network) its neurons.
FALLBACK_KINDS = ("attention_heads", "conv_filters", "linear_neurons")
TARGET_FORMS = (
    "a setup of the config, an architecture (gpt2, imagenet_vit, ...), a torchvision "
    "model name (resnet18), a checkpoint file, a Hugging Face config.json or model "
    "directory, or package.module:factory"
)


class TargetError(Exception):
    """A target the command cannot list: the message says what to pass instead."""


@dataclass
class Target:
    model: nn.Module
    what: str  # how the model was made, for the table's heading
    kind: str | None = None  # the kind the setup or checkpoint names
    # A setup whose components are not a kind of `coar.components.KINDS` (zero-shot
    # CLIP's MLP neurons): its own spec, used unless --kind names another.
    spec: Callable[[nn.Module], ComponentSpec] | None = None
    spec_name: str | None = None


# -- components ---------------------------------------------------------------------------
def _takes(kind: str, option: str) -> bool:
    return option in inspect.signature(KINDS[kind]).parameters


def _kind_function(kind: str, include, exclude) -> Callable[[nn.Module], ComponentSpec]:
    """``KINDS[kind]`` with the module patterns given; refuses those it does not take."""
    options = {}
    for name, patterns in (("include", include), ("exclude", exclude)):
        if patterns:
            if not _takes(kind, name):
                raise TargetError(
                    f"kind {kind} takes no --{name}; leave it out, or pick a kind that "
                    f"does ({', '.join(k for k in KINDS if _takes(k, name))})"
                )
            options[name] = list(patterns)
    return lambda model: KINDS[kind](model, **options)


def components_of(target: Target, kind=None, include=(), exclude=()) -> tuple[str, ComponentSpec]:
    """(kind, spec): of ``kind``, else of the target's own kind, else of the first kind
    of FALLBACK_KINDS the model has. Refuses a kind the model has no component of."""
    if kind is None and target.spec is not None:
        if include or exclude:
            raise TargetError(
                f"the components of {target.what} ({target.spec_name}) take no "
                "--include/--exclude; give a --kind to filter"
            )
        return target.spec_name, target.spec(target.model)
    if kind is None and target.kind is None:
        for fallback in FALLBACK_KINDS:
            try:
                found = fallback in KINDS and len(_kind_function(fallback, (), ())(target.model))
            except ValueError:  # the model has none of them
                found = False
            if found:
                kind = fallback
                break
        else:
            raise TargetError(
                f"{target.what} has none of the components "
                f"{', '.join(k for k in FALLBACK_KINDS if k in KINDS)}; "
                f"give one of the kinds with --kind ({', '.join(sorted(KINDS))})"
            )
    kind = kind or target.kind
    if kind not in KINDS:
        raise TargetError(f"unknown component kind {kind!r}; pick one of {', '.join(KINDS)}")
    function = _kind_function(kind, include, exclude)
    try:
        spec = function(target.model)
    except ValueError as err:  # what the model has that the kind cannot take, or nothing
        reason = " ".join(str(err).split())
        raise TargetError(
            f"{target.what}: {reason}; pick another --kind ({', '.join(sorted(KINDS))})"
        ) from None
    if len(spec) == 0:
        raise TargetError(
            f"{target.what} ({type(target.model).__name__}) has no components of kind {kind}"
            + (
                " that these --include/--exclude patterns select; change the patterns (globs "
                "over module paths) or pick another --kind"
                if include or exclude
                else f"; pick another --kind ({', '.join(sorted(KINDS))})"
            )
        )
    return kind, spec


# -- resolving the target -------------------------------------------------------------------
def resolve(target: str, config_files=None) -> Target:
    """The model that ``target`` names (see the module's docstring)."""
    path = Path(target)
    if path.is_dir():
        return _hugging_face(path)
    if path.is_file():
        return _hugging_face(path) if path.suffix == ".json" else _model_file(path, config_files)
    if ":" in target and not target.startswith(("/", ".")) and "/" not in target:
        return _factory(target)
    setups, configs = config_setups(config_files)
    if target in setups:
        return setup_target(target, *setups[target])
    from coar_replication.architectures import ARCHITECTURES, architecture, build

    if target in ARCHITECTURES:
        with torch.device("meta"):
            model = build(target)
        return Target(model, f"architecture {target} (no weights)", architecture(target).kind)
    if target in _torchvision_names():
        model, weights = without_weights(lambda: _torchvision_model(target))
        return Target(model, f"torchvision {target} ({weights})")
    if "/" in target or path.suffix in (".pt", ".pth", ".bin", ".json", ".safetensors"):
        raise TargetError(f"{target}: no such file or directory; pass an existing path")
    raise TargetError(
        f"{target!r} is not a setup of {' or '.join(configs) or 'the config'} "
        f"({', '.join(sorted(setups)) or 'none'}), an architecture "
        f"({', '.join(ARCHITECTURES)}), a torchvision model (torchvision.models.list_models()), "
        "an existing file or directory, or package.module:factory; pass one of those"
    )


def without_weights(make: Callable[[], nn.Module]) -> tuple[nn.Module, str]:
    """(``make()`` on the meta device, "no weights"), or, for a model whose constructor
    needs real tensors (torchvision's RegNets copy into their weights), (``make()`` on
    the CPU, "random weights")."""
    try:
        with torch.device("meta"):
            return make(), "no weights"
    except (NotImplementedError, RuntimeError):
        return make(), "random weights"


def _torchvision_names() -> list[str]:
    """Every model torchvision builds: classification, video, detection, segmentation, ..."""
    from torchvision.models import list_models

    return list_models()


def _torchvision_model(name: str) -> nn.Module:
    """``get_model(name, weights=None)``, and no pretrained backbone either (detection and
    segmentation models would download one)."""
    from torchvision.models import get_model, get_model_builder

    options = {"weights": None}
    if "weights_backbone" in inspect.signature(get_model_builder(name)).parameters:
        options["weights_backbone"] = None
    return get_model(name, **options)


# -- a setup of the config ------------------------------------------------------------------
def _merge(base: dict, update: dict) -> dict:
    """``update`` over ``base``, nested mappings merged (as Snakemake merges config files)."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_config(path: Path, shown: str) -> dict:
    from coar_workflow.config import ConfigError, read_config_file

    try:
        data = read_config_file(path, shown).data
    except ConfigError as err:
        raise TargetError(str(err)) from None
    if data is not None and not isinstance(data, dict):
        raise TargetError(f"config file {shown} is not a mapping of keys; pass a config file")
    return data or {}


def config_setups(config_files=None) -> tuple[dict[str, tuple[dict, dict]], list[str]]:
    """({setup name: (its config, the whole config)}, the config files read).

    Given config files are merged in order, as Snakemake merges ``--configfile``s;
    without them, every setup of the workflow's configs counts (from the working
    directory, else from this checkout)."""
    if config_files:
        merged, shown = {}, []
        for file in config_files:
            if not Path(file).is_file():
                raise TargetError(f"config file {file}: no such file; pass an existing one")
            merged = _merge(merged, _read_config(Path(file), str(file)))
            shown.append(str(file))
        configs = [merged]
    else:
        configs, shown = [], []
        for name in DEFAULT_CONFIGS:
            path = Path(name) if Path(name).is_file() else REPO / name
            if path.is_file():
                configs.append(_read_config(path, name))
                shown.append(name)
    setups = {}
    for config in configs:
        for name, cfg in (config.get("setups") or {}).items():
            setups.setdefault(name, (cfg, config))
    return setups, shown


def setup_target(name: str, cfg: dict, config: dict) -> Target:
    """A setup's model as the workflow builds it, without its weights."""
    from coar_replication.setups import REAL_SETUP_KINDS

    kind = cfg.get("kind")
    try:
        if kind == "mini_digits":
            return _digits_setup(name, cfg)
        if kind in REAL_SETUP_KINDS:
            return _image_setup(name, cfg)
        if kind == "causal_lm":
            return _language_setup(name, cfg, config)
        if kind == "clip_zero_shot":
            return _clip_setup(name, cfg, config)
    except KeyError as err:
        raise TargetError(
            f"setup {name}: its config has no key {err.args[0]!r}; fix the config (see "
            "workflow/schemas/config.schema.yaml)"
        ) from None
    except (TypeError, ValueError) as err:  # a value the setup's builder cannot take
        raise TargetError(
            f"setup {name}: {' '.join(str(err).split())}; fix the config (see "
            "workflow/schemas/config.schema.yaml)"
        ) from None
    raise TargetError(
        f"setup {name}: unknown kind {kind!r}; fix the config (see "
        "workflow/schemas/config.schema.yaml)"
    )


def _digits_setup(name: str, cfg: dict) -> Target:
    """The MiniResNet that workflow/scripts/train.py trains on the setup's digits."""
    from coar_replication.edit_data import prepare_digits
    from coar_replication.models import digits_miniresnet

    arrays = prepare_digits(cfg["data"])
    with torch.device("meta"):
        model = digits_miniresnet(cfg["model"], arrays["x_train"], arrays["y_train"])
    return Target(model, f"setup {name} (no weights)", "conv_filters")


def _image_setup(name: str, cfg: dict) -> Target:
    """An imported model's architecture (`coar_replication.checkpoints.import_checkpoint`)."""
    from coar_replication.architectures import architecture, build_architecture

    source = cfg["source"]["model"]
    with torch.device("meta"):
        model = build_architecture(source["architecture"], source["size"], source["num_classes"])
    return Target(model, f"setup {name} (no weights)", architecture(source["architecture"]).kind)


def _language_setup(name: str, cfg: dict, config: dict) -> Target:
    """The language model of a causal-LM setup: the tiny GPT-2 that the workflow trains
    (its vocabulary from the generated corpus), or a Hugging Face model (GPT-2, Phi) built
    from its downloaded config.json when it is there, else from the architecture of the
    same name (``gpt2``: GPT-2 small, ``phi2``: microsoft/phi-2)."""
    from coar_replication.architectures import ARCHITECTURES, make_model
    from coar_replication.lm import hf_causal_lm_config, tiny_gpt2

    lm_name = cfg["language_model"]
    models = config.get("language_models") or {}
    if lm_name not in models:
        raise TargetError(
            f"setup {name}: language model {lm_name!r} is not defined under language_models "
            f"(defined: {', '.join(sorted(models)) or 'none'}); fix the config"
        )
    lm = models[lm_name]
    if lm["source"] == "generated":
        from coar_replication.stories import WordTokenizer, stories

        corpus = lm["corpus"]
        vocab = len(WordTokenizer.fit(stories(corpus["seed"], 0, corpus["n_train"])))
        with torch.device("meta"):
            model = tiny_gpt2(vocab, corpus["max_tokens"], lm["model"], seed=lm["train"]["seed"])
        return Target(model, f"setup {name}: {lm_name} (no weights)", cfg["components"])
    downloaded = Path(config.get("downloads_dir", "resources")) / lm["files"]["config"]
    if downloaded.is_file():
        try:
            model_type, lm_config = hf_causal_lm_config(downloaded)
        except ValueError as error:
            raise TargetError(str(error)) from None
        constructor, what = ("phi" if model_type == "phi" else "gpt2"), "its config"
    elif lm_name in ARCHITECTURES:
        arch = ARCHITECTURES[lm_name]
        constructor, lm_config, what = arch.constructor, arch.full, f"architecture {lm_name}"
    else:
        raise TargetError(
            f"setup {name}: {downloaded} is not there and {lm_name!r} is no architecture of "
            "the registry: download the config first (snakemake --configfile ... "
            f"{downloaded})"
        )
    with torch.device("meta"):
        model = make_model(constructor, lm_config)
    return Target(model, f"setup {name}: {lm_name} ({what}, no weights)", cfg["components"])


def _clip_setup(name: str, cfg: dict, config: dict) -> Target:
    """The zero-shot CLIP classifier: the downloaded OpenAI checkpoint when it is there,
    else its architecture, ViT-B/16."""
    from coar_replication.edit_clip import ZeroShotCLIP, clip_mlp_neurons

    clip = cfg["clip"]
    downloaded = Path(config.get("downloads_dir", "resources")) / clip["checkpoint"]
    if downloaded.is_file():
        from coar_replication.checkpoints import load_clip

        visual, embed_dim = load_clip(downloaded).visual, None
        what = f"setup {name}: CLIP {downloaded}"
    else:
        import open_clip
        from open_clip.model import CLIP

        architecture = open_clip.get_model_config("ViT-B-16")
        with torch.device("meta"):
            visual = CLIP(**architecture).visual
        embed_dim = architecture["embed_dim"]
        what = f"setup {name}: CLIP ViT-B/16 (no weights)"
    embed_dim = embed_dim or visual.output_dim
    text_features = torch.zeros(len(clip["class_names"]), embed_dim, device="meta")
    model = ZeroShotCLIP(visual, text_features, logit_scale=1.0)
    return Target(model, what, spec=clip_mlp_neurons, spec_name="clip_mlp_neurons")


# -- files ------------------------------------------------------------------------------
def _model_file(path: Path, config_files=None) -> Target:
    """A model file of this project (`coar_replication.checkpoints`), or the original
    code's pickled MiniResNet."""
    from coar_replication.architectures import ARCHITECTURES
    from coar_replication.checkpoints import (
        WEIGHTS_ONLY,
        CheckpointError,
        miniresnet_from_original,
        read_model,
        read_original_pickle,
        restricted_load,
    )

    try:
        payload = restricted_load(path, "model file")
    except CheckpointError as err:
        try:  # the original code's torch.save(model), read without running it
            model = miniresnet_from_original(read_original_pickle(path))
        except CheckpointError:
            raise TargetError(str(err)) from None
        return Target(model, f"{path} (the original MiniResNet)", "conv_filters")
    if isinstance(payload, dict) and "class_names" in payload:  # a zero-shot CLIP setup's
        return _clip_description(path, payload)
    if isinstance(payload, dict) and "component_names" in payload and "weight" in payload:
        setup = (payload.get("meta") or {}).get("setup")
        raise TargetError(
            f"{path} holds attributions (of {len(payload['component_names'])} components), "
            "not a model; pass the model they attribute"
            + (f", e.g. its setup: coar components {setup}" if setup else "")
        )
    if not isinstance(payload, dict) or "state_dict" not in payload:
        if _is_state_dict(payload) or (
            isinstance(payload, dict) and _is_state_dict(payload.get("model"))
        ):
            raise TargetError(
                f"{path} is a plain state dict, which does not say what model it is; pass "
                "its architecture instead (a torchvision model name such as resnet18, an "
                "architecture, a setup, or package.module:factory)"
            )
        raise TargetError(
            f"{path} is not a model file of this project (found {type(payload).__name__}"
            f"{' without state_dict' if isinstance(payload, dict) else ''}); pass "
            f"{TARGET_FORMS}"
        )
    if payload.get("format") == WEIGHTS_ONLY:
        return _edited_setup_model(path, payload, config_files)
    if not {"config", "architecture"} & payload.keys():  # a state dict in a wrapper
        raise TargetError(
            f"{path} holds a state dict without the model's config, which does not say "
            "what model it is; pass its architecture instead (a torchvision model name "
            "such as resnet18, an architecture, a setup, or package.module:factory)"
        )
    try:
        model, meta = read_model(path)
    except (CheckpointError, KeyError, TypeError) as err:  # TypeError: a config that the
        # constructor does not take
        raise TargetError(str(err.args[0] if err.args else err)) from None
    kind = meta.get("components")
    if kind is None and meta.get("architecture") in ARCHITECTURES:
        kind = ARCHITECTURES[meta["architecture"]].kind
    if kind is None:  # the registry's kind for the checkpoint's constructor
        fmt = getattr(model, "coar_checkpoint", {}).get("format")
        kind = next((a.kind for a in ARCHITECTURES.values() if a.constructor == fmt), None)
    return Target(model, str(path), kind)


def _edited_setup_model(path: Path, payload: dict, config_files) -> Target:
    """The weights of a model that the registry cannot build (an edited zero-shot CLIP):
    its setup's model, which its edit record names, if the weights fit it exactly."""
    setup = (payload.get("edit") or {}).get("setup")
    if setup is None:
        raise TargetError(
            f"{path} holds only the weights of a model that coar_replication.architectures "
            "cannot build, and no edit record naming its setup; pass the model instead"
        )
    setups, configs = config_setups(config_files)
    if setup not in setups:
        raise TargetError(
            f"{path} holds the weights of an edit of setup {setup}, which "
            f"{' and '.join(configs) or 'no config'} do not define; pass the config that "
            "does with --configfile"
        )
    target = setup_target(setup, *setups[setup])
    expected = {key: tuple(value.shape) for key, value in target.model.state_dict().items()}
    found = {key: tuple(value.shape) for key, value in payload["state_dict"].items()}
    if found != expected:
        differ = sorted(
            k for k in expected.keys() | found.keys() if expected.get(k) != found.get(k)
        )
        raise TargetError(
            f"{path}: its weights do not fit the model of setup {setup} ({target.what}; "
            f"{len(differ)} tensors differ, e.g. {differ[0]}); pass the config the edit was "
            "made with (--configfile), from the workflow's working directory"
        )
    return Target(
        target.model, f"{path} (an edit of {target.what})", target.kind, target.spec,
        target.spec_name,
    )  # fmt: skip


def _is_state_dict(payload) -> bool:
    return (
        isinstance(payload, dict)
        and bool(payload)
        and all(isinstance(value, torch.Tensor) for value in payload.values())
    )


def _clip_description(path: Path, description: dict) -> Target:
    """A ``clip_zero_shot`` setup's model file: the description of its classifier."""
    from coar_replication.checkpoints import CheckpointError
    from coar_replication.edit_clip import clip_mlp_neurons, zero_shot_model

    try:
        model = zero_shot_model(description)
    except FileNotFoundError as err:
        raise TargetError(
            f"{path} describes a zero-shot CLIP whose {err}; run the command from the "
            "workflow's working directory, or pass the setup's name"
        ) from None
    except (CheckpointError, KeyError) as err:
        raise TargetError(f"{path}: not a usable zero-shot CLIP description ({err})") from None
    return Target(
        model, f"{path} (zero-shot CLIP)", spec=clip_mlp_neurons, spec_name="clip_mlp_neurons"
    )


def _hugging_face(path: Path) -> Target:
    """A Hugging Face model from its config (a config.json, or a directory holding one),
    without weights: the class the config's ``architectures`` names, else AutoModel."""
    config_file = path / "config.json" if path.is_dir() else path
    if not config_file.is_file():
        raise TargetError(
            f"{path} is a directory without config.json; pass a Hugging Face model "
            "directory, its config.json, or a checkpoint file"
        )
    import transformers
    from transformers import AutoConfig, AutoModel

    try:
        config = AutoConfig.from_pretrained(str(config_file))
    except (OSError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TargetError(
            f"{config_file} is not a Hugging Face model config ({first}); pass a config.json "
            "with a model_type, or a checkpoint file"
        ) from None
    names = [n for n in (config.architectures or []) if hasattr(transformers, n)]
    model, weights = without_weights(
        lambda: getattr(transformers, names[0])(config) if names else AutoModel.from_config(config)
    )
    return Target(model, f"{config_file}: {type(model).__name__} ({weights})")


def _factory(target: str) -> Target:
    """``package.module:factory``, the factory called with no arguments."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise TargetError(f"{target!r}: give a factory as package.module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise TargetError(
            f"{target}: cannot import {module_name} ({err}); is it installed, or on PYTHONPATH?"
        ) from None
    factory = module
    for part in attribute.split("."):
        if not hasattr(factory, part):
            raise TargetError(f"{target}: module {module_name} has no {attribute}")
        factory = getattr(factory, part)
    if not callable(factory):
        raise TargetError(f"{target}: {attribute} is not callable; name a function or class")
    try:
        model = factory()
    except Exception as err:  # the user's code: its failure in one line, not a traceback
        raise TargetError(
            f"{target}() raised {type(err).__name__}: {err}; the factory must build the "
            "model with no arguments"
        ) from None
    if not isinstance(model, nn.Module):
        raise TargetError(
            f"{target}() returned a {type(model).__name__}, not a torch.nn.Module; name a "
            "factory that returns the model"
        )
    return Target(model, f"{target}()")
