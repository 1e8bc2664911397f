"""Typographic attacks on CLIP (paper 5.5): zero-shot CLIP as a classifier with components.

- `ZeroShotCLIP` turns an open_clip model and class names into an image classifier
  (logits = scaled cosine similarity to the class prompts' text embeddings), so that
  margins, attributions and Coar-Edit apply unchanged.
- `clip_mlp_neurons` names its components: the hidden neurons (rows of ``c_fc``) and
  output rows (``c_proj``) of every MLP of the image transformer. The attention output
  projections are left out: ``nn.MultiheadAttention`` reads their weights directly
  instead of calling the module, so forward hooks would not see them.
- `typographic_attack` writes a (wrong) class name onto images.
- `typographic_setup` builds a setup's files from images and class names: a small
  description of the zero-shot classifier and paired clean / attacked images, upscaled
  with open_clip's preprocessing for the checkpoint's input size.
- The paper config uses OpenAI's CLIP ViT-B/16 checkpoint, downloaded by the workflow
  (description key ``openai_checkpoint``, loaded by `coar_replication.checkpoints.load_clip`); tests
  and the CPU stand-in use `tiny_clip`, the same open_clip architecture with a few
  random-weight layers, or a tiny state dict in OpenAI's layout.

The edit itself is `coar_replication.edit_experiments.remove_backdoor` with attacked images as
targets and the same images without the text as references (``target_class=None``).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import nn

from coar.components import ComponentSpec
from coar.serialization import load_torch

PROMPT = "a photo of a {}."


class ZeroShotCLIP(nn.Module):
    """Image classifier from a CLIP image tower and fixed class-prompt embeddings."""

    def __init__(self, visual: nn.Module, text_features: torch.Tensor, logit_scale: float):
        super().__init__()
        self.visual = visual
        self.register_buffer("text_features", nn.functional.normalize(text_features, dim=-1))
        self.logit_scale = float(logit_scale)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = nn.functional.normalize(self.visual(images), dim=-1)
        return self.logit_scale * features @ self.text_features.T


@torch.no_grad()
def zero_shot_classifier(
    clip_model: nn.Module, tokenizer, class_names: list[str], prompt: str = PROMPT
) -> ZeroShotCLIP:
    clip_model.eval()
    tokens = tokenizer([prompt.format(name) for name in class_names])
    text_features = clip_model.encode_text(tokens).float()
    return ZeroShotCLIP(
        clip_model.visual, text_features, clip_model.logit_scale.exp().item()
    ).eval()


def clip_mlp_neurons(model: ZeroShotCLIP) -> ComponentSpec:
    """Rows of every image-transformer MLP's c_fc (hidden neurons) and c_proj."""
    groups = [
        (name, module.out_features)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and name.endswith(("mlp.c_fc", "mlp.c_proj"))
    ]
    if not groups:
        raise ValueError("no image-transformer MLP (mlp.c_fc / mlp.c_proj) found in the model")
    return ComponentSpec(groups)


def tiny_clip(seed: int = 0, image_size: int = 32):
    """A random-weight open_clip CLIP (ViT image tower) small enough for CPU tests."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
    from open_clip.tokenizer import SimpleTokenizer

    torch.manual_seed(seed)
    model = CLIP(
        embed_dim=16,
        vision_cfg=CLIPVisionCfg(
            layers=2, width=32, head_width=16, patch_size=8, image_size=image_size, mlp_ratio=2.0
        ),
        text_cfg=CLIPTextCfg(context_length=16, vocab_size=49408, width=32, heads=2, layers=1),
    )
    return model.eval(), SimpleTokenizer(context_length=16)


def load_open_clip(model_name: str = "ViT-B-16", pretrained: str = "openai"):
    """CLIP ViT-B/16 (paper 5.5) with its preprocessing and tokenizer (weights from the cache)."""
    import open_clip

    model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=pretrained)
    return model.eval(), preprocess, open_clip.get_tokenizer(model_name)


def typographic_attack(
    image: Image.Image, text: str, seed: int, font_size: int | None = None
) -> Image.Image:
    """The image with ``text`` written on a white box at a seeded random position."""
    rng = np.random.default_rng(seed)
    image = image.convert("RGB").copy()
    width, height = image.size
    size = font_size or max(8, height // 8)
    font = ImageFont.load_default(size=size)
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    box_w, box_h = right - left + 2, bottom - top + 2
    x = int(rng.integers(0, max(1, width - box_w)))
    y = int(rng.integers(0, max(1, height - box_h)))
    draw.rectangle([x, y, x + box_w, y + box_h], fill="white")
    draw.text((x + 1 - left, y + 1 - top), text, fill="black", font=font)
    return image


def attack_labels(labels: np.ndarray, n_classes: int, seed: int) -> np.ndarray:
    """A wrong class per image (seeded): the text the attack writes."""
    rng = np.random.default_rng(seed)
    offsets = rng.integers(1, n_classes, len(labels))
    return (np.asarray(labels) + offsets) % n_classes


def typographic_splits(
    images: dict[str, list[Image.Image]],
    labels: dict[str, np.ndarray],
    class_names: list[str],
    preprocess,
    seed: int,
) -> dict[str, np.ndarray]:
    """Arrays ``x_<split>`` / ``x_<split>_attacked`` (preprocessed) with true labels.

    The attacked copy of each image carries the name of another class
    (`attack_labels`); ``attack_<split>`` records which.
    """
    arrays = {}
    for split, split_images in images.items():
        wrong = attack_labels(labels[split], len(class_names), seed)
        attacked = [
            typographic_attack(image, class_names[w], seed=seed + i)
            for i, (image, w) in enumerate(zip(split_images, wrong, strict=True))
        ]
        arrays[f"x_{split}"] = torch.stack([preprocess(im) for im in split_images]).numpy()
        arrays[f"x_{split}_attacked"] = torch.stack([preprocess(im) for im in attacked]).numpy()
        arrays[f"y_{split}"] = arrays[f"y_{split}_attacked"] = np.asarray(labels[split])
        arrays[f"attack_{split}"] = wrong
    return arrays


def clip_image_transforms(clip_model: nn.Module):
    """open_clip's evaluation preprocessing for the model's input size, in three parts:

    - ``geometry``: Resize (bicubic, shorter side) + CenterCrop, PIL image -> PIL image;
    - ``to_uint8``: RGB conversion and a uint8 (3, H, W) tensor (the examples file's format);
    - ``normalization``: the mean and std it ends with, on the 0-255 scale (applied when
      the images are loaded, as for the other paper setups).

    ``to_uint8(geometry(image))`` normalised equals open_clip's preprocessing of ``image``.
    """
    import open_clip
    from torchvision import transforms

    visual = clip_model.visual
    preprocess = open_clip.image_transform(
        visual.image_size,
        is_train=False,
        mean=getattr(visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN,
        std=getattr(visual, "image_std", None) or open_clip.OPENAI_DATASET_STD,
    )
    *geometry, convert, _to_tensor, normalize = preprocess.transforms
    if not isinstance(normalize, transforms.Normalize):
        raise TypeError(f"open_clip's preprocessing does not end with Normalize: {preprocess}")
    normalization = {
        "mean": [255.0 * float(m) for m in normalize.mean],
        "std": [255.0 * float(v) for v in normalize.std],
    }
    return (
        transforms.Compose(geometry),
        transforms.Compose([convert, transforms.PILToTensor()]),
        normalization,
    )


def typographic_setup(
    checkpoint,
    images: np.ndarray,
    labels: np.ndarray,
    splits: dict[str, np.ndarray],
    class_names: list[str],
    seed: int,
    prompt: str = PROMPT,
) -> tuple[dict, dict[str, np.ndarray]]:
    """A ``clip_zero_shot`` setup's description and examples from OpenAI's CLIP checkpoint
    and images (N, H, W, 3) uint8 with their labels.

    ``splits`` maps a split name to the positions of its images. Each image is upscaled
    to the model's input size (`clip_image_transforms`), then attacked there
    (`typographic_splits`): ``x_<split>`` and ``x_<split>_attacked`` hold the same
    images, uint8, without and with the name of a wrong class written on them;
    ``ids_<split>`` their positions in ``images``.
    """
    from coar_replication.checkpoints import load_clip

    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) and not 0 <= labels.min() <= labels.max() < len(class_names):
        raise ValueError(
            f"labels {labels.min()}..{labels.max()} do not index the {len(class_names)} "
            f"class names {class_names}"
        )
    clip_model = load_clip(checkpoint)
    geometry, to_uint8, normalization = clip_image_transforms(clip_model)
    upscaled = {
        split: [geometry(Image.fromarray(images[i])) for i in ids] for split, ids in splits.items()
    }
    split_labels = {split: labels[ids] for split, ids in splits.items()}
    arrays = typographic_splits(upscaled, split_labels, class_names, to_uint8, seed)
    for split, ids in splits.items():
        arrays[f"ids_{split}"] = arrays[f"ids_{split}_attacked"] = np.asarray(ids, dtype=np.int64)
    description = {
        "class_names": list(class_names),
        "prompt": prompt,
        "openai_checkpoint": str(checkpoint),
        "normalization": normalization,
        "image_size": [int(v) for v in clip_model.visual.image_size],
    }
    return description, arrays


def zero_shot_model(description: dict) -> ZeroShotCLIP:
    """The zero-shot classifier of a ``clip_zero_shot`` setup's description (see
    `load_clip_zero_shot`), in eval mode, on the CPU."""
    if "tiny" in description:
        clip_model, tokenizer = tiny_clip(**description["tiny"])
    elif "openai_checkpoint" in description:
        from open_clip.tokenizer import SimpleTokenizer

        from coar_replication.checkpoints import load_clip

        clip_model = load_clip(description["openai_checkpoint"])
        tokenizer = SimpleTokenizer(context_length=clip_model.context_length)
    else:
        clip_model, _, tokenizer = load_open_clip(**description["open_clip"])
    return zero_shot_classifier(
        clip_model, tokenizer, list(description["class_names"]), description.get("prompt", PROMPT)
    )


def load_clip_zero_shot(name: str, model_path, data_path, device: torch.device, split="test"):
    """Setup loader (kind ``clip_zero_shot``): a zero-shot CLIP and one split of its images.

    ``model_path`` is a small ``.pt`` description, not weights: ``class_names``, an optional
    ``prompt`` and one of

    - ``openai_checkpoint``: the path of OpenAI's checkpoint file (the paper config's, from
      its download rule, relative to the workflow's working directory;
      `coar_replication.checkpoints.load_clip`), with open_clip's tokenizer at the model's
      context length;
    - ``open_clip`` (``model_name``, ``pretrained``): weights from open_clip's own cache;
    - ``tiny`` (``seed``): the random-weight stand-in.

    ``data_path`` is an ``.npz`` with images ``x_<split>`` and labels ``y_<split>`` (see
    `typographic_splits`): float images are used as they are; uint8 images (see
    `typographic_setup`) are normalised with the description's ``normalization``.
    """
    from coar.outputs import margin
    from coar_replication.setup import Setup

    description = load_torch(model_path, "typographic setup description")
    model = zero_shot_model(description).to(device)
    with np.load(data_path) as data:
        if f"x_{split}" not in data.files:
            splits = sorted(k[2:] for k in data.files if k.startswith("x_"))
            raise KeyError(f"{data_path} has no split {split!r} (splits: {splits})")
        images = data[f"x_{split}"]
        labels = torch.from_numpy(data[f"y_{split}"]).to(device)
    if images.dtype == np.uint8:
        if "normalization" not in description:
            raise ValueError(
                f"{data_path}: split {split!r} holds uint8 images, but {model_path} has no "
                "normalization to apply to them"
            )
        from coar_replication.real_setups import normalized_images

        inputs = normalized_images(images, description["normalization"], device)
    else:
        inputs = torch.from_numpy(images).to(device)
    return Setup(name, model, clip_mlp_neurons(model), inputs, labels, margin)
