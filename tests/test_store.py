import numpy as np
import pytest

from coar.attributions import Attributions
from coar.store import (
    ShardError,
    check_shards,
    gather_to_beton,
    iter_beton,
    run_id,
    write_shard,
)

RUN = run_id(0, "train", 0.3, 30)


def make_shards(tmp_path, n_rows=30, bounds=(0, 12, 30), p=9, n=4):
    rng = np.random.default_rng(0)
    masks = rng.random((n_rows, p)) > 0.3
    outputs = rng.standard_normal((n_rows, n)).astype(np.float32)
    paths = []
    for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        path = tmp_path / f"shard_{k}.npz"
        write_shard(path, np.arange(a, b), masks[a:b], outputs[a:b], RUN)
        paths.append(path)
    return paths, masks, outputs


def test_gather_roundtrip_through_ffcv(tmp_path):
    paths, masks, outputs = make_shards(tmp_path)
    beton = tmp_path / "data.beton"
    gather_to_beton(paths[::-1], RUN, beton)  # shard order does not matter
    got = [batch for batch in iter_beton(beton, batch_size=8)]
    got_masks, got_outputs, idx = (np.concatenate(parts) for parts in zip(*got, strict=True))
    np.testing.assert_array_equal(idx, np.arange(30))
    np.testing.assert_array_equal(got_masks, masks)
    np.testing.assert_array_equal(got_outputs, outputs)
    assert got_masks.dtype == bool and got_outputs.dtype == np.float32


def test_missing_rows_are_refused_and_no_beton_written(tmp_path):
    paths, _, _ = make_shards(tmp_path)
    beton = tmp_path / "data.beton"
    with pytest.raises(ShardError, match="18 missing"):
        gather_to_beton(paths[:1], RUN, beton)
    assert not beton.exists() and list(tmp_path.glob("*.beton*")) == []


def test_overlapping_shards_are_refused(tmp_path):
    paths, _, _ = make_shards(tmp_path, bounds=(0, 12, 30))
    extra = tmp_path / "extra.npz"
    write_shard(extra, np.arange(10, 12), np.ones((2, 9), bool), np.zeros((2, 4), np.float32), RUN)
    with pytest.raises(ShardError, match="2 duplicated"):
        check_shards([*paths, extra], RUN)


def test_truncated_shard_is_named(tmp_path):
    paths, _, _ = make_shards(tmp_path)
    paths[1].write_bytes(paths[1].read_bytes()[:100])
    with pytest.raises(ShardError, match="shard_1.npz"):
        check_shards(paths, RUN)


def test_shards_of_another_run_are_refused(tmp_path):
    paths, _, _ = make_shards(tmp_path)
    other = run_id(0, "train", 0.1, 30)
    write_shard(
        paths[1], np.arange(12, 30), np.ones((18, 9), bool), np.zeros((18, 4), np.float32), other
    )
    with pytest.raises(ShardError, match="shard_1.npz: shard of run"):
        check_shards(paths, RUN)


def test_non_finite_outputs_never_reach_a_shard(tmp_path):
    outputs = np.zeros((3, 2), np.float32)
    outputs[1, 0] = np.nan
    with pytest.raises(ShardError, match=r"rows \[1\]"):
        write_shard(tmp_path / "s.npz", np.arange(3), np.ones((3, 4), bool), outputs, RUN)
    assert not (tmp_path / "s.npz").exists()


def test_attributions_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    attr = Attributions(
        rng.standard_normal((6, 3)),
        rng.standard_normal(3),
        [f"m[{i}]" for i in range(6)],
        [4, 5, 6],
        meta={"setup": "x"},
    )
    attr.save(tmp_path / "a.pt")
    back = Attributions.load(tmp_path / "a.pt")
    np.testing.assert_allclose(back.weight, attr.weight, rtol=1e-6)
    assert back.component_names == attr.component_names and back.meta == {"setup": "x"}
    masks = rng.random((4, 6)) > 0.5
    np.testing.assert_allclose(back.predict(masks), attr.predict(masks), rtol=1e-5)
