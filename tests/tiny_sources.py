"""Tiny stand-ins for the paper's published files, in their real formats (for tests)."""

from __future__ import annotations

import io
import json
import pickle
import sys
import tarfile
import types
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from coar_replication.architectures import build_architecture


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)
    return model


# --- the original code's MiniResNet, as its checkpoints pickle it --------------------------


class OriginalBasicBlock(nn.Module):
    def __init__(self, planes):
        super().__init__()
        self.conv1 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class OriginalMiniResNet(nn.Module):
    """Attribute layout of the original's src.models.mini_resnet.MiniResNet."""

    def __init__(self, num_blocks=2, in_planes=8, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, in_planes, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.layer = nn.Sequential(*[OriginalBasicBlock(in_planes) for _ in range(num_blocks)])
        for idx, block in enumerate(self.layer):
            setattr(self, f"block{idx}", block)
        self.flatten = nn.Flatten()
        self.avg_pool_2d = nn.AvgPool2d(8)
        self.linear = nn.Linear(in_planes * 16, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return self.linear(self.flatten(self.avg_pool_2d(self.layer(out))))


@contextmanager
def original_import_paths():
    """Make the classes importable (and picklable) as src.models.mini_resnet / cifar_resnet."""
    names = ["src", "src.models", "src.models.mini_resnet", "src.models.cifar_resnet"]
    saved = {name: sys.modules.get(name) for name in names}
    modules = {name: types.ModuleType(name) for name in names}
    originals = {}
    for cls, module, name in (
        (OriginalMiniResNet, "src.models.mini_resnet", "MiniResNet"),
        (OriginalBasicBlock, "src.models.cifar_resnet", "BasicBlock"),
    ):
        originals[cls] = (cls.__module__, cls.__qualname__, cls.__name__)
        cls.__module__, cls.__qualname__, cls.__name__ = module, name, name
        setattr(modules[module], name, cls)
    sys.modules.update(modules)
    try:
        yield
    finally:
        for cls, (module, qualname, name) in originals.items():
            cls.__module__, cls.__qualname__, cls.__name__ = module, qualname, name
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def write_original_miniresnet(path: Path, seed: int = 0) -> OriginalMiniResNet:
    """torch.save of a whole original-style MiniResNet module (what the original publishes)."""
    torch.manual_seed(seed)
    model = randomize_batchnorm(OriginalMiniResNet(), seed).eval()
    with original_import_paths():
        torch.save(model, path)
    return model


# --- datasets --------------------------------------------------------------------------------


def write_cifar10_tarball(
    path: Path, n: int = 12, seed: int = 0, n_train: int = 0
) -> tuple[np.ndarray, list]:
    """cifar-10-python.tar.gz with a test_batch of n random images and, if n_train, the five
    training batches (n_train images in all, labels cycling through the 10 classes)."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, n)]
    test_batch = {b"batch_label": b"testing batch 1 of 1", b"labels": labels, b"data": data}
    batches = {"test_batch": test_batch}
    if n_train:
        train = rng.integers(0, 256, (n_train, 3072), dtype=np.uint8)
        for k, rows in enumerate(np.array_split(np.arange(n_train), 5), start=1):
            batches[f"data_batch_{k}"] = {
                b"batch_label": f"training batch {k} of 5".encode(),
                b"labels": [int(i % 10) for i in rows],
                b"data": train[rows],
            }
    with tarfile.open(path, "w:gz") as tar:
        for name, batch in batches.items():
            body = pickle.dumps(batch)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return data, labels


def write_imagenet_val(root: Path, n_classes: int = 4, per_class: int = 3, seed: int = 0) -> None:
    """A class-folder ImageNet val layout of small random JPEGs."""
    rng = np.random.default_rng(seed)
    for c in range(n_classes):
        folder = root / f"n{1440764 + c:08d}"
        folder.mkdir(parents=True)
        for k in range(per_class):
            pixels = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"ILSVRC2012_val_{c * per_class + k:08d}.JPEG")


TRAIN_FILE_NUMBERS = [9, 10, 100, 2, 1234, 37, 5]


def write_imagenet_train(
    root: Path, n_classes: int = 4, per_class: int = 5, seed: int = 1
) -> dict[str, list[str]]:
    """A class-folder ImageNet train layout (nXXXXXXXX/nXXXXXXXX_<number>.JPEG) of small
    random JPEGs, written out of sorted order: class folder -> file names, sorted."""
    if per_class > len(TRAIN_FILE_NUMBERS):
        raise ValueError(f"at most {len(TRAIN_FILE_NUMBERS)} images per class")
    rng = np.random.default_rng(seed)
    names = {}
    for c in range(n_classes):
        wnid = f"n{1440764 + c:08d}"
        folder = root / wnid
        folder.mkdir(parents=True)
        # written in random order; sorted by name, _10 comes before _2 and _9
        numbers = rng.permutation(TRAIN_FILE_NUMBERS[:per_class])
        for number in numbers:
            pixels = rng.integers(0, 256, (36, 44, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{wnid}_{number}.JPEG")
        names[wnid] = sorted(f"{wnid}_{number}.JPEG" for number in numbers)
    return names


def write_openai_clip(path: Path, seed: int = 0) -> nn.Module:
    """A tiny CLIP state dict in OpenAI's key layout (load_clip's fallback from TorchScript):
    one 64-wide block per tower (open_clip infers one head per 64 channels), 8x8 patches of
    48x48 images (CIFAR-10's 32x32 get upscaled, as for the real 224x224), OpenAI's
    49,408-token vocabulary, float16 as OpenAI stores its weights. The image projection
    ignores the mean of the image tower's output on random images (a random tower's output
    hardly depends on the image: every image would get the same class). Returns the
    float32 model that the file loads as."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(seed)
    model = CLIP(
        embed_dim=32,
        vision_cfg=CLIPVisionCfg(layers=1, width=64, patch_size=8, image_size=48),
        text_cfg=CLIPTextCfg(context_length=16, vocab_size=49408, width=64, heads=1, layers=1),
        quick_gelu=True,
    ).eval()
    visual = model.visual
    with torch.no_grad():
        proj = visual.proj.clone()
        visual.proj = nn.Parameter(torch.eye(proj.shape[0]))  # the tower's own output
        noise = torch.randn(32, 3, 48, 48, generator=torch.Generator().manual_seed(seed))
        mean = model.encode_image(noise).mean(0)
        visual.proj = nn.Parameter(proj - mean[:, None] * (mean @ proj)[None] / mean.dot(mean))
        for parameter in model.parameters():
            parameter.copy_(parameter.half().float())
    torch.save({k: v.half() for k, v in model.state_dict().items()}, path)
    return model


def write_torchvision_weights(
    path: Path, architecture: str, seed: int = 0, winners: int | None = None
) -> nn.Module:
    """Random weights of a tiny torchvision model (1,000 classes); with ``winners``, only
    the first ``winners`` classes can be predicted (the others' logits are 100 lower), and
    their head rows are orthogonal to the mean features of random images (else one class
    wins on every image): a tiny ImageNet of that many classes gets right and wrong
    predictions, and a few ablated components can change them."""
    torch.manual_seed(seed)
    model = randomize_batchnorm(build_architecture(architecture, "tiny", 1000), seed).eval()
    if hasattr(model, "heads"):
        # torchvision initialises the ViT's classification head to zero: every margin would
        # be 0 whatever is ablated. Trained weights are not zero; random ones will do.
        nn.init.normal_(model.heads.head.weight, std=0.5)
    if winners is not None:
        head = model.heads.head if hasattr(model, "heads") else model.fc
        features = []
        hook = head.register_forward_hook(lambda module, inputs, output: features.append(inputs[0]))
        with torch.no_grad():
            model(torch.randn(32, 3, 32, 32, generator=torch.Generator().manual_seed(seed)))
            hook.remove()
            mean = features[0].mean(0)
            w = head.weight[:winners]
            w -= (w @ mean)[:, None] * mean[None] / mean.dot(mean)
            head.bias[:winners] = 0.0
            head.bias[winners:] -= 100.0
    torch.save(model.state_dict(), path)
    return model


def write_original_datamodels(path: Path, p: int, n: int, seed: int = 0, nan: bool = True):
    """The original's datamodels.pt: weight (p, N) fp16 in standardised units, bias, lam."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(p, n, generator=generator).half()
    if nan:
        weight[0, 0] = float("nan")
    torch.save(
        {"weight": weight, "bias": torch.randn(n, generator=generator), "lam": torch.zeros(n)}, path
    )
    return weight


def write_original_image_beton(path: Path, n: int, side: tuple, groups: bool, seed: int = 0):
    """A beton with the original's fields (image, label[, group]) of random images."""
    from coar_replication.datasets import write_image_beton

    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, *side, 3), dtype=np.uint8)
    labels = rng.integers(0, 2, n)
    write_image_beton(
        path, lambda i: images[i], labels, groups=rng.integers(0, 2, n) if groups else None
    )


def write_finetuned_resnet50(path: Path, num_classes: int = 2, seed: int = 0) -> nn.Module:
    """A state dict whose names carry the fine-tuned models' base_model. prefix."""
    torch.manual_seed(seed)
    model = randomize_batchnorm(build_architecture("imagenet_resnet50", "tiny", num_classes))
    torch.save({f"base_model.{k}": v for k, v in model.state_dict().items()}, path)
    return model.eval()


# --- Hugging Face causal LMs -------------------------------------------------------------

PHI_ARCH = dict(hidden_size=32, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4)


def write_hf_phi(
    directory: Path, vocab_size: int, n_positions: int, prefix: str = "", seed: int = 0
) -> nn.Module:
    """A tiny random Phi as the hub stores microsoft/phi-2: ``config.json`` with phi-2's keys
    (rotary settings as partial_rotary_factor and rope_theta) and float16 weights in two
    shards, ``model-00001-of-00002.safetensors`` (embeddings, first block) and
    ``model-00002-of-00002.safetensors`` (the rest), each name after ``prefix``. Returns the
    float32 model that the files load as."""
    from safetensors.torch import save_file

    from coar_replication.architectures import phi_model

    config = dict(
        PHI_ARCH,
        vocab_size=vocab_size,
        max_position_embeddings=n_positions,
        num_key_value_heads=PHI_ARCH["num_attention_heads"],
        hidden_act="gelu_new",
        layer_norm_eps=1e-5,
        partial_rotary_factor=0.5,
        rope_theta=10000.0,
        qk_layernorm=False,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=0,
    )
    torch.manual_seed(seed)
    model = phi_model(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.3).copy_(parameter.half().float())
    hub_config = {
        **config,
        "architectures": ["PhiForCausalLM"],
        "model_type": "phi",
        "resid_pdrop": 0.1,
        "embd_pdrop": 0.0,
        "attention_dropout": 0.0,
        "rope_scaling": None,
        "torch_dtype": "float16",
        "use_cache": True,
    }
    (directory / f"{prefix}config.json").write_text(json.dumps(hub_config, indent=2))
    state = {k: v.half().contiguous() for k, v in model.state_dict().items()}
    first = {
        k: v for k, v in state.items() if k.startswith(("model.embed_tokens.", "model.layers.0."))
    }
    rest = {k: v for k, v in state.items() if k not in first}
    save_file(first, directory / f"{prefix}model-00001-of-00002.safetensors")
    save_file(rest, directory / f"{prefix}model-00002-of-00002.safetensors")
    return model
