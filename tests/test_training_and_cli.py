import subprocess
import sys

import torch

from coar_replication.checkpoints import load_model, save_model
from coar_replication.data import digits_split
from coar_replication.models import MiniResNet
from coar_replication.training import accuracy, train_classifier


def tiny_training(seed):
    data = digits_split(0.2, seed=0)
    torch.manual_seed(seed)
    model = MiniResNet(in_channels=1, planes=4, num_blocks=1, num_classes=10, pool=2, image_size=8)
    train_classifier(
        model,
        data["x_train"][:256],
        data["y_train"][:256],
        epochs=2,
        batch_size=64,
        lr=0.05,
        weight_decay=5e-4,
        seed=seed,
    )
    return model, data


def test_digits_split_is_deterministic_and_stratified():
    a, b = digits_split(0.2, seed=0), digits_split(0.2, seed=0)
    for key in a:
        assert (a[key] == b[key]).all()
    assert a["x_test"].shape == (360, 1, 8, 8) and a["x_train"].dtype.name == "float32"
    assert set(a["y_test"].tolist()) == set(range(10))


def test_training_is_seeded():
    first, _ = tiny_training(seed=3)
    second, _ = tiny_training(seed=3)
    for p, q in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_checkpoint_roundtrip_and_components_command(tmp_path):
    model, data = tiny_training(seed=0)
    path = tmp_path / "model.pt"
    save_model(model, path)
    x, y = torch.from_numpy(data["x_test"]), torch.from_numpy(data["y_test"])
    assert accuracy(load_model(path), x, y) == accuracy(model, x, y)
    out = subprocess.run(
        [sys.executable, "-m", "coar_workflow.cli", "components", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert out[0] == f"conv_filters of {path}" and out[1].split() == ["module", "components"]
    assert out[2].split() == ["conv1", "4"]
    assert out[-1] == "total: 12"
