"""Attribution accuracy: correlation between true and predicted ablated outputs.

Protocol (paper, "Evaluating Coar"): for each alpha_test, fresh masks; per
example, the Pearson correlation across masks between the true outputs and a
method's predictions; the mean over examples with a bootstrap 95% interval.

Fresh means never used for fitting: evaluation masks come from their own
random stream, rows that happen to equal a training mask (possible only with
few components) are skipped when drawing, and `check_fresh_masks` verifies the
final masks against the training shards themselves.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from coar.masks import sample_masks
from coar.store import read_shard


def mask_keys(masks: np.ndarray) -> set[bytes]:
    """A hashable key per keep-mask row (bit-packed), for exact set membership."""
    packed = np.packbits(np.asarray(masks, dtype=bool), axis=1)
    return {row.tobytes() for row in packed}


def stream_mask_keys(run: dict, n_components: int, chunk: int = 1024) -> set[bytes]:
    """Keys of every mask of a run (seed, stream, alpha, n_rows), redrawn chunk by chunk."""
    keys: set[bytes] = set()
    for start in range(0, run["n_rows"], chunk):
        rows = range(start, min(run["n_rows"], start + chunk))
        keys |= mask_keys(
            sample_masks(run["seed"], run["stream"], rows, n_components, run["alpha"])
        )
    return keys


def fresh_mask_rows(
    seed: int, stream: str, n_masks: int, n_components: int, alpha: float, exclude: set[bytes]
) -> np.ndarray:
    """The first `n_masks` rows of a mask stream whose masks are not in `exclude`."""
    rows: list[int] = []
    start = 0
    while len(rows) < n_masks:
        candidates = np.arange(start, start + 2 * n_masks)
        masks = sample_masks(seed, stream, candidates, n_components, alpha)
        keys = np.packbits(masks, axis=1)
        fresh = [key.tobytes() not in exclude for key in keys]
        rows += candidates[fresh].tolist()
        start += len(candidates)
        if start > 1000 * n_masks:
            raise ValueError(
                f"mask stream {stream!r} at alpha {alpha}: fewer than {n_masks} masks in "
                f"{start} draws differ from the training masks; with {n_components} "
                "components there are too few distinct masks for a fresh evaluation"
            )
    return np.asarray(rows[:n_masks], dtype=np.int64)


def check_fresh_masks(masks: np.ndarray, training_keys: set[bytes], source: str) -> None:
    """Fail, naming the file and rows, if any evaluation mask was also a training mask."""
    packed = np.packbits(np.asarray(masks, dtype=bool), axis=1)
    shared = [i for i, row in enumerate(packed) if row.tobytes() in training_keys]
    if shared:
        raise ValueError(
            f"{source}: evaluation mask rows {shared[:10]} equal training masks; evaluation "
            "masks must be fresh. Delete the file and rerun its evaluation_outputs job "
            "(it skips training masks), or change setups.<setup>.evaluation.seed"
        )


def training_mask_keys(shard_paths: Iterable) -> set[bytes]:
    """Keys of every mask in the training shards (the component dataset as written)."""
    keys: set[bytes] = set()
    for path in shard_paths:
        keys |= mask_keys(read_shard(path)["masks"])
    return keys


def per_example_correlation(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Pearson correlation of each column of `true` (K, N) with the same column of `pred`.

    An example whose true or predicted outputs do not vary gets NaN.
    """
    true = np.asarray(true, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    if true.shape != pred.shape:
        raise ValueError(f"true {true.shape} and predicted {pred.shape} outputs differ in shape")
    t = true - true.mean(0)
    p = pred - pred.mean(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = (t * p).sum(0) / np.sqrt((t * t).sum(0) * (p * p).sum(0))
    constant = (np.ptp(true, axis=0) == 0) | (np.ptp(pred, axis=0) == 0)
    corr[constant] = np.nan
    return corr


def bootstrap_mean_ci(
    values: np.ndarray, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of the finite values and a percentile bootstrap interval over examples."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("no finite correlations to summarise")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(n_boot, values.size))].mean(1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(values.mean()), float(low), float(high)


def evaluate_methods(
    methods: dict, outputs_paths: list, n_boot: int = 1000, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score every method's predictions against true outputs saved per alpha_test.

    `methods` maps a method name to an object with ``predict(masks) -> (K, N)``;
    each outputs file holds ``alpha``, ``masks`` (K, |C|) and ``outputs`` (K, N).
    Returns the summary (method, alpha_test, mean_corr, ci_low, ci_high) and the
    per-example correlations (NaN where an example's outputs do not vary).
    """
    summary, per_example = [], []
    for path in outputs_paths:
        with np.load(path) as data:
            alpha, masks, true = float(data["alpha"]), data["masks"], data["outputs"]
        for name, method in methods.items():
            if method.weight.shape != (masks.shape[1], true.shape[1]):
                raise ValueError(
                    f"method {name!r}: attributions of shape {method.weight.shape} do not fit "
                    f"{path} ({masks.shape[1]} components, {true.shape[1]} examples)"
                )
            corr = per_example_correlation(true, method.predict(masks))
            mean, low, high = bootstrap_mean_ci(corr, n_boot=n_boot, seed=seed)
            summary.append(
                dict(method=name, alpha_test=alpha, mean_corr=mean, ci_low=low, ci_high=high)
            )
            per_example.append(
                pd.DataFrame(
                    dict(method=name, alpha_test=alpha, example=np.arange(len(corr)), corr=corr)
                )
            )
    return pd.DataFrame(summary), pd.concat(per_example, ignore_index=True)
