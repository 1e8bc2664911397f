"""Attribution accuracy: correlation between true and predicted ablated outputs.

Protocol (paper, "Evaluating Coar"): for each alpha_test, fresh masks; per
example, the Pearson correlation across masks between the true outputs and a
method's predictions; the mean over examples with a bootstrap 95% interval.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


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
