"""Typographic attacks on CLIP (paper 5.5): zero-shot CLIP as a classifier with components.

- `ZeroShotCLIP` turns an open_clip model and class names into an image classifier
  (logits = scaled cosine similarity to the class prompts' text embeddings), so that
  margins, attributions and Coar-Edit apply unchanged.
- `clip_mlp_neurons` names its components: the hidden neurons (rows of ``c_fc``) and
  output rows (``c_proj``) of every MLP of the image transformer. The attention output
  projections are left out: ``nn.MultiheadAttention`` reads their weights directly
  instead of calling the module, so forward hooks would not see them.
- `typographic_attack` writes a (wrong) class name onto images.
- The paper config uses CLIP ViT-B/16 (`load_open_clip`); tests and the CPU stand-in use
  `tiny_clip`, the same open_clip architecture with a few random-weight layers.

The edit itself is `coar.edit_experiments.remove_backdoor` with attacked images as
targets and the same images without the text as references (``target_class=None``).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import nn

from coar.components import ComponentSpec

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


def load_clip_zero_shot(name: str, model_path, data_path, device: torch.device, split="test"):
    """Setup loader (kind ``clip_zero_shot``): a zero-shot CLIP and one split of its images.

    ``model_path`` is a small ``.pt`` description, not weights: ``class_names``, an optional
    ``prompt`` and either ``open_clip`` (``model_name``, ``pretrained``: weights come from
    open_clip's cache, filled by the download rules) or ``tiny`` (``seed``: the random-weight
    stand-in). ``data_path`` is an ``.npz`` with preprocessed images ``x_<split>`` and labels
    ``y_<split>`` (see `typographic_splits`).
    """
    from coar.outputs import margin
    from coar.setups import Setup

    description = torch.load(model_path, map_location="cpu", weights_only=True)
    if "tiny" in description:
        clip_model, tokenizer = tiny_clip(**description["tiny"])
    else:
        clip_model, _, tokenizer = load_open_clip(**description["open_clip"])
    model = zero_shot_classifier(
        clip_model, tokenizer, list(description["class_names"]), description.get("prompt", PROMPT)
    ).to(device)
    with np.load(data_path) as data:
        if f"x_{split}" not in data.files:
            splits = sorted(k[2:] for k in data.files if k.startswith("x_"))
            raise KeyError(f"{data_path} has no split {split!r} (splits: {splits})")
        inputs = torch.from_numpy(data[f"x_{split}"]).to(device)
        labels = torch.from_numpy(data[f"y_{split}"]).to(device)
    return Setup(name, model, clip_mlp_neurons(model), inputs, labels, margin)
