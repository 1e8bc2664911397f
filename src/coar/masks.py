"""Deterministic random ablation masks.

Mask row i of a stream is a pure function of (seed, stream, i), so shards can
be drawn in any order on any machine and re-drawn bit-identically. Masks are
keep-vectors: True = component kept, False = ablated (probability alpha).
"""

from __future__ import annotations

import zlib

import numpy as np


def stream_id(name: str) -> int:
    """A stable integer for a named mask stream (e.g. 'train', 'eval/0.1')."""
    return zlib.crc32(name.encode())


def sample_masks(seed: int, stream: str, rows, n_components: int, alpha: float) -> np.ndarray:
    """Keep-masks for the given row indices: bool array (len(rows), n_components).

    >>> masks = sample_masks(seed=0, stream="train", rows=[0, 1], n_components=5, alpha=0.4)
    >>> masks.shape, masks.dtype
    ((2, 5), dtype('bool'))
    >>> bool((sample_masks(0, "train", [1], 5, 0.4) == masks[1]).all())  # row 1 alone
    True
    """
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"ablation fraction alpha must be in [0, 1), got {alpha}")
    key = stream_id(stream)
    rows = np.asarray(rows, dtype=np.int64)
    out = np.empty((len(rows), n_components), dtype=bool)
    for i, row in enumerate(rows):
        rng = np.random.default_rng([int(seed), key, int(row)])
        out[i] = rng.random(n_components) >= alpha
    return out


def shard_rows(n_rows: int, n_shards: int, shard: int) -> range:
    """Contiguous row range of one shard; shards cover 0..n_rows-1 exactly once."""
    if not 0 <= shard < n_shards:
        raise ValueError(f"shard {shard} out of range for {n_shards} shards")
    bounds = np.linspace(0, n_rows, n_shards + 1).round().astype(int)
    return range(int(bounds[shard]), int(bounds[shard + 1]))
