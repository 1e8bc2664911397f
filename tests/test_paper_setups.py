"""The paper config's rules, end to end on CPU, from a loopback server serving tiny files.

The "smoke" overlay keeps every rule and code path of config/config.yaml (downloads with
pinned digests, ImageNet check and preparation, the original's pickled MiniResNet,
torchvision weights, examples files, ablation, fit, evaluation, figures) and shrinks the
sizes: tiny architectures with random weights, a few masks, a few examples. OpenAI's CLIP
checkpoint is stood in for by a tiny state dict in its layout (`load_clip` reads both).
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from loopback import FileServer
from test_workflow import planned_jobs, write_yaml
from test_workflow import snakemake as run_snakemake
from tiny_sources import (
    write_cifar10_tarball,
    write_finetuned_resnet50,
    write_imagenet_train,
    write_imagenet_val,
    write_openai_clip,
    write_original_datamodels,
    write_original_image_beton,
    write_original_miniresnet,
    write_torchvision_weights,
)

from coar.attributions import Attributions
from coar_replication.datasets import resize_center_crop

PAPER = Path(__file__).resolve().parents[1] / "config" / "config.yaml"
SMOKE_SETUPS = ["cifar_miniresnet", "imagenet_resnet50", "imagenet_vit"]
# The editing experiments' models: their data, model and published-attribution rules.
EDIT_TARGETS = [
    "results/data/waterbirds_resnet50.npz",
    "results/attributions/waterbirds_resnet50/published_train.pt",
    "results/data/backdoored_cifar.npz",
    "results/attributions/backdoored_cifar/published_triggered.pt",
]
# Fig. 3 (forgetting a class, setup A): CIFAR-10 train, example sets, edits, figure; Fig. 2
# (fixing errors, setup B): ImageNet train; Fig. 8 (typographic attacks on CLIP).
EDIT_FIGURES = ["results/figures/fig3.pdf", "results/figures/fig2.pdf", "results/figures/fig8.pdf"]
TARGETS = (
    ["results/figures/fig1.pdf", *EDIT_FIGURES]
    + [
        f"results/{kind}"
        for setup in SMOKE_SETUPS
        for kind in (f"eval/{setup}/published_comparison.csv", f"figures/published_{setup}.pdf")
    ]
    + EDIT_TARGETS
)
ALPHA_TRAIN = {
    name: cfg["ablation"]["alpha_train"]
    for name, cfg in yaml.safe_load(PAPER.read_text())["setups"].items()
}


def snakemake(workdir, *configs, options=(), targets=(), timeout=600):
    """Snakemake on the paper config (+ overlays); targets follow "--", since --configfile
    takes every plain argument after it."""
    return run_snakemake(workdir, *configs, args=[*options, "--", *targets], timeout=timeout)


def make_files(directory):
    """The tiny stand-ins, keyed by their download name in the paper config."""
    write_original_miniresnet(directory / "model_cifar_miniresnet.pt")
    # Test labels 6 2 1 2 0 9 | 2 9 2 5 7 4: class 2 in both halves (fig3's val and test).
    write_cifar10_tarball(directory / "cifar-10-python.tar.gz", n=12, n_train=40)
    # Classes 0-3 only can win (the tiny ImageNet's): setup B makes errors Fig. 2 can fix.
    write_torchvision_weights(directory / "resnet50-0676ba61.pth", "imagenet_resnet50", winners=4)
    # The authors' datamodels.pt (standardised units, fp16), one NaN as in their B file.
    write_original_datamodels(directory / "attr_cifar.pt", p=5 * 8, n=12, nan=False)
    write_original_datamodels(directory / "attr_imagenet_resnet50.pt", p=424, n=12, nan=True)
    write_torchvision_weights(directory / "vit_b_16-c867db91.pth", "imagenet_vit")
    # Setup C keeps every 10th of the 12 images: examples 0 and 10.
    write_original_datamodels(directory / "attr_imagenet_vit.pt", p=224, n=2, nan=False)
    write_finetuned_resnet50(directory / "model_waterbirds_resnet50.pt")
    for split, n in (("train", 6), ("val", 4), ("test", 4)):
        write_original_image_beton(directory / f"waterbirds_{split}.beton", n, (30, 40), True)
    write_original_datamodels(directory / "attr_waterbirds_train.pt", p=424, n=6, nan=False)
    write_original_miniresnet(directory / "model_backdoored_cifar.pt", seed=1)
    write_original_image_beton(directory / "backdoored_cifar_test.beton", 12, (32, 32), False)
    write_original_datamodels(directory / "attr_backdoored_cifar_with.pt", p=40, n=12)
    write_openai_clip(directory / "clip_vit_b_16.pt")
    return {path.name: path.read_bytes() for path in directory.iterdir()}


def digests(body: bytes) -> dict:
    sha = hashlib.sha256(body).hexdigest()
    return {"sha256": sha, "md5": hashlib.md5(body).hexdigest(), "sha256_prefix": sha[:8]}


def smoke_overlay(url: str, files: dict, imagenet_root) -> dict:
    # One shard and one alpha_test (alpha_train, the scatter's) run the same code as many.
    shrink = {
        name: {
            "source": {"model": {"size": "tiny"}},
            "ablation": {"n_masks": 40, "n_shards": 1, "masks_per_batch": 4},
            "evaluation": {"alpha_test": [ALPHA_TRAIN[name]], "n_masks": 8, "n_bootstrap": 100},
        }
        for name in SMOKE_SETUPS
    }
    # Fig. 3 on 12 test images: k chosen on the first 6, reported on the last 6; targets
    # and references: 2 training images of each class, 60 masks of the 40 filters.
    shrink["cifar_miniresnet"]["source"]["splits"] = {
        "edit_val": {"stop": 6},
        "edit_test": {"start": 6},
    }
    shrink["cifar_miniresnet"]["examples"] = {
        "train_per_class": {"n": 2, "n_masks": 60, "n_shards": 1}
    }
    shrink["cifar_miniresnet"]["edits"] = {"forget": {"classes": [2], "k_max": 6, "k_step": 2}}
    tiny_crop = {"image_size": 32}  # the original's centre-crop decoder, to 32 instead of 224
    shrink["waterbirds_resnet50"] = {
        "source": {
            "model": {"size": "tiny"},
            "splits": {split: tiny_crop for split in ("train", "val", "test")},
        }
    }
    # Fig. 7's parts of the 12 paired images: pool [0, 4), validation [4, 8), test [8, 12).
    parts = {"pool": {"stop": 4}, "edit_val": {"start": 4, "stop": 8}, "edit_test": {"start": 8}}
    shrink["backdoored_cifar"] = {
        "source": {
            "model": {"size": "tiny"},
            "splits": {
                **parts,
                **{f"{name}_triggered": positions for name, positions in parts.items()},
            },
        }
    }
    # Fig. 2 on setup B: 2 of the errors on the odd val positions (edit_test), 4 training
    # images as references; edits of at most 20 filters, validation accuracy down <= 0.2.
    shrink["imagenet_resnet50"]["examples"] = {
        "test_errors": {"n": 2, "n_masks": 40, "n_shards": 1},
        "train_reference": {"n": 4, "n_masks": 40, "n_shards": 1},
    }
    shrink["imagenet_resnet50"]["edits"] = {"errors": {"k_max": 20, "max_val_drop": 0.2}}
    # Fig. 8 on the 12 CIFAR-10 test images: pool [0, 4), validation [4, 8), test [8, 12).
    shrink["clip_typographic"] = {
        "clip": {
            "splits": {
                "pool": {"stop": 4},
                "val": {"start": 4, "stop": 8},
                "test": {"start": 8, "stop": 12},
            }
        },
        "ablation": {"masks_per_batch": 4},
        "examples": {
            name: {"n": 4, "n_masks": 40, "n_shards": 1} for name in ("attacked", "clean")
        },
        "edits": {"typographic": {"k_max": 6, "k_step": 2, "max_clean_drop": 1.0}},
    }
    return {
        "downloads": {
            name: {"url": f"{url}/{name}", **digests(body)} for name, body in files.items()
        },
        "imagenet_val": {
            "path": str(imagenet_root),
            "n_classes": 4,
            "images_per_class": 3,
            "resize": 36,
            "crop": 32,
        },
        "imagenet_train": {
            "path": str(imagenet_root.parent / "train"),
            "n_classes": 4,
            "per_class": 3,
            "resize": 36,
            "crop": 32,
        },
        "setups": shrink,
        "figures": {
            "fig1": {"title": "Evaluating Coar", "setups": SMOKE_SETUPS},
            "fig3": {
                "title": "Selectively forgetting a class",
                "setups": ["cifar_miniresnet"],
                "experiment": "forget",
            },
        },
    }


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("paper")
    served = workdir / "served"
    served.mkdir()
    files = make_files(served)
    write_imagenet_val(workdir / "imagenet" / "val", n_classes=4, per_class=3)
    write_imagenet_train(workdir / "imagenet" / "train", n_classes=4, per_class=5)
    server = FileServer()
    server.files = {f"/{name}": body for name, body in files.items()}
    with server.running():
        overlay = write_yaml(
            workdir / "smoke.yaml", smoke_overlay(server.url, files, workdir / "imagenet" / "val")
        )
        # ~45 jobs of a few CPU seconds each; generous timeout for shared CI machines.
        result = snakemake(workdir, PAPER, overlay, targets=TARGETS, timeout=1800)
    assert result.returncode == 0, result.stderr[-6000:]
    return workdir, overlay, files


@pytest.mark.workflow
def test_paper_rules_run_on_tiny_architectures(smoke_run):
    workdir, _, files = smoke_run
    results = workdir / "results"
    assert (results / "figures" / "fig1.pdf").read_bytes()[:4] == b"%PDF"
    for name, body in files.items():
        assert (workdir / "resources" / name).read_bytes() == body
        record = yaml.safe_load((workdir / "resources" / f"{name}.json").read_text())
        assert record["sha256"] == hashlib.sha256(body).hexdigest()
    a = Attributions.load(results / "attributions" / "cifar_miniresnet" / "coar.pt")
    assert a.weight.shape == (5 * 8, 12) and a.component_names[8] == "layers.0.conv1[0]"
    b = Attributions.load(results / "attributions" / "imagenet_resnet50" / "coar.pt")
    assert b.weight.shape == (424, 12)
    assert not any("downsample" in name for name in b.component_names)
    c = Attributions.load(results / "attributions" / "imagenet_vit" / "coar.pt")
    assert c.weight.shape == (2 * (3 * 16 + 16 + 32 + 16), 2)
    assert c.component_names[0] == "encoder.layers.encoder_layer_0.self_attention.in_proj[0]"
    check = yaml.safe_load((results / "data" / "imagenet_val.check.json").read_text())
    assert check["images"] == 12


@pytest.mark.workflow
def test_published_attributions_are_converted_and_compared(smoke_run):
    workdir, _, _ = smoke_run
    results = workdir / "results"
    published = Attributions.load(
        results / "attributions" / "imagenet_resnet50" / "published_test.pt"
    )
    assert published.meta["n_nan"] == 1 and published.meta["nan_examples"] == [0]
    assert (
        "1 NaN entries"
        in (
            results / "logs" / "convert_published_attributions" / "imagenet_resnet50_test.log"
        ).read_text()
    )
    for setup, undefined, n in (
        ("cifar_miniresnet", 0, 12),
        ("imagenet_resnet50", 1, 12),
        ("imagenet_vit", 0, 2),
    ):
        summary = pd.read_csv(results / "eval" / setup / "published_comparison.csv")
        assert set(summary.method) == {"coar", "published", "agreement"}
        rows = summary.set_index("method")
        assert rows.loc["agreement", "n_undefined"] == undefined
        assert rows.loc["published", "n_undefined"] >= undefined
        per_example = pd.read_csv(results / "eval" / setup / "published_per_example.csv")
        assert len(per_example) == n and "agreement" in per_example.columns
        assert (results / "figures" / f"published_{setup}.pdf").read_bytes()[:4] == b"%PDF"


@pytest.mark.workflow
def test_edit_models_data_and_published_attributions(smoke_run):
    workdir, _, _ = smoke_run
    results = workdir / "results"
    with np.load(results / "data" / "waterbirds_resnet50.npz") as data:
        assert {k: data[k].shape for k in data.files if k.startswith("x_")} == {
            f"x_{split}": (n, 3, 32, 32) for split, n in (("train", 6), ("val", 4), ("test", 4))
        }
        assert set(np.unique(data["g_train"])) <= {0, 1}
    train = Attributions.load(
        results / "attributions" / "waterbirds_resnet50" / "published_train.pt"
    )
    assert train.weight.shape == (424, 6) and train.meta["split"] == "train"
    with np.load(results / "data" / "backdoored_cifar.npz") as data:
        assert data["x_test"].shape == data["x_triggered"].shape == (12, 3, 32, 32)
        for part, ids in (("pool", [0, 1, 2, 3]), ("edit_val", [4, 5, 6, 7])):
            assert data[f"ids_{part}"].tolist() == data[f"ids_{part}_triggered"].tolist() == ids
        assert (data["x_edit_test_triggered"] == data["x_triggered"][8:]).all()
    triggered = results / "attributions" / "backdoored_cifar" / "published_triggered.pt"
    assert Attributions.load(triggered).weight.shape == (40, 12)


@pytest.mark.workflow
def test_forgetting_a_class_on_setup_a(smoke_run):
    """Fig. 3 on the paper's rules: train examples attributed, k chosen on the validation
    half of the test set and reported on the other half, the edit saved and drawn."""
    workdir, _, _ = smoke_run
    results = workdir / "results"
    with np.load(results / "data" / "cifar_miniresnet.npz") as data:
        assert data["x_train"].shape == (40, 3, 32, 32) and data["x_test"].shape[0] == 12
        assert data["ids_edit_val"].tolist() == list(range(6))
        assert data["ids_edit_test"].tolist() == list(range(6, 12))
        assert (data["y_edit_test"] == data["y_test"][6:]).all()
    examples = Attributions.load(
        results / "attributions" / "cifar_miniresnet" / "train_per_class" / "coar.pt"
    )
    assert examples.weight.shape == (40, 20) and examples.meta["examples"]["split"] == "train"
    edit = results / "edits" / "cifar_miniresnet" / "forget" / "class2"
    summary = yaml.safe_load((edit / "summary.json").read_text())
    sweep = pd.read_csv(edit / "sweep.csv")
    assert sweep.k.tolist() == [0, 2, 4, 6] and summary["k"] in sweep.k.tolist()
    chosen = sweep.set_index("k").loc[summary["k"]]
    assert summary["test_target_accuracy_after"] == pytest.approx(chosen.test_target_accuracy)
    assert summary["val_accuracy_before"] == pytest.approx(sweep.val_accuracy[0])
    assert (results / "figures" / "fig3.pdf").read_bytes()[:4] == b"%PDF"
    table = pd.read_csv(results / "figures" / "fig3.csv")
    assert len(table) == len(sweep) and set(table.target_class) == {2}


@pytest.mark.workflow
def test_fixing_individual_errors_on_setup_b(smoke_run):
    """Fig. 2 on the paper's rules: the first training images of each class, the val
    halves, 2 of the model's errors on the test half fixed one by one, the figure."""
    import torch

    from coar.edit import apply_edit
    from coar_replication.real_setups import load_image_setup

    workdir, _, _ = smoke_run
    results = workdir / "results"
    check = yaml.safe_load((results / "data" / "imagenet_train.check.json").read_text())
    assert check["classes"] == 4 and check["images"] == 12
    train_root = workdir / "imagenet" / "train"
    with np.load(results / "data" / "imagenet_resnet50.npz") as data:
        # the first 3 file names (sorted) of each class, as the val images: Resize + crop
        first = [f for d in sorted(train_root.iterdir()) for f in sorted(d.iterdir())[:3]]
        expected = np.stack([resize_center_crop(f, 36, 32).transpose(2, 0, 1) for f in first])
        assert (data["x_train"] == expected).all()
        assert data["y_train"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
        assert data["ids_edit_val"].tolist() == [0, 2, 4, 6, 8, 10]
        assert data["ids_edit_test"].tolist() == [1, 3, 5, 7, 9, 11]
        assert (data["x_edit_test"] == data["x_test"][1::2]).all()
        y_edit_test = data["y_edit_test"]
    attributions = results / "attributions" / "imagenet_resnet50"
    errors = Attributions.load(attributions / "test_errors" / "coar.pt")
    assert errors.meta["examples"]["split"] == "edit_test" and errors.weight.shape == (424, 2)
    # selected once (select_examples), as the shards and the fit used them
    selection = json.loads(
        (results / "examples" / "imagenet_resnet50" / "test_errors.json").read_text()
    )
    assert selection["ids"] == list(errors.example_ids) and selection["n_split"] == 6
    reference = Attributions.load(attributions / "train_reference" / "coar.pt")
    assert reference.meta["examples"]["split"] == "train" and reference.weight.shape == (424, 4)
    out = results / "edits" / "imagenet_resnet50" / "errors"
    table = pd.read_csv(out / "per_example.csv")
    summary = yaml.safe_load((out / "summary.json").read_text())
    assert table.example.tolist() == list(errors.example_ids)
    assert (table.label == y_edit_test[table.example]).all()
    assert (table.prediction_before != table.label).all()  # errors of the unedited model
    assert summary["n_errors"] == 2 and summary["n_components"] == 424
    fixed = table[table.fixed]
    assert summary["n_fixed"] == len(fixed) >= 1
    assert fixed.k.between(1, 20).all() and (fixed.val_change >= -0.2).all()
    # Each saved edit, applied to the model's weights, fixes its example.
    cpu = torch.device("cpu")
    setup = load_image_setup(
        "b",
        results / "models" / "imagenet_resnet50.pt",
        results / "data" / "imagenet_resnet50.npz",
        cpu,
        split="edit_test",
    )
    records = torch.load(out / "edits.pt", weights_only=True)["edits"]
    assert [r["example"] for r in records] == fixed.example.tolist()
    weights = {k: v.clone() for k, v in setup.model.state_dict().items()}
    for record, row in zip(records, fixed.itertuples(), strict=True):
        assert record["k"] == row.k
        setup.model.load_state_dict(weights)
        edited = apply_edit(setup.model, setup.spec, record["ablated"])
        with torch.no_grad():
            prediction = edited(setup.inputs[row.example : row.example + 1]).argmax(1).item()
        assert prediction == row.label != row.prediction_before
    assert (results / "figures" / "fig2.pdf").read_bytes()[:4] == b"%PDF"
    assert len(pd.read_csv(results / "figures" / "fig2.csv")) == len(table)


@pytest.mark.workflow
def test_typographic_attacks_on_clip(smoke_run, monkeypatch):
    """Fig. 8 on the paper's rules: the OpenAI-layout checkpoint (downloaded), CIFAR-10
    test images upscaled to its input and attacked, paired example sets, the edit."""
    import open_clip
    import torch
    from PIL import Image

    from coar_replication.datasets import read_cifar10
    from coar_replication.setups import load_setup

    workdir, _, _ = smoke_run
    monkeypatch.chdir(workdir)  # the description names the checkpoint as the workflow does
    results = workdir / "results"
    model_file = results / "models" / "clip_typographic.pt"
    description = torch.load(model_file, weights_only=True)
    assert description["openai_checkpoint"] == "resources/clip_vit_b_16.pt"
    assert description["class_names"][:2] == ["airplane", "automobile"]
    assert description["image_size"] == [48, 48]
    images, labels = read_cifar10(workdir / "resources" / "cifar-10-python.tar.gz", "test")
    preprocess = open_clip.image_transform(48, is_train=False)
    mean = torch.tensor(description["normalization"]["mean"]).view(3, 1, 1)
    std = torch.tensor(description["normalization"]["std"]).view(3, 1, 1)
    with np.load(results / "data" / "clip_typographic.npz") as data:
        for split, ids in (("pool", range(4)), ("val", range(4, 8)), ("test", range(8, 12))):
            assert data[f"ids_{split}"].tolist() == data[f"ids_{split}_attacked"].tolist()
            assert data[f"ids_{split}"].tolist() == list(ids)
            assert data[f"y_{split}"].tolist() == data[f"y_{split}_attacked"].tolist()
            assert data[f"y_{split}"].tolist() == labels[list(ids)].tolist()
            assert (data[f"attack_{split}"] != data[f"y_{split}"]).all()
            attacked = data[f"x_{split}"] != data[f"x_{split}_attacked"]
            assert attacked.reshape(4, -1).any(1).all()
            # the clean copies: open_clip's preprocessing of the 32x32 images, stored uint8
            x = (torch.from_numpy(data[f"x_{split}"]).float() - mean) / std
            for row, i in enumerate(ids):
                expected = preprocess(Image.fromarray(images[i]))
                torch.testing.assert_close(x[row], expected, atol=1e-5, rtol=0)
    attributions = results / "attributions" / "clip_typographic"
    attacked = Attributions.load(attributions / "attacked" / "coar.pt")
    clean = Attributions.load(attributions / "clean" / "coar.pt")
    assert attacked.weight.shape == clean.weight.shape == (256 + 64, 4)
    assert attacked.component_names[0] == "visual.transformer.resblocks.0.mlp.c_fc[0]"
    assert list(attacked.example_ids) == list(clean.example_ids) == [0, 1, 2, 3]
    out = results / "edits" / "clip_typographic" / "typographic"
    sweep = pd.read_csv(out / "sweep.csv")
    summary = yaml.safe_load((out / "summary.json").read_text())
    assert sweep.k.tolist() == [0, 2, 4, 6] and summary["k"] in sweep.k.tolist()
    assert summary["n_components"] == 320
    # the unedited zero-shot classifier's accuracy, recomputed from the setup's files
    logits = {}
    for split, key in (("test", "test_clean"), ("test_attacked", "test_triggered")):
        setup = load_setup(
            "clip_typographic",
            "clip_zero_shot",
            model_file,
            results / "data" / "clip_typographic.npz",
            torch.device("cpu"),
            examples={"split": split, "select": "all"},
        )
        with torch.no_grad():
            logits[split] = setup.model(setup.inputs)
        accuracy = (logits[split].argmax(1) == setup.labels).float().mean().item()
        assert summary[f"{key}_accuracy_before"] == pytest.approx(accuracy)
        assert sweep[f"{key}_accuracy"][0] == pytest.approx(accuracy)
    # ... and its logits, from the downloaded file by open_clip alone: prompts, raw images
    clip = open_clip.load_openai_model("resources/clip_vit_b_16.pt", "fp32", "cpu")
    prompts = [f"a photo of a {name}." for name in description["class_names"]]
    with torch.no_grad():
        text = torch.nn.functional.normalize(clip.encode_text(open_clip.tokenize(prompts, 16)))
        x = torch.stack([preprocess(Image.fromarray(images[i])) for i in range(8, 12)])
        image = torch.nn.functional.normalize(clip.encode_image(x))
        expected = clip.logit_scale.exp() * image @ text.T
    torch.testing.assert_close(logits["test"], expected, atol=1e-4, rtol=1e-4)
    assert (out / "edited_model.pt").is_file()
    assert (results / "figures" / "fig8.pdf").read_bytes()[:4] == b"%PDF"
    assert len(pd.read_csv(results / "figures" / "fig8.csv")) == len(sweep)


@pytest.mark.workflow
def test_smoke_rerun_does_nothing(smoke_run):
    workdir, overlay, _ = smoke_run
    result = snakemake(
        workdir, PAPER, overlay, options=["--dry-run"], targets=["results/figures/fig1.pdf"]
    )
    assert result.returncode == 0, result.stderr
    assert "Nothing to be done" in result.stdout + result.stderr


def test_paper_config_plans_fig3_from_download_to_figure(tmp_path):
    result = snakemake(tmp_path, PAPER, options=["--dry-run"], targets=EDIT_FIGURES[:1])
    assert result.returncode == 0, result.stderr[-3000:]
    assert planned_jobs(result) == {
        "download_cifar_10_python_tar_gz": 1,
        "download_model_cifar_miniresnet_pt": 1,
        "import_model": 1,
        "prepare_cifar10_test": 1,
        "prepare_cifar10_train": 1,
        "prepare_examples": 1,
        "ablate_examples": 10,  # 100 training images per class, 50,000 masks in 10 shards
        "gather_examples": 1,
        "fit_examples": 1,
        "edit_forget": 10,  # one edit per class
        "figure_forget": 1,
    }


@pytest.mark.parametrize(
    "figure, jobs",
    [
        (  # Waterbirds (train/val/test betons) and CelebA (val split into pool and val)
            "fig4",
            {
                **{
                    f"download_{name}": 1
                    for name in (
                        "model_waterbirds_resnet50_pt",
                        "waterbirds_train_beton",
                        "waterbirds_val_beton",
                        "waterbirds_test_beton",
                        "model_celeba_resnet50_pt",
                        "celeba_val_beton",
                        "celeba_test_beton",
                    )
                },
                "import_model": 2,
                "prepare_examples": 2,
                "ablate_examples": 20,  # 10 per group, 50,000 masks in 10 shards, per model
                "gather_examples": 2,
                "fit_examples": 2,
                "edit_subpopulation": 2,
                "figure_subpopulation": 1,
            },
        ),
        (  # setup B: ImageNet val (errors, validation) and train (references, accuracy change)
            "fig2",
            {
                "download_resnet50_0676ba61_pth": 1,
                "check_imagenet": 2,
                "prepare_imagenet": 2,
                "import_model": 1,
                "prepare_examples": 1,
                "select_examples": 1,  # the errors: selected once, for shards and fit
                "ablate_examples": 20,  # errors and references, 100,000 masks in 10 shards
                "gather_examples": 2,
                "fit_examples": 2,
                "edit_errors": 1,
                "figure_errors": 1,
            },
        ),
        (  # zero-shot CLIP: OpenAI's checkpoint, CIFAR-10 test images clean and attacked
            "fig8",
            {
                "download_clip_vit_b_16_pt": 1,
                "download_cifar_10_python_tar_gz": 1,
                "typographic_setup": 1,
                "ablate_examples": 20,  # two paired example sets, 10 shards each
                "gather_examples": 2,
                "fit_examples": 2,
                "edit_typographic": 1,
                "figure_typographic": 1,
            },
        ),
        (  # the backdoored MiniResNet on clean and triggered CIFAR-10 test images
            "fig7",
            {
                "download_model_backdoored_cifar_pt": 1,
                "download_backdoored_cifar_test_beton": 1,
                "download_cifar_10_python_tar_gz": 1,
                "prepare_cifar10_test": 1,
                "import_model": 1,
                "prepare_examples": 1,
                "ablate_examples": 20,  # two paired example sets, 10 shards each
                "gather_examples": 2,
                "fit_examples": 2,
                "edit_backdoor": 1,
                "figure_backdoor": 1,
            },
        ),
    ],
)
def test_paper_config_plans_edit_figures_from_download_to_figure(tmp_path, figure, jobs):
    target = f"results/figures/{figure}.pdf"
    result = snakemake(tmp_path, PAPER, options=["--dry-run"], targets=[target])
    assert result.returncode == 0, result.stderr[-3000:]
    assert planned_jobs(result) == jobs


def test_paper_config_plans_every_job_from_download_to_figure(tmp_path):
    result = snakemake(tmp_path, PAPER, options=["--dry-run"])
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = planned_jobs(result)
    for rule in (
        "download_model_cifar_miniresnet_pt",
        "download_cifar_10_python_tar_gz",
        "download_resnet50_0676ba61_pth",
        "download_vit_b_16_c867db91_pth",
        "download_clip_vit_b_16_pt",
        "prepare_cifar10_test",
        "typographic_setup",
        "fig1",
    ):
        assert jobs.get(rule) == 1, (rule, jobs)
    # ImageNet val (B, C) and train (Fig. 2)
    assert jobs["check_imagenet"] == jobs["prepare_imagenet"] == 2
    # A, B, C and the editing figures' models (Waterbirds, CelebA, backdoored CIFAR)
    assert jobs["import_model"] == jobs["prepare_examples"] == 6
    # + GPT-2's two setups (figI1): gpt2_rows (100 shards) and gpt2_heads (10 shards),
    # and Phi-2's (figPhi2): phi2_heads (10 shards) and phi2_mlp (100 shards)
    assert jobs["fit"] == 3 + 2 + 2
    assert jobs["ablate"] == 50 + 200 + 100 + 100 + 10 + 10 + 100
    assert jobs["evaluation_outputs"] == 9 + 6 + 6
    assert jobs["lm_import"] == jobs["lm_tinystories"] == 2
    assert jobs["convert_published_attributions"] == jobs["compare_published_attributions"] == 3
    # Fig. 3 (setup A): CIFAR-10 train, the example set's 10 shards, one edit per class;
    # Fig. 4: two models, one example set each; Figs. 7, 2 and 8: two example sets each.
    assert jobs["prepare_cifar10_train"] == jobs["figure_forget"] == 1
    assert jobs["edit_forget"] == 10
    assert jobs["ablate_examples"] == 10 + 2 * 10 + 2 * 10 + 2 * 10 + 2 * 10
    assert jobs["fit_examples"] == 1 + 2 + 2 + 2 + 2
    assert jobs["edit_subpopulation"] == 2
    assert jobs["edit_backdoor"] == jobs["figure_subpopulation"] == jobs["figure_backdoor"] == 1
    assert jobs["edit_errors"] == jobs["figure_errors"] == jobs["select_examples"] == 1
    assert jobs["edit_typographic"] == jobs["figure_typographic"] == 1


def test_missing_imagenet_val_is_named_precisely(tmp_path):
    overlay = write_yaml(
        tmp_path / "o.yaml",
        {
            "imagenet_val": {
                "path": str(tmp_path / "val"),
                "n_classes": 2,
                "images_per_class": 3,
                "resize": 36,
                "crop": 32,
            }
        },
    )
    write_imagenet_val(tmp_path / "val", n_classes=1, per_class=2)
    target = "results/data/imagenet_val.check.json"
    result = snakemake(tmp_path, PAPER, overlay, targets=[target])
    assert result.returncode != 0
    log = (tmp_path / "results" / "logs" / "check_imagenet_val.log").read_text()
    assert "1 class folders, expected 2" in log and "n01440764 (2)" in log
    assert not (tmp_path / target).exists()
