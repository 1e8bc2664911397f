import numpy as np
import pytest

from coar.masks import sample_masks, shard_rows


def test_masks_are_a_pure_function_of_seed_stream_and_row():
    a = sample_masks(7, "train", range(50), 300, 0.1)
    b = sample_masks(7, "train", range(50), 300, 0.1)
    np.testing.assert_array_equal(a, b)


def test_shards_in_any_order_equal_one_draw():
    whole = sample_masks(3, "train", range(100), 64, 0.2)
    shards = [shard_rows(100, 3, k) for k in (2, 0, 1)]
    parts = {r.start: sample_masks(3, "train", r, 64, 0.2) for r in shards}
    stitched = np.concatenate([parts[start] for start in sorted(parts)])
    np.testing.assert_array_equal(whole, stitched)


def test_seed_and_stream_change_the_masks():
    base = sample_masks(0, "train", range(20), 500, 0.1)
    assert not np.array_equal(base, sample_masks(1, "train", range(20), 500, 0.1))
    assert not np.array_equal(base, sample_masks(0, "eval/0.1", range(20), 500, 0.1))


def test_ablation_fraction_matches_alpha():
    masks = sample_masks(0, "train", range(400), 1000, 0.1)
    assert masks.dtype == bool
    assert abs((~masks).mean() - 0.1) < 0.005


def test_shards_tile_rows_exactly():
    rows = [r for k in range(7) for r in shard_rows(1003, 7, k)]
    assert rows == list(range(1003))


@pytest.mark.parametrize("alpha", [-0.1, 1.0, 1.5])
def test_bad_alpha_is_rejected(alpha):
    with pytest.raises(ValueError, match="alpha"):
        sample_masks(0, "train", range(2), 10, alpha)
