"""Typographic attacks on CLIP (paper 5.5): the library path on a tiny random-weight CLIP."""

import copy

import numpy as np
import pytest
import torch
from PIL import Image

from coar.ablate import ablate_rows
from coar.attributions import Attributions
from coar.components import zero_components
from coar.masking import MaskedModel
from coar.masks import sample_masks
from coar.outputs import margin
from coar.regression import GramStats, least_squares
from coar_replication.edit_clip import (
    ZeroShotCLIP,
    attack_labels,
    clip_mlp_neurons,
    tiny_clip,
    typographic_attack,
    typographic_splits,
    zero_shot_classifier,
)
from coar_replication.edit_experiments import Split, remove_backdoor
from coar_replication.setup import Setup

CLASSES = ["cat", "dog", "car", "tree"]


@pytest.fixture(scope="module")
def classifier():
    model, tokenizer = tiny_clip(seed=0)
    return zero_shot_classifier(model, tokenizer, CLASSES)


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(n)]


def _preprocess(image):
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)


def test_zero_shot_classifier_gives_one_logit_per_class(classifier):
    assert isinstance(classifier, ZeroShotCLIP)
    logits = classifier(torch.randn(5, 3, 32, 32))
    assert logits.shape == (5, len(CLASSES)) and torch.isfinite(logits).all()


def test_clip_components_masked_equal_zeroed(classifier):
    spec = clip_mlp_neurons(classifier)
    assert len(spec) == 2 * (64 + 32)  # two blocks: c_fc (64 hidden) and c_proj (32) rows
    x = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    masks = torch.from_numpy(sample_masks(0, "t", range(3), len(spec), 0.2))
    masked = MaskedModel(classifier, spec)(x, masks).view(3, 6, -1)
    for k in range(3):
        zeroed = zero_components(copy.deepcopy(classifier), spec, masks[k])
        with torch.no_grad():
            torch.testing.assert_close(masked[k], zeroed(x), rtol=1e-4, atol=1e-5)


def test_typographic_attack_writes_text_and_keeps_size():
    image = _images(1)[0]
    attacked = typographic_attack(image, "dog", seed=0)
    assert attacked.size == image.size
    assert not np.array_equal(np.asarray(attacked), np.asarray(image))
    assert np.array_equal(np.asarray(typographic_attack(image, "dog", seed=0)), attacked)
    wrong = attack_labels(np.array([0, 1, 2, 3] * 5), 4, seed=0)
    assert (wrong != np.array([0, 1, 2, 3] * 5)).all()


def _attributions(setup, n_masks=60):
    masks, outputs = ablate_rows(
        *setup.engine_args(),
        seed=0,
        stream="train",
        rows=range(n_masks),
        alpha=0.1,
        masks_per_batch=8,
        progress=False,
    )
    stats = GramStats.zeros(len(setup.spec), setup.n_examples)
    stats.update(masks, outputs)
    fit = least_squares(stats)
    return Attributions(fit.weight, fit.bias, setup.spec.names(), list(range(setup.n_examples)))


def test_coar_edit_against_typographic_attacks_runs_on_the_stand_in(classifier):
    spec = clip_mlp_neurons(classifier)
    images = {s: _images(12, seed=i) for i, s in enumerate(("train", "val", "test"))}
    with torch.no_grad():
        labels = {
            s: classifier(torch.stack([_preprocess(im) for im in ims])).argmax(1).numpy()
            for s, ims in images.items()
        }
    arrays = typographic_splits(images, labels, CLASSES, _preprocess, seed=0)
    assert arrays["x_train_attacked"].shape == (12, 3, 32, 32)

    def split(name):
        return Split(torch.from_numpy(arrays[f"x_{name}"]), torch.from_numpy(arrays[f"y_{name}"]))

    def setup(name):
        s = split(name)
        return Setup("clip", classifier, spec, s.inputs, s.labels, margin)

    result = remove_backdoor(
        "clip",
        classifier,
        spec,
        _attributions(setup("train_attacked")),
        _attributions(setup("train")),
        split("val"),
        split("val_attacked"),
        split("test"),
        split("test_attacked"),
        target_class=None,
        k_max=8,
        k_step=4,
        max_clean_drop=0.5,
        experiment="typographic",
    )
    assert result.sweep.k.tolist() == [0, 4, 8]
    assert result.sweep.test_clean_accuracy.iloc[0] == 1.0  # labels are the model's predictions
    assert result.edit.experiment == "typographic" and result.edit.k in (0, 4, 8)
    assert -1 <= result.summary["test_paired_correlation_after"] <= 1


# --- the paper config's path: OpenAI's checkpoint file and CIFAR-10-sized images ------------


@pytest.fixture(scope="module")
def openai_clip(tmp_path_factory):
    from tiny_sources import write_openai_clip

    path = tmp_path_factory.mktemp("clip") / "ViT-B-16.pt"
    return path, write_openai_clip(path)


def test_clip_image_transforms_are_open_clips_preprocessing_in_parts(openai_clip):
    import open_clip

    from coar_replication.checkpoints import load_clip
    from coar_replication.edit_clip import clip_image_transforms

    model = load_clip(openai_clip[0])
    geometry, to_uint8, normalization = clip_image_transforms(model)
    assert normalization["mean"] == pytest.approx([255 * m for m in open_clip.OPENAI_DATASET_MEAN])
    preprocess = open_clip.image_transform(48, is_train=False)
    for image in _images(3, seed=5):
        upscaled = geometry(image)
        assert upscaled.size == (48, 48)
        pixels = to_uint8(upscaled)
        assert pixels.dtype == torch.uint8 and pixels.shape == (3, 48, 48)
        mean = torch.tensor(normalization["mean"]).view(3, 1, 1)
        std = torch.tensor(normalization["std"]).view(3, 1, 1)
        torch.testing.assert_close(
            (pixels.float() - mean) / std, preprocess(image), atol=1e-5, rtol=0
        )


def test_typographic_setup_files_load_as_a_zero_shot_clip(openai_clip, tmp_path):
    from open_clip import tokenize

    from coar_replication.edit_clip import load_clip_zero_shot, typographic_setup

    path, reference = openai_clip
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)
    labels = np.array([0, 1, 2, 3, 0, 1, 2])
    splits = {"pool": np.array([0, 1, 2]), "test": np.array([4, 5, 6])}
    description, arrays = typographic_setup(path, images, labels, splits, CLASSES, seed=3)
    assert description["openai_checkpoint"] == str(path) and description["image_size"] == [48, 48]
    assert arrays["x_test"].dtype == np.uint8 and arrays["x_test_attacked"].shape == (3, 3, 48, 48)
    assert arrays["y_test"].tolist() == arrays["y_test_attacked"].tolist() == [0, 1, 2]
    assert arrays["ids_pool"].tolist() == [0, 1, 2] and (arrays["attack_test"] != [0, 1, 2]).all()
    for split in ("pool", "test"):  # every attacked copy differs from its clean image
        diff = arrays[f"x_{split}"] != arrays[f"x_{split}_attacked"]
        assert diff.reshape(3, -1).any(1).all()
    torch.save(description, tmp_path / "model.pt")
    np.savez(tmp_path / "data.npz", **arrays)
    cpu = torch.device("cpu")
    setup = load_clip_zero_shot("clip", tmp_path / "model.pt", tmp_path / "data.npz", cpu)
    assert len(setup.spec) == 256 + 64 and setup.labels.tolist() == [0, 1, 2]
    # The classifier: OpenAI's weights, open_clip's tokenizer at the model's context length.
    with torch.no_grad():
        text = reference.encode_text(tokenize([f"a photo of a {c}." for c in CLASSES], 16))
        text = torch.nn.functional.normalize(text, dim=-1)
        image = torch.nn.functional.normalize(reference.encode_image(setup.inputs), dim=-1)
        expected = reference.logit_scale.exp() * image @ text.T
        torch.testing.assert_close(setup.model(setup.inputs), expected, atol=1e-4, rtol=1e-4)
    attacked = load_clip_zero_shot(
        "clip", tmp_path / "model.pt", tmp_path / "data.npz", cpu, "test_attacked"
    )
    assert not torch.equal(attacked.inputs, setup.inputs)
    with pytest.raises(ValueError, match="do not index the 4 class names"):
        typographic_setup(path, images, labels + 1, splits, CLASSES, seed=3)
    del description["normalization"]
    torch.save(description, tmp_path / "bare.pt")
    with pytest.raises(ValueError, match="uint8 images"):
        load_clip_zero_shot("clip", tmp_path / "bare.pt", tmp_path / "data.npz", cpu)
