"""Attribution accuracy: correlation between true and predicted ablated outputs.

Protocol (paper, "Evaluating Coar"): for each alpha_test, fresh masks; per
example, the Pearson correlation across masks between the true outputs and a
method's predictions; the mean over examples with a bootstrap 95% interval.

Undefined and failed examples. An example whose true or predicted outputs do not
vary across the masks (e.g. a baseline whose attributions for it are all zero) has
no correlation: a legitimate outcome, counted (``n_undefined`` of ``n_examples``)
and reported. A summary is never a mean over fewer examples than it has: where any
example is undefined, ``mean_corr``, ``ci_low`` and ``ci_high`` are NaN, so losing
examples can never make a method look better. NaN or inf in the true outputs or in
a method's predictions (its attributions) is a failure, not an undefined
correlation: `evaluate_methods` stops with an error naming the file and examples,
unless those examples are declared missing (``missing``; the published
attributions' counted NaNs), which makes them undefined.

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
    """Mean of the finite values and a percentile bootstrap interval over examples.

    Non-finite values are left out here; a summary must not do that silently:
    `summarize_correlations` counts them and gives NaN instead.
    """
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("no finite correlations to summarise")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(n_boot, values.size))].mean(1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(values.mean()), float(low), float(high)


SUMMARY_COLUMNS = ["mean_corr", "ci_low", "ci_high", "n_examples", "n_undefined"]


def summarize_correlations(
    values: np.ndarray, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> dict:
    """``mean_corr``, ``ci_low``, ``ci_high`` (bootstrap) over every example, with
    ``n_examples`` and ``n_undefined`` (how many have no correlation).

    The mean is over all examples or nothing: with any undefined example the three
    numbers are NaN, so a summary never improves because examples were lost.

    >>> summarize_correlations(np.array([0.9, 0.8, np.nan]))
    {'mean_corr': nan, 'ci_low': nan, 'ci_high': nan, 'n_examples': 3, 'n_undefined': 1}
    """
    values = np.asarray(values, dtype=np.float64)
    n_undefined = int((~np.isfinite(values)).sum())
    if values.size == 0:
        raise ValueError("no examples to summarise")
    if n_undefined:
        mean = low = high = float("nan")
    else:
        mean, low, high = bootstrap_mean_ci(values, n_boot=n_boot, level=level, seed=seed)
    return dict(
        mean_corr=mean, ci_low=low, ci_high=high, n_examples=values.size, n_undefined=n_undefined
    )


def nonfinite_examples(values: np.ndarray) -> np.ndarray:
    """Columns (examples) of a (K, N) array that hold NaN or inf anywhere."""
    values = np.asarray(values, dtype=np.float64)
    return np.flatnonzero(~np.isfinite(values.reshape(-1, values.shape[-1])).all(0))


def check_finite(values: np.ndarray, source: str, what: str, allowed=()) -> None:
    """Fail, naming ``source`` and the examples (columns), if ``values`` (K, N) hold NaN
    or inf in a column that is not one of ``allowed`` (examples declared missing)."""
    bad = np.setdiff1d(nonfinite_examples(values), np.asarray(list(allowed), dtype=np.int64))
    if bad.size:
        raise ValueError(
            f"{source}: {what} hold NaN or inf for {bad.size} of {np.shape(values)[-1]} "
            f"examples (examples {bad[:10].tolist()}{' ...' if bad.size > 10 else ''}); that "
            "is a failure, not an undefined correlation: regenerate the file"
        )


def evaluate_methods(
    methods: dict,
    outputs_paths: list,
    n_boot: int = 1000,
    seed: int = 0,
    *,
    sources: dict | None = None,
    missing: dict | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score every method's predictions against true outputs saved per alpha_test.

    `methods` maps a method name to an object with ``predict(masks) -> (K, N)``;
    each outputs file holds ``alpha``, ``masks`` (K, |C|) and ``outputs`` (K, N).
    Returns the summary (method, alpha_test, mean_corr, ci_low, ci_high, n_examples,
    n_undefined; see `summarize_correlations`) and the per-example correlations (NaN
    where an example has none).

    NaN or inf in an outputs file, or in a method's predictions, raises a ValueError
    naming the file (``sources`` maps a method to its attributions file) and examples;
    ``missing`` maps a method to the example columns known to lack attributions
    (counted as undefined instead).
    """
    sources, missing = sources or {}, missing or {}
    summary, per_example = [], []
    for path in outputs_paths:
        with np.load(path) as data:
            alpha, masks, true = float(data["alpha"]), data["masks"], data["outputs"]
        check_finite(true, str(path), "the true outputs")
        for name, method in methods.items():
            if method.weight.shape != (masks.shape[1], true.shape[1]):
                raise ValueError(
                    f"method {name!r}: attributions of shape {method.weight.shape} do not fit "
                    f"{path} ({masks.shape[1]} components, {true.shape[1]} examples)"
                )
            with np.errstate(invalid="ignore", over="ignore"):
                pred = method.predict(masks)
            source = sources.get(name, f"method {name!r}")
            check_finite(pred, str(source), f"the predictions on {path}", missing.get(name, ()))
            corr = per_example_correlation(true, pred)
            corr[nonfinite_examples(pred)] = np.nan
            numbers = summarize_correlations(corr, n_boot=n_boot, seed=seed)
            summary.append(dict(method=name, alpha_test=alpha, **numbers))
            per_example.append(
                pd.DataFrame(
                    dict(method=name, alpha_test=alpha, example=np.arange(len(corr)), corr=corr)
                )
            )
    return pd.DataFrame(summary), pd.concat(per_example, ignore_index=True)


def undefined_report(summary: pd.DataFrame, per_example: pd.DataFrame) -> list[str]:
    """One line per (method, alpha_test) with undefined correlations: how many, which."""
    lines = []
    for r in summary[summary["n_undefined"] > 0].itertuples():
        rows = per_example[
            (per_example["method"] == r.method) & (per_example["alpha_test"] == r.alpha_test)
        ]
        examples = rows["example"][~np.isfinite(rows["corr"])].tolist()
        lines.append(
            f"method {r.method!r} at alpha_test {r.alpha_test:g}: {r.n_undefined} of "
            f"{r.n_examples} examples have no correlation (outputs or predictions constant "
            f"across the masks; examples {examples[:10]}{' ...' if len(examples) > 10 else ''}); "
            "its mean_corr, ci_low and ci_high are NaN"
        )
    return lines
