"""The paper config's rules, end to end on CPU, from a loopback server serving tiny files.

The "smoke" overlay keeps every rule and code path of config/config.yaml (downloads with
pinned digests, ImageNet check and preparation, the original's pickled MiniResNet,
torchvision weights, examples files, ablation, fit, evaluation, figures) and shrinks the
sizes: tiny architectures with random weights, a few masks, a few examples.
"""

import hashlib
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
    write_imagenet_val,
    write_original_datamodels,
    write_original_image_beton,
    write_original_miniresnet,
    write_torchvision_weights,
)

from coar.attributions import Attributions

PAPER = Path(__file__).resolve().parents[1] / "config" / "config.yaml"
SMOKE_SETUPS = ["cifar_miniresnet", "imagenet_resnet50", "imagenet_vit"]
# The editing experiments' models: their data, model and published-attribution rules.
EDIT_TARGETS = [
    "results/data/waterbirds_resnet50.npz",
    "results/attributions/waterbirds_resnet50/published_train.pt",
    "results/data/backdoored_cifar.npz",
    "results/attributions/backdoored_cifar/published_triggered.pt",
]
TARGETS = (
    ["results/figures/fig1.pdf"]
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
    write_cifar10_tarball(directory / "cifar-10-python.tar.gz", n=12)
    write_torchvision_weights(directory / "resnet50-0676ba61.pth", "imagenet_resnet50")
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
    tiny_crop = {"image_size": 32}  # the original's centre-crop decoder, to 32 instead of 224
    shrink["waterbirds_resnet50"] = {
        "source": {
            "model": {"size": "tiny"},
            "splits": {split: tiny_crop for split in ("train", "val", "test")},
        }
    }
    shrink["backdoored_cifar"] = {"source": {"model": {"size": "tiny"}}}
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
        "setups": shrink,
        "figures": {"fig1": {"title": "Evaluating Coar", "setups": SMOKE_SETUPS}},
    }


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("paper")
    served = workdir / "served"
    served.mkdir()
    files = make_files(served)
    write_imagenet_val(workdir / "imagenet" / "val", n_classes=4, per_class=3)
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
    triggered = results / "attributions" / "backdoored_cifar" / "published_triggered.pt"
    assert Attributions.load(triggered).weight.shape == (40, 12)


@pytest.mark.workflow
def test_smoke_rerun_does_nothing(smoke_run):
    workdir, overlay, _ = smoke_run
    result = snakemake(
        workdir, PAPER, overlay, options=["--dry-run"], targets=["results/figures/fig1.pdf"]
    )
    assert result.returncode == 0, result.stderr
    assert "Nothing to be done" in result.stdout + result.stderr


def test_paper_config_plans_every_job_from_download_to_figure(tmp_path):
    result = snakemake(tmp_path, PAPER, options=["--dry-run"])
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = planned_jobs(result)
    for rule in (
        "download_model_cifar_miniresnet_pt",
        "download_cifar_10_python_tar_gz",
        "download_resnet50_0676ba61_pth",
        "download_vit_b_16_c867db91_pth",
        "check_imagenet_val",
        "prepare_imagenet_val",
        "prepare_cifar10_test",
        "fig1",
    ):
        assert jobs.get(rule) == 1, (rule, jobs)
    assert jobs["import_model"] == jobs["prepare_examples"] == jobs["fit"] == 3
    assert jobs["ablate"] == 50 + 200 + 100
    assert jobs["evaluation_outputs"] == 9
    assert jobs["convert_published_attributions"] == jobs["compare_published_attributions"] == 3


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
