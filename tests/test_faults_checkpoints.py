"""Checkpoint loading under fault: crafted pickles with an environment that lifts
PyTorch's restriction, damaged files."""

import os

import pytest
import torch
from faults import truncate

from coar.attributions import Attributions
from coar_replication.checkpoints import (
    CheckpointError,
    load_clip,
    load_model,
    read_original_pickle,
    read_state_dict,
)


class RunsCode:
    """Unpickled without restriction, this runs a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize(
    "load",
    [load_clip, load_model, read_state_dict, read_original_pickle, Attributions.load],
    ids=lambda f: f.__qualname__,
)
def test_no_loader_runs_code_even_when_the_environment_lifts_the_restriction(
    tmp_path, monkeypatch, load
):
    marker = tmp_path / "code_ran"
    crafted = tmp_path / "crafted.pt"
    torch.save({"state_dict": RunsCode(marker)}, crafted)
    # torch.load's default becomes weights_only=False; open_clip's fallback used it
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(ValueError) as err:  # CheckpointError is one
        load(crafted)
    assert not marker.exists()
    assert str(crafted) in str(err.value) and "weights_only=False" not in str(err.value)
    assert "unsupported GLOBAL posix.system" in str(err.value)  # torch's reason is kept


def test_a_truncated_checkpoint_names_the_file_and_says_what_to_do(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"state_dict": {"w": torch.ones(1000)}}, path)
    truncate(path, 300)
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    message = str(err.value)
    assert str(path) in message and "download or copy it again" in message
    assert "Invalid argument" in message  # the reason torch gave
    assert "weights_only=False" not in message
