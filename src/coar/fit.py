"""The `fit` stage: stream a component dataset, fit, validate, refit on all rows."""

from __future__ import annotations

import logging
import time

import numpy as np

from coar.attributions import Attributions
from coar.regression import GramStats, correlation_from_stats, least_squares
from coar.store import iter_beton

log = logging.getLogger(__name__)

SOLVERS = {"least_squares": least_squares}


def validation_rows(n_rows: int, val_fraction: float, seed: int) -> np.ndarray:
    """Boolean (n_rows,): True for the held-out rows (a seeded random subset)."""
    return np.random.default_rng(seed).random(n_rows) < val_fraction


def beton_length(beton_path) -> int:
    from ffcv.reader import Reader

    return int(Reader(str(beton_path)).num_samples)


def fit_from_beton(
    beton_path,
    *,
    component_names: list[str],
    example_ids: list[int],
    fit_config: dict,
    meta: dict,
    batch_size: int = 4096,
) -> Attributions:
    solver = SOLVERS[fit_config["solver"]]
    n_rows = beton_length(beton_path)
    is_val = validation_rows(n_rows, fit_config["val_fraction"], fit_config["seed"])
    p, n = len(component_names), len(example_ids)
    train, val = GramStats.zeros(p, n), GramStats.zeros(p, n)
    start = time.perf_counter()
    for masks, targets, idx in iter_beton(beton_path, batch_size=batch_size):
        if masks.shape[1] != p or targets.shape[1] != n:
            raise ValueError(
                f"{beton_path}: rows have {masks.shape[1]} components x {targets.shape[1]} "
                f"examples, the setup has {p} x {n}"
            )
        held_out = is_val[idx]
        train.update(masks[~held_out], targets[~held_out])
        val.update(masks[held_out], targets[held_out])
    log.info(
        "streamed %d rows (%d train, %d validation) in %.2f s",
        n_rows,
        train.n,
        val.n,
        time.perf_counter() - start,
    )
    if train.n + val.n != n_rows:
        raise ValueError(f"{beton_path}: read {train.n + val.n} rows, header says {n_rows}")

    start = time.perf_counter()
    val_corr = correlation_from_stats(solver(train), val)
    final = solver(train + val)
    log.info(
        "solved in %.2f s; validation correlation mean %.4f, median %.4f "
        "(%d examples with constant outputs)",
        time.perf_counter() - start,
        np.nanmean(val_corr),
        np.nanmedian(val_corr),
        int(np.isnan(val_corr).sum()),
    )
    return Attributions(
        weight=final.weight,
        bias=final.bias,
        component_names=component_names,
        example_ids=example_ids,
        meta={
            **meta,
            "solver": fit_config["solver"],
            "n_rows": n_rows,
            "n_val_rows": val.n,
            "val_corr_mean": float(np.nanmean(val_corr)),
            "val_corr": [float(c) for c in val_corr],
        },
    )
