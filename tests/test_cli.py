"""The `coar` command: every form of `coar components TARGET`, and user errors as one
line with exit status 2 (no traceback), a closed pipe included."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_provenance import step
from tiny_sources import write_openai_clip, write_original_miniresnet, write_torchvision_weights

from coar.attributions import Attributions
from coar.components import component_spec, conv_filters
from coar_replication.architectures import build_architecture
from coar_replication.checkpoints import save_edited_model, save_model
from coar_replication.lm import tiny_gpt2
from coar_replication.models import MiniResNet
from coar_workflow.cli import main

REPO = Path(__file__).resolve().parents[1]


def coar(capsys, *args) -> tuple[int, str, str]:
    """`coar ARGS` in this process: (exit status, stdout, stderr). Any exception other
    than SystemExit (a traceback for the user) fails the test."""
    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def listed(capsys, *args) -> tuple[str, dict[str, int], int]:
    """(heading, {module: count}, total) that `coar components ARGS` prints."""
    code, out, err = coar(capsys, "components", *args)
    assert code == 0, err
    heading, header, *rows, total = out.splitlines()
    assert header.split() == ["module", "components"]
    counts = {line.rsplit(maxsplit=1)[0].strip(): int(line.split()[-1]) for line in rows}
    assert total.startswith("total: ")
    return heading, counts, int(total.removeprefix("total: "))


def refused(capsys, *args) -> str:
    """The one-line error of a `coar` command that must fail with exit status 2."""
    code, out, err = coar(capsys, *args)
    assert (code, out) == (2, ""), (code, out, err)
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def tiny_miniresnet(planes: int = 4) -> MiniResNet:
    torch.manual_seed(0)
    return MiniResNet(
        in_channels=1, planes=planes, num_blocks=1, num_classes=10, pool=2, image_size=8
    )


# -- help ------------------------------------------------------------------------------------
def test_help_says_what_the_tool_and_each_subcommand_are_for(capsys):
    code, out, _ = coar(capsys, "--help")
    assert code == 0 and "The `coar` command" not in out
    assert "component attribution" in out and "how a result was made" in out
    assert "coar components resnet18" in out and "coar provenance results/" in out
    code, out, _ = coar(capsys, "components", "--help")
    assert code == 0 and "torchvision model name" in out and "package.module:factory" in out
    assert "coar components mini_noisy" in out
    code, out, _ = coar(capsys, "provenance", "--help")
    assert code == 0 and "example:" in out and "coar provenance results/mini" in out


# -- targets: names ----------------------------------------------------------------------------
def test_a_torchvision_model_name(capsys):
    from torchvision.models import get_model, resnet18

    heading, counts, total = listed(capsys, "resnet18")
    assert heading == "conv_filters of torchvision resnet18 (no weights)"
    expected = conv_filters(resnet18(weights=None))
    assert total == len(expected) == 3904 and counts == dict(expected.table())
    _, _, heads = listed(capsys, "vit_b_16")  # a transformer: its attention heads
    assert heads == 144
    assert listed(capsys, "r3d_18")[2] == len(conv_filters(get_model("r3d_18")))  # Conv3d
    # A detection model, without the pretrained backbone its builder would download.
    heading, counts, _ = listed(capsys, "fasterrcnn_mobilenet_v3_large_fpn")
    assert heading.endswith("(no weights)") and "backbone.body.0.0" in counts
    # RegNets cannot be built on the meta device: on the CPU, then
    heading, _, total = listed(capsys, "regnet_x_400mf")
    assert heading == "conv_filters of torchvision regnet_x_400mf (random weights)"
    assert total == len(conv_filters(get_model("regnet_x_400mf", weights=None)))


@pytest.mark.parametrize(
    "setup, kind, total",
    [
        ("mini_digits", "conv_filters", 288),  # config/mini.yaml
        ("mini_noisy", "conv_filters", 576),  # twice as wide as mini_digits
        ("mini_spurious", "conv_filters", 288),
        ("tiny_gpt2_heads", "attention_heads", 16),
        ("tiny_gpt2_rows", "gpt2_rows", 320),
        ("imagenet_resnet50", "conv_filters", 22720),  # config/config.yaml
        ("imagenet_vit", "vit_neurons", 82944),
        ("gpt2_heads", "attention_heads", 144),
        ("clip_typographic", "clip_mlp_neurons", 46080),
    ],
)
def test_every_setup_of_both_configs(capsys, setup, kind, total):
    heading, _, listed_total = listed(capsys, setup)
    assert heading.startswith(f"{kind} of setup {setup}") and listed_total == total


def test_a_setup_of_a_given_config_file(capsys, tmp_path):
    base = (REPO / "config" / "mini.yaml").read_text()
    (tmp_path / "more.yaml").write_text(
        "setups:\n  mini_narrow:\n    kind: mini_digits\n"
        "    data: {test_fraction: 0.2, split_seed: 0}\n"
        "    model: {planes: 4, num_blocks: 1, pool: 2}\n"
        "  mini_unfinished:\n    kind: mini_digits\n"
        "    data: {test_fraction: 0.2, split_seed: 0}\n"
        "  mini_all_test:\n    kind: mini_digits\n"
        "    data: {test_fraction: 2.0, split_seed: 0}\n"
        "    model: {planes: 4, num_blocks: 1, pool: 2}\n"
        "  tiny_lm:\n    kind: causal_lm\n    language_model: nowhere\n"
        "    components: attention_heads\n"
    )
    (tmp_path / "mini.yaml").write_text(base)
    files = ["--configfile", str(tmp_path / "mini.yaml"), "--config", str(tmp_path / "more.yaml")]
    _, counts, total = listed(capsys, "mini_narrow", *files)
    assert total == len(conv_filters(tiny_miniresnet(4))) == 12 and counts["conv1"] == 4
    assert listed(capsys, "mini_noisy", *files)[2] == 576  # the files are merged
    err = refused(capsys, "components", "mini_unfinished", *files)
    assert "setup mini_unfinished: its config has no key 'model'; fix the config" in err
    assert "setup mini_all_test: " in refused(capsys, "components", "mini_all_test", *files)
    err = refused(capsys, "components", "tiny_lm", *files)
    assert err.startswith("coar components: setup tiny_lm: language model 'nowhere' is not")
    assert "(defined: tiny_gpt2); fix the config" in err
    err = refused(capsys, "components", "gpt2_heads", *files)  # not in these files
    assert "'gpt2_heads' is not a setup of" in err and "mini_narrow" in err


def test_an_architecture_with_another_kind(capsys):
    assert listed(capsys, "gpt2", "--kind", "attention_heads")[2] == 144
    assert listed(capsys, "gpt2", "--kind", "mlp_neurons")[2] == 12 * 3072


def test_include_and_exclude_select_modules(capsys):
    from torchvision.models import resnet18

    model = resnet18(weights=None)
    _, counts, total = listed(capsys, "resnet18", "--include", "layer4.*")
    expected = conv_filters(model, include=["layer4.*"])
    assert counts == dict(expected.table()) and total == 2048
    _, counts, total = listed(capsys, "resnet18", "--exclude", "layer*", "--exclude", "fc")
    assert counts == {"conv1": 64} and total == 64
    _, counts, total = listed(capsys, "resnet18", "--exclude", "fc")  # replaces the default
    assert counts["layer2.0.downsample.0"] == 128 and total == 3904 + 128 + 256 + 512
    err = refused(capsys, "components", "resnet18", "--exclude", "*")
    assert "that these --include/--exclude patterns select; change the patterns" in err


def test_a_factory(capsys, tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(
        "from torch import nn\n\n"
        "def cnn():\n"
        "    return nn.Sequential(nn.Conv2d(3, 5, 3), nn.ReLU(), nn.Conv2d(5, 7, 3))\n\n"
        "def not_a_model():\n    return 3\n\n"
        "def broken():\n    raise RuntimeError('no weights here')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    heading, counts, total = listed(capsys, "my_models:cnn")
    assert heading == "conv_filters of my_models:cnn()" and counts == {"0": 5, "2": 7}
    assert listed(capsys, "torchvision.models:resnet18")[2] == 3904  # called with no arguments
    assert "returned a int, not a torch.nn.Module" in refused(
        capsys, "components", "my_models:not_a_model"
    )
    assert "my_models:broken() raised RuntimeError: no weights here" in refused(
        capsys, "components", "my_models:broken"
    )
    assert "cannot import no_such_package" in refused(
        capsys, "components", "no_such_package.models:cnn"
    )
    assert "has no missing" in refused(capsys, "components", "my_models:missing")


# -- targets: Hugging Face configs -------------------------------------------------------------
def test_a_hugging_face_config_file_and_directory(capsys, tmp_path):
    from transformers import BertConfig, GPT2Config

    GPT2Config(n_layer=2, n_head=4, n_embd=16, n_positions=8, vocab_size=50).save_pretrained(
        tmp_path / "tiny"
    )
    for target in (tmp_path / "tiny", tmp_path / "tiny" / "config.json"):
        heading, counts, total = listed(capsys, str(target))
        assert heading.startswith("attention_heads of ") and "GPT2Model (no weights)" in heading
        assert total == 8 and counts == {f"h.{i}.attn.head": 4 for i in range(2)}
    assert listed(capsys, str(tmp_path / "tiny"), "--kind", "gpt2_rows")[2] == 2 * (16 * 3 + 64)
    bert = BertConfig(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        vocab_size=50, architectures=["BertForSequenceClassification"],
    )  # fmt: skip
    bert.save_pretrained(tmp_path / "bert")
    heading, counts, total = listed(capsys, str(tmp_path / "bert"))
    assert "BertForSequenceClassification (no weights)" in heading
    assert heading.startswith("attention_heads of ") and total == 4
    assert listed(capsys, str(tmp_path / "bert"), "--kind", "mlp_neurons")[2] == 2 * 32
    (tmp_path / "empty").mkdir()
    assert "directory without config.json" in refused(capsys, "components", str(tmp_path / "empty"))
    (tmp_path / "other.json").write_text('{"a": 1}')
    assert "is not a Hugging Face model config" in refused(
        capsys, "components", str(tmp_path / "other.json")
    )


# -- targets: this project's model files -------------------------------------------------------
def test_a_miniresnet_checkpoint_and_its_edit(capsys, tmp_path):
    from coar.edit import Edit

    model = tiny_miniresnet()
    save_model(model, tmp_path / "model.pt", metrics={"test": 0.5})
    heading, counts, total = listed(capsys, str(tmp_path / "model.pt"))
    assert heading == f"conv_filters of {tmp_path / 'model.pt'}"
    assert (total, counts["conv1"]) == (12, 4)
    spec = conv_filters(model)
    edit = Edit("toy", "errors", "lower", [0], spec.names(), "k=1")
    save_edited_model(model, edit, tmp_path / "edited.pt")
    assert listed(capsys, str(tmp_path / "edited.pt"))[2] == 12


def test_imported_torchvision_checkpoints(capsys, tmp_path):
    """As workflow/scripts/import_model.py writes them: the registry's name and normalization."""
    for name, kind in (("imagenet_resnet50", "conv_filters"), ("imagenet_vit", "vit_neurons")):
        model = build_architecture(name, "tiny", 10)
        save_model(model, tmp_path / f"{name}.pt", architecture=name, normalization="imagenet")
        heading, counts, total = listed(capsys, str(tmp_path / f"{name}.pt"))
        assert heading.startswith(f"{kind} of ")
        assert counts == dict(component_spec(model, kind).table())
    assert listed(capsys, str(tmp_path / "imagenet_vit.pt"), "--kind", "attention_heads")[2] == 4


def test_language_model_checkpoints(capsys, tmp_path):
    """The trained tiny GPT-2 (no kind: GPT-2's paper kind) and a setup's copy, which
    names its kind (workflow/scripts/lm_train.py, lm_setup.py): the user's TypeError."""
    arch = {"n_embd": 16, "n_layer": 2, "n_head": 4, "n_inner": 32}
    model = tiny_gpt2(30, 12, arch, seed=0)
    save_model(model, tmp_path / "model.pt", metrics={"eval": {"loss": 1.0}})
    heading, _, total = listed(capsys, str(tmp_path / "model.pt"))
    assert heading.startswith("gpt2_rows of ") and total == 2 * (16 + 16 + 16 + 32)
    save_model(model, tmp_path / "tiny_gpt2_heads.pt", components="attention_heads")
    heading, counts, total = listed(capsys, str(tmp_path / "tiny_gpt2_heads.pt"))
    assert heading.startswith("attention_heads of ") and total == 8
    assert counts == {f"transformer.h.{i}.attn.head": 4 for i in range(2)}


def test_the_original_pickled_miniresnet(capsys, tmp_path):
    write_original_miniresnet(tmp_path / "original.pt")
    heading, counts, total = listed(capsys, str(tmp_path / "original.pt"))
    assert heading.endswith("(the original MiniResNet)") and total == 5 * 8
    assert "conv1" in counts and not any("block" in name for name in counts)


def test_a_zero_shot_clip_setup_description(capsys, tmp_path):
    """The model file of a clip_zero_shot setup (workflow/scripts/typographic_setup.py)."""
    from coar.serialization import save_torch
    from coar_replication.edit_clip import typographic_setup

    write_openai_clip(tmp_path / "clip.pt")
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    splits = {"test": np.array([0, 1])}
    description, _ = typographic_setup(
        tmp_path / "clip.pt", images, np.array([0, 1]), splits, ["cat", "dog"], seed=0
    )
    save_torch(description, tmp_path / "clip_setup.pt")
    heading, counts, total = listed(capsys, str(tmp_path / "clip_setup.pt"))
    assert heading.startswith("clip_mlp_neurons of ") and total == 256 + 64
    save_torch({**description, "openai_checkpoint": "gone.pt"}, tmp_path / "moved.pt")
    err = refused(capsys, "components", str(tmp_path / "moved.pt"))
    assert "gone.pt does not exist" in err and "working directory" in err


# -- user errors -------------------------------------------------------------------------------
def test_a_plain_state_dict_says_to_name_its_architecture(capsys, tmp_path):
    """A torchvision weights file gave KeyError: 'config'."""
    write_torchvision_weights(tmp_path / "resnet.pth", "imagenet_resnet50")
    err = refused(capsys, "components", str(tmp_path / "resnet.pth"))
    assert "plain state dict" in err and "resnet18" in err
    state = torch.load(tmp_path / "resnet.pth", weights_only=True)
    for i, wrapped in enumerate(({"state_dict": state, "epoch": 3}, {"model": state})):
        torch.save(wrapped, tmp_path / f"wrapped{i}.pt")
        err = refused(capsys, "components", str(tmp_path / f"wrapped{i}.pt"))
        assert "state dict" in err and "pass its architecture instead" in err
    torch.save({"format": "miniresnet", "config": {"planes": 4, "width": 2}, "state_dict": {}},
               tmp_path / "odd.pt")  # fmt: skip
    assert "unexpected keyword argument 'width'" in refused(
        capsys, "components", str(tmp_path / "odd.pt")
    )


def test_an_edited_zero_shot_clip(capsys, tmp_path, monkeypatch):
    """Weights only (the registry cannot build the classifier): its setup's model, which
    the edit record names, when the weights fit it."""
    from coar_replication.checkpoints import load_clip
    from coar_replication.edit_clip import ZeroShotCLIP

    monkeypatch.chdir(tmp_path)
    (tmp_path / "downloads").mkdir()
    write_openai_clip(tmp_path / "downloads" / "clip.pt")
    (tmp_path / "clip.yaml").write_text(
        "downloads_dir: downloads\nsetups:\n  my_clip:\n    kind: clip_zero_shot\n"
        "    clip: {checkpoint: clip.pt, class_names: [cat, dog]}\n"
    )
    config = ["--configfile", "clip.yaml"]
    heading, _, total = listed(capsys, "my_clip", *config)
    assert heading == "clip_mlp_neurons of setup my_clip: CLIP downloads/clip.pt"
    assert total == 256 + 64
    zero_shot = ZeroShotCLIP(
        load_clip(tmp_path / "downloads" / "clip.pt").visual, torch.zeros(2, 32), 1.0
    )
    save_model(zero_shot, tmp_path / "edited.pt", edit={"setup": "my_clip", "ablated": [0]})
    heading, _, total = listed(capsys, "edited.pt", *config)
    assert heading.startswith("clip_mlp_neurons of edited.pt (an edit of setup my_clip")
    assert total == 256 + 64
    err = refused(capsys, "components", "edited.pt")  # the default configs' clip setup: ViT-B/16
    assert (
        "edit of setup my_clip, which config/config.yaml and config/mini.yaml do not define" in err
    )
    save_model(zero_shot, tmp_path / "other.pt", edit={"setup": "clip_typographic"})
    err = refused(capsys, "components", "other.pt")
    assert "its weights do not fit the model of setup clip_typographic" in err
    save_model(zero_shot, tmp_path / "bare.pt")
    assert "no edit record naming its setup" in refused(capsys, "components", "bare.pt")


def test_unknown_names_missing_files_and_other_files(capsys, tmp_path):
    err = refused(capsys, "components", "resnet1800")
    assert "'resnet1800' is not a setup of config/config.yaml or config/mini.yaml" in err
    assert "mini_noisy" in err and "torchvision.models.list_models()" in err
    err = refused(capsys, "components", "results/mini/models/none.pt")
    assert err == (
        "coar components: results/mini/models/none.pt: no such file or directory; "
        "pass an existing path\n"
    )
    (tmp_path / "notes.txt").write_text("not a model")
    assert "cannot be read as a model file" in refused(
        capsys, "components", str(tmp_path / "notes.txt")
    )
    for i, payload in enumerate(({"weights": [1, 2]}, [1, 2])):
        torch.save(payload, tmp_path / f"other{i}.pt")
        assert "not a model file of this project" in refused(
            capsys, "components", str(tmp_path / f"other{i}.pt")
        )
    attributions = Attributions(
        np.zeros((2, 3)), np.zeros(3), ["a", "b"], [0, 1, 2], meta={"setup": "toy"}
    )
    attributions.save(tmp_path / "coar.pt")
    assert "holds attributions (of 2 components), not a model" in refused(
        capsys, "components", str(tmp_path / "coar.pt")
    )
    err = refused(capsys, "components", "mini_digits", "--configfile", str(tmp_path / "no.yaml"))
    assert "no.yaml: no such file" in err


def test_a_kind_the_model_lacks_is_refused(capsys, tmp_path):
    save_model(tiny_miniresnet(), tmp_path / "model.pt")
    err = refused(capsys, "components", str(tmp_path / "model.pt"), "--kind", "gpt2_rows")
    assert "has no components of kind gpt2_rows; pick another --kind" in err
    err = refused(capsys, "components", "mini_digits", "--kind", "gpt2_rows", "--include", "x")
    assert "kind gpt2_rows takes no --include" in err


def test_a_model_without_a_default_kind_asks_for_one(capsys, tmp_path, monkeypatch):
    (tmp_path / "plain.py").write_text("from torch import nn\n\ndef f():\n    return nn.ReLU()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "give one of the kinds with --kind" in refused(capsys, "components", "plain:f")


def test_provenance_of_a_file_without_record_is_a_usage_error(capsys, tmp_path):
    (tmp_path / "notes.txt").write_text("made by hand")
    err = refused(capsys, "provenance", str(tmp_path / "notes.txt"))
    assert f"{tmp_path / 'notes.txt'} has no provenance record" in err
    assert "record_provenance" in err  # what would have written one


def test_a_closed_pipe_ends_quietly(tmp_path, monkeypatch):
    """`coar provenance FILE | head -1` printed a BrokenPipeError traceback. The chain is
    longer than a pipe's buffer, so the command is still writing when head exits."""
    monkeypatch.chdir(tmp_path)
    params = {f"p{i}": "v" * 90 for i in range(1000)}
    step(tmp_path, "figure", [], "fig/f.pdf", "figure", **params)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    command = f"'{sys.executable}' -m coar_workflow.cli provenance fig/f.pdf | head -1"
    for _ in range(3):
        run = subprocess.run(
            ["bash", "-c", f"{command}; echo ${{PIPESTATUS[0]}} >&2"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert run.stdout == "Provenance of fig/f.pdf\n"
        assert "Traceback" not in run.stderr and "BrokenPipe" not in run.stderr, run.stderr
        assert run.stderr.strip() == "141"  # as a program that SIGPIPE ended


def test_models_without_weights_have_the_components_of_real_ones():
    """The command builds named models on the meta device: every kind lists the same
    components (or refuses alike) as on a model with weights."""
    from torchvision.models import VisionTransformer
    from transformers import BertConfig, BertModel

    from coar.components import KINDS
    from coar_workflow.targets import without_weights

    arch = {"n_embd": 16, "n_layer": 2, "n_head": 4, "n_inner": 32}
    makers = [
        lambda: tiny_gpt2(30, 12, arch, seed=0),
        lambda: build_architecture("imagenet_resnet50", "tiny", 10),
        lambda: VisionTransformer(8, 4, 2, 2, 8, 16, num_classes=3),
        lambda: BertModel(
            BertConfig(
                hidden_size=16,
                num_hidden_layers=2,
                num_attention_heads=2,
                intermediate_size=32,
                vocab_size=50,
            )
        ),  # fmt: skip
    ]

    def listing(model, kind):
        try:
            return KINDS[kind](model).table()
        except ValueError as err:
            return str(err)

    for make in makers:
        meta, weights = without_weights(make)
        assert weights == "no weights" and next(meta.parameters()).is_meta
        real = make()
        for kind in KINDS:
            assert listing(meta, kind) == listing(real, kind), (type(real).__name__, kind)
