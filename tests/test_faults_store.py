"""Component datasets and outputs under fault: damaged betons, dying writers, full disks,
killed writers' leftovers, non-reproducible bytes."""

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from faults import component_shards, gather_in_subprocess, overwrite, truncate

from coar.atomic import atomic_path, remove_stale_temporaries
from coar.attributions import Attributions
from coar.fit import fit_from_beton
from coar.store import (
    ComponentDatasetError,
    ShardError,
    check_component_dataset,
    gather_to_beton,
    integrity_path,
    iter_beton,
    read_shard,
)

FIT = {"solver": "least_squares", "val_fraction": 0.1, "seed": 0}


def fit(beton):
    return fit_from_beton(
        beton,
        component_names=[f"c{i}" for i in range(30)],
        example_ids=list(range(12)),
        fit_config=FIT,
        meta={},
    )


@pytest.fixture
def beton(tmp_path):
    paths, run = component_shards(tmp_path)
    beton = tmp_path / "component_dataset.beton"
    gather_to_beton(paths, run, beton)
    return beton


def test_gather_writes_an_integrity_record_that_matches_the_file(beton):
    record = check_component_dataset(beton)
    assert record["rows"] == 400 and record["components"] == 30 and record["examples"] == 12
    assert record["bytes"] == beton.stat().st_size
    assert record["sha256"] == hashlib.sha256(beton.read_bytes()).hexdigest()
    assert np.isfinite(fit(beton).weight).all()


def test_a_truncated_beton_is_refused_before_fitting(beton):
    truncate(beton, 100)
    with pytest.raises(ComponentDatasetError, match="truncated or overwritten") as err:
        fit(beton)
    assert str(beton) in str(err.value) and "gather it again" in str(err.value)


def test_a_damaged_beton_is_refused_before_fitting(beton):
    overwrite(beton, beton.stat().st_size // 2, 64)
    with pytest.raises(ComponentDatasetError, match="sha256"):
        fit(beton)


def test_a_beton_without_its_record_is_refused(beton):
    integrity_path(beton).unlink()
    with pytest.raises(ComponentDatasetError, match="no integrity record"):
        fit(beton)


def test_an_unreadable_beton_names_the_file_instead_of_ffcvs_bare_error(beton):
    truncate(beton, beton.stat().st_size - 50)  # FFCV: "negative dimensions are not allowed"
    with pytest.raises(ComponentDatasetError, match="not a readable component dataset") as err:
        next(iter_beton(beton))
    assert str(beton) in str(err.value)


def test_rows_read_twice_or_not_finite_are_refused():
    from coar.fit import fit_from_batches

    masks = np.ones((4, 3), bool)
    outputs = np.zeros((4, 2), np.float32)
    twice = [(masks, outputs, np.array([0, 1, 2, 2]))]
    kwargs = dict(component_names=["a", "b", "c"], example_ids=[0, 1], fit_config=FIT, meta={})
    with pytest.raises(ValueError, match="rows read twice"):
        fit_from_batches(lambda: iter(twice), 4, **kwargs)
    outputs[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"non-finite outputs in rows \[2\]"):
        fit_from_batches(lambda: iter([(masks, outputs, np.arange(4))]), 4, **kwargs)


def assert_no_leftovers(folder):
    names = sorted(p.name for p in folder.iterdir())
    assert not [n for n in names if "component_dataset" in n], names


def test_gather_stops_when_ffcvs_writer_worker_dies(tmp_path):
    paths, run = component_shards(tmp_path)
    beton = tmp_path / "component_dataset.beton"
    finished = gather_in_subprocess(paths, run, beton, "kill_worker")  # hung forever before
    assert finished.returncode == 3, finished.stderr[-2000:]
    assert "killed by signal 9 after" in finished.stdout and str(beton) in finished.stdout
    assert_no_leftovers(tmp_path)


def test_gather_on_a_full_disk_stops_with_the_error_and_removes_its_temporary_file(tmp_path):
    paths, run = component_shards(tmp_path)
    beton = tmp_path / "component_dataset.beton"
    finished = gather_in_subprocess(paths, run, beton, "full_disk")
    assert finished.returncode == 3, finished.stderr[-2000:]
    assert "MB free on" in finished.stdout and "may not exceed 1048576 bytes" in finished.stdout
    assert_no_leftovers(tmp_path)


def test_a_killed_writers_temporary_file_is_removed_by_the_next_writer(tmp_path):
    target = tmp_path / "component_dataset.beton"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    leftover = tmp_path / f".{target.name}.tmp{int(dead.stdout)}{target.suffix}"
    leftover.write_bytes(b"x" * 1000)
    mine = tmp_path / f".{target.name}.tmp{os.getpid()}{target.suffix}"
    other_live = tmp_path / f".{target.name}.tmp1{target.suffix}"  # pid 1 always runs
    other_live.write_bytes(b"y")
    with atomic_path(target) as tmp:
        assert tmp == mine and not leftover.exists()
        tmp.write_bytes(b"done")
    assert target.read_bytes() == b"done" and other_live.exists()
    assert remove_stale_temporaries(target) == []


def test_a_truncated_shard_says_what_to_do(tmp_path):
    paths, _ = component_shards(tmp_path)
    truncate(paths[0], 200)
    with pytest.raises(ShardError, match="Delete it and run again") as err:
        read_shard(paths[0])
    assert str(paths[0]) in str(err.value)


def test_identical_saves_give_identical_bytes(tmp_path):
    attributions = Attributions(
        weight=np.ones((3, 2)),
        bias=np.zeros(2),
        lam=np.zeros(2),
        component_names=["a", "b", "c"],
        example_ids=[0, 1],
        meta={"setup": "x"},
    )
    attributions.save(tmp_path / "one.pt")
    attributions.save(tmp_path / "two.pt")
    assert (tmp_path / "one.pt").read_bytes() == (tmp_path / "two.pt").read_bytes()
    assert torch.load(tmp_path / "one.pt", weights_only=True)["component_names"] == ["a", "b", "c"]


def test_identical_figures_give_identical_bytes(tmp_path):
    import time

    import matplotlib.pyplot as plt

    from coar_replication.plots import save_figure

    for name in ("one", "two"):  # the same figure as PDF and PNG in one call, twice
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        save_figure(fig, [tmp_path / f"{name}.pdf", tmp_path / f"{name}.png"])
        time.sleep(1.1)  # a date in the file would now differ
    for suffix in (".pdf", ".png"):
        one, two = (tmp_path / f"{name}{suffix}" for name in ("one", "two"))
        assert one.read_bytes() == two.read_bytes()
    assert (tmp_path / "one.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"matplotlib" not in (tmp_path / "one.png").read_bytes()  # no Software field
