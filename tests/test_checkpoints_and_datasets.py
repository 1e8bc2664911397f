"""Importing the paper's checkpoints safely, and preparing its evaluation sets."""

import pytest
import torch
from tiny_sources import (
    write_cifar10_tarball,
    write_imagenet_train,
    write_imagenet_val,
    write_original_miniresnet,
    write_torchvision_weights,
)

from coar.components import conv_filters
from coar.edit import Edit, apply_edit
from coar_replication.architectures import build_architecture
from coar_replication.checkpoints import (
    CheckpointError,
    import_checkpoint,
    load_checkpoint,
    load_model,
    read_original_pickle,
    save_edited_model,
    save_model,
)
from coar_replication.datasets import (
    DatasetError,
    check_imagenet_set,
    check_imagenet_val,
    imagenet_set_files,
    read_cifar10,
    read_image_beton,
    write_image_beton,
)
from coar_replication.models import MiniResNet
from coar_replication.real_setups import components_of

MINI = dict(format="original_pickle", architecture="cifar_miniresnet", size="tiny", num_classes=10)


def test_original_pickled_miniresnet_loads_without_its_code(tmp_path):
    original = write_original_miniresnet(tmp_path / "cifar.pt")
    model = import_checkpoint(tmp_path / "cifar.pt", MINI)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), original(x))
    assert conv_filters(model).table()[:2] == [("conv1", 8), ("layers.0.conv1", 8)]
    assert len(conv_filters(model)) == 5 * 8


def test_original_pickle_naming_other_code_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    torch.save({"model": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="Unsupported global: GLOBAL print") as err:
        read_original_pickle(tmp_path / "evil.pt")
    assert "allowlist" not in str(err.value) and "weights_only=False" not in str(err.value)


def test_base_model_prefix_is_stripped(tmp_path):
    model = build_architecture("imagenet_resnet50", "tiny", 2).eval()
    torch.save({f"base_model.{k}": v for k, v in model.state_dict().items()}, tmp_path / "wb.pt")
    cfg = dict(
        format="state_dict",
        architecture="imagenet_resnet50",
        size="tiny",
        num_classes=2,
        strip_prefix="base_model.",
    )
    loaded = import_checkpoint(tmp_path / "wb.pt", cfg)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    with pytest.raises(CheckpointError, match="missing"):
        import_checkpoint(tmp_path / "wb.pt", {**cfg, "strip_prefix": "base_"})


def test_torchvision_weights_round_trip_through_our_format(tmp_path):
    original = write_torchvision_weights(tmp_path / "resnet50-tiny.pth", "imagenet_resnet50")
    cfg = dict(
        format="torchvision", architecture="imagenet_resnet50", size="tiny", num_classes=1000
    )
    model = import_checkpoint(tmp_path / "resnet50-tiny.pth", cfg)
    save_model(
        model, tmp_path / "ours.pt", architecture=cfg["architecture"], normalization="imagenet"
    )
    checkpoint = torch.load(tmp_path / "ours.pt", weights_only=True)
    assert list(checkpoint) == ["format", "config", "state_dict", "architecture", "normalization"]
    assert checkpoint["format"] == "torchvision_resnet"
    loaded, info = load_checkpoint(tmp_path / "ours.pt")
    assert info["normalization"]["mean"][0] == pytest.approx(123.675)
    assert info["architecture"] == "imagenet_resnet50"
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), original(x))
    names = [name for name, _ in conv_filters(loaded).table()]
    assert "conv1" in names and not any("downsample" in n for n in names)


def _same_weights(a, b):
    for (key, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("name", ["cifar_miniresnet", "imagenet_resnet50", "imagenet_vit"])
def test_imported_checkpoints_of_the_earlier_layout_still_load(tmp_path, name):
    model = build_architecture(name, "tiny", 3).eval()
    arch = {"architecture": name, "size": "tiny", "num_classes": 3}
    if isinstance(model, MiniResNet):
        arch["miniresnet"] = model.config
    earlier = {"architecture": arch, "normalization": "cifar", "state_dict": model.state_dict()}
    torch.save(earlier, tmp_path / "old.pt")
    loaded, info = load_checkpoint(tmp_path / "old.pt")
    assert info["architecture"] == name and info["normalization"]["mean"][0] == 125.307
    _same_weights(loaded, model)


def test_edited_imported_model_keeps_what_load_checkpoint_needs(tmp_path):
    model = build_architecture("imagenet_resnet50", "tiny", 2)
    save_model(model, tmp_path / "m.pt", architecture="imagenet_resnet50", normalization="imagenet")
    loaded, _ = load_checkpoint(tmp_path / "m.pt")
    spec = conv_filters(loaded)
    edit = Edit("s", "forget", "lower", [0, 5], spec.names(), "because", {})
    save_edited_model(apply_edit(loaded, spec, edit.ablated), edit, tmp_path / "e.pt", metrics={})
    edited, info = load_checkpoint(tmp_path / "e.pt")
    assert info["architecture"] == "imagenet_resnet50"
    assert torch.load(tmp_path / "e.pt", weights_only=True)["edit"]["k"] == 2
    _same_weights(edited, loaded)
    assert edited.conv1.weight[[0, 5]].abs().sum() == 0


def test_miniresnet_checkpoint_layout_is_unchanged(tmp_path):
    model = MiniResNet(1, 4, 1, 10, pool=2, image_size=8)
    save_model(model, tmp_path / "m.pt", metrics={"test": 1.0})
    checkpoint = torch.load(tmp_path / "m.pt", weights_only=True)
    assert list(checkpoint) == ["config", "state_dict", "metrics"]
    _same_weights(load_model(tmp_path / "m.pt"), model)


def test_a_model_the_registry_cannot_build_is_saved_as_its_weights(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    save_model(model, tmp_path / "w.pt", metrics={})
    assert torch.load(tmp_path / "w.pt", weights_only=True)["format"] == "state_dict"
    with pytest.raises(CheckpointError, match="read_state_dict"):
        load_model(tmp_path / "w.pt")


def test_full_architectures_have_the_papers_component_counts():
    for name, classes, count in (
        ("cifar_miniresnet", 10, 2304),
        ("imagenet_resnet50", 1000, 22720),
        ("imagenet_vit", 1000, 82944),
    ):
        assert len(components_of(build_architecture(name, "full", classes), name)) == count


def test_cifar10_train_split_reads_the_five_batches_in_order(tmp_path):
    write_cifar10_tarball(tmp_path / "c.tar.gz", n=3, n_train=23)
    images, labels = read_cifar10(tmp_path / "c.tar.gz", "train")
    assert images.shape == (23, 32, 32, 3) and labels.tolist() == [i % 10 for i in range(23)]
    write_cifar10_tarball(tmp_path / "test_only.tar.gz", n=3)
    with pytest.raises(DatasetError, match="data_batch_1"):
        read_cifar10(tmp_path / "test_only.tar.gz", "train")
    with pytest.raises(DatasetError, match="no split 'val'"):
        read_cifar10(tmp_path / "c.tar.gz", "val")


def test_cifar10_tarball_to_beton_and_back(tmp_path):
    data, labels = write_cifar10_tarball(tmp_path / "c.tar.gz", n=5)
    images, read_labels = read_cifar10(tmp_path / "c.tar.gz", "test")
    assert images.shape == (5, 32, 32, 3) and read_labels.tolist() == labels
    assert (images[1, :, :, 0].ravel() == data[1, :1024]).all()  # red plane first
    write_image_beton(
        tmp_path / "c.beton", lambda i: images[i], read_labels, groups=[0, 1, 0, 1, 1]
    )
    back = read_image_beton(tmp_path / "c.beton")
    assert (back["image"] == images).all()
    assert back["label"].tolist() == labels and back["group"].tolist() == [0, 1, 0, 1, 1]


def test_imagenet_val_check_names_what_is_missing(tmp_path):
    root = tmp_path / "val"
    write_imagenet_val(root, n_classes=3, per_class=2)
    assert check_imagenet_val(root, 3, 2)["images"] == 6
    next((root / "n01440765").iterdir()).unlink()
    with pytest.raises(DatasetError) as err:
        check_imagenet_val(root, 4, 2)
    message = str(err.value)
    assert "3 class folders, expected 4" in message and "n01440765 (1)" in message
    with pytest.raises(DatasetError, match="does not exist"):
        check_imagenet_val(tmp_path / "nowhere")


def test_imagenet_train_keeps_the_first_files_of_each_class(tmp_path):
    root = tmp_path / "train"
    names = write_imagenet_train(root, n_classes=3, per_class=4)
    cfg = {"path": str(root), "n_classes": 3, "per_class": 3, "resize": 36, "crop": 32}
    assert check_imagenet_set("imagenet_train", cfg) == {
        "path": str(root.resolve()),
        "classes": 3,
        "images": 9,
    }
    files, labels = imagenet_set_files("imagenet_train", cfg)
    assert [f.name for f in files] == [n for wnid in sorted(names) for n in names[wnid][:3]]
    assert files[0].name == "n01440764_10.JPEG"  # sorted by name, not by number
    assert labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    with pytest.raises(DatasetError) as err:
        check_imagenet_set("imagenet_train", {**cfg, "per_class": 5})
    message = str(err.value)
    assert "3 class folders without at least 5 images: n01440764 (4)" in message
    assert "imagenet_train.path" in message and "ILSVRC2012 training set" in message
    with pytest.raises(DatasetError, match="config key imagenet_train is not set"):
        check_imagenet_set("imagenet_train", None)
    # val needs exactly images_per_class: the same folders fail as val
    val = {"path": str(root), "n_classes": 3, "images_per_class": 3}
    with pytest.raises(DatasetError, match="without exactly 3 images"):
        check_imagenet_set("imagenet_val", val)


def test_clip_loads_from_a_state_dict_in_openai_layout(tmp_path):
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    from coar_replication.checkpoints import load_clip

    torch.manual_seed(0)
    tiny = CLIP(
        embed_dim=16,
        vision_cfg=CLIPVisionCfg(layers=1, width=64, patch_size=8, image_size=32),
        text_cfg=CLIPTextCfg(context_length=77, vocab_size=49408, width=64, heads=1, layers=1),
        quick_gelu=True,  # OpenAI's activation, which open_clip assumes for their files
    ).eval()
    # OpenAI's weights are float16 and open_clip rebuilds through float16: use such values.
    with torch.no_grad():
        for parameter in tiny.parameters():
            parameter.copy_(parameter.half().float())
    torch.save(tiny.state_dict(), tmp_path / "clip.pt")
    model = load_clip(tmp_path / "clip.pt")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(x), tiny.encode_image(x))
