"""The `fit` stage: stream a component dataset, fit, validate, refit on all rows.

The rows are split once (seeded) into training and validation rows. Least
squares is fitted on the training rows only to report a validation
correlation; ridge and lasso pick lam per example by validation MSE along their
grid. Every solver then refits on all rows (at each example's chosen lam).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import numpy as np
import torch
from tqdm import tqdm

from coar.attributions import Attributions
from coar.cost import fit_cost, format_seconds
from coar.regression import (
    GramStats,
    LinearFit,
    RidgeBasis,
    correlation_from_stats,
    lasso,
    lasso_grid,
    lasso_path,
    least_squares,
    ridge,
    ridge_grid,
    ridge_path,
)
from coar.store import check_component_dataset, iter_beton

log = logging.getLogger(__name__)

SOLVERS = ("least_squares", "ridge", "lasso")
# Defaults of the optional fit settings (config keys under setups.<name>.fit).
DEFAULT_GRIDS = {
    "ridge": {"n": 20, "min_ratio": 1e-3, "max_ratio": 10.0},
    "lasso": {"n": 20, "min_ratio": 1e-3},
}
DEFAULT_LASSO = {"tol": 1e-5, "max_iter": 500, "patience": 3}


def validation_rows(n_rows: int, val_fraction: float, seed: int) -> np.ndarray:
    """Boolean (n_rows,): True for the held-out rows (a seeded random subset)."""
    return np.random.default_rng(seed).random(n_rows) < val_fraction


def fit_stats(train: GramStats, val: GramStats | None, fit_config: dict) -> tuple[LinearFit, dict]:
    """Fit with `fit_config["solver"]`: select on (train, val), refit on train + val.

    `train` is summed with `val` in place (no second p x p matrix). Returns the
    final fit and diagnostics: the validation correlation per target of the fit
    on the training rows (NaN where undefined) and the lambda grid used.
    """
    solver = fit_config["solver"]
    if solver not in SOLVERS:
        raise ValueError(f"fit.solver {solver!r}: choose one of {SOLVERS}")
    has_val = val is not None and val.n > 0
    if solver != "least_squares" and not has_val:
        raise ValueError(
            f"fit.solver {solver} picks lambda on validation rows: set val_fraction > 0"
        )
    grid_config = {**DEFAULT_GRIDS.get(solver, {}), **fit_config.get("lambda_grid", {})}
    diagnostics: dict = {}
    work_device = train.device
    if has_val and work_device.type == "cuda" and not _room_for_three_grams(train):
        # Solving needs the training Gram and a factor (or centred copy) side by side; the
        # validation Gram waits in host memory and is streamed back block by block.
        log.info("parking the validation Gram matrix in host memory to make room")
        val = val.to("cpu")
    if solver == "least_squares":
        selected = least_squares(train) if has_val else None
        final_args: dict = {}
    elif solver == "ridge":
        grid = ridge_grid(
            train, grid_config["n"], grid_config["min_ratio"], grid_config["max_ratio"]
        )
        basis = RidgeBasis.of(train)
        lam = grid[np.argmin(ridge_path(basis, val, grid), axis=0)]
        selected = basis.fit(lam)
        del basis
        final_args = {"lam": lam}
        diagnostics["lambda_grid"] = grid.tolist()
    else:
        settings = {**DEFAULT_LASSO, **{k: fit_config[k] for k in DEFAULT_LASSO if k in fit_config}}
        grid = lasso_grid(train, grid_config["n"], grid_config["min_ratio"])
        path = lasso_path(train, val, grid, **settings)
        lam = path["lam"]
        weight = path["weight"].cpu().to(torch.float64)
        selected = LinearFit(
            weight=weight.numpy(),
            bias=(train.y_mean().cpu() - train.x_mean().cpu() @ weight).numpy(),
        )
        final_args = {
            "lam": lam.cpu().numpy(),
            "start": path["weight"],
            "tol": settings["tol"],
            "max_iter": settings["max_iter"],
        }
        ratios = np.geomspace(1, grid_config["min_ratio"], grid_config["n"])
        diagnostics["lambda_grid_ratios"] = ratios.tolist()
        diagnostics["lasso_iterations"] = path["iterations"]
    if has_val:
        diagnostics["val_corr"] = correlation_from_stats(selected, val, device=work_device)
        train.add_(val)
    if solver == "least_squares":
        final = least_squares(train)
    elif solver == "ridge":
        final = ridge(train, **final_args)
    else:
        final = lasso(train, **final_args)
    return final, diagnostics


def _room_for_three_grams(stats: GramStats) -> bool:
    gram_bytes = stats.xtx.numel() * stats.xtx.element_size()
    total = torch.cuda.get_device_properties(stats.device).total_memory
    return 3 * gram_bytes + 4 * stats.xty.numel() * stats.xty.element_size() < 0.9 * total


def accumulate(
    batches: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]],
    is_val: np.ndarray,
    p: int,
    targets: slice,
    n_targets: int,
    device,
    source: str = "component dataset",
    progress: bool = False,
) -> tuple[GramStats, GramStats]:
    """One pass over (masks, outputs, row index) batches: statistics of the training and
    the validation rows. Every row must come exactly once, with finite outputs."""
    width = len(range(*targets.indices(n_targets)))
    train, val = GramStats.zeros(p, width, device), GramStats.zeros(p, width, device)
    bar = tqdm(  # rows/s is the throughput of streaming the rows into the Gram matrices
        total=len(is_val), desc=f"fit: reading {source}", unit="row", disable=not progress
    )
    seen = np.zeros(len(is_val), dtype=bool)
    for masks, outputs, idx in batches:
        if masks.shape[1] != p or outputs.shape[1] != n_targets:
            raise ValueError(
                f"{source}: rows have {masks.shape[1]} components x {outputs.shape[1]} "
                f"examples, expected {p} x {n_targets}"
            )
        if idx.size and (idx.min() < 0 or idx.max() >= len(seen)):
            raise ValueError(f"{source}: row indices outside 0..{len(seen) - 1}")
        if seen[idx].any() or len(np.unique(idx)) != len(idx):
            raise ValueError(f"{source}: rows read twice (first {idx[seen[idx]][:5].tolist()})")
        seen[idx] = True
        finite = np.isfinite(outputs).all(axis=1)
        if not finite.all():
            raise ValueError(f"{source}: non-finite outputs in rows {idx[~finite][:10].tolist()}")
        held_out = is_val[idx]
        outputs = outputs[:, targets]
        train.update(masks[~held_out], outputs[~held_out])
        if held_out.any():
            val.update(masks[held_out], outputs[held_out])
        bar.update(len(idx))
    bar.close()
    return train, val


def fit_from_batches(
    batches: Callable[[], Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]],
    n_rows: int,
    *,
    component_names: list[str],
    example_ids: list[int],
    fit_config: dict,
    meta: dict,
    device="cpu",
    source: str = "component dataset",
    progress: bool = False,
) -> Attributions:
    """Fit every example's linear model from a component dataset of ``n_rows`` rows.

    ``batches()`` starts a pass over the rows: (keep-masks, outputs, row indices)
    batches, every row once. ``fit_config`` holds ``solver`` (one of `SOLVERS`),
    ``val_fraction`` and ``seed`` (the held-out rows), and optionally ``lambda_grid``,
    the lasso settings and ``target_chunk``: examples are then fitted that many at a
    time, one pass each, so that X^T Y (|C| x chunk) bounds the memory.
    """
    device = torch.device(device)
    p, n = len(component_names), len(example_ids)
    if p == 0 or n == 0:
        raise ValueError(
            f"{source}: nothing to fit ({p} components, {n} examples): the component spec "
            "or the examples are empty"
        )
    is_val = validation_rows(n_rows, fit_config["val_fraction"], fit_config["seed"])
    chunk = fit_config.get("target_chunk") or n
    solver = fit_config["solver"]
    cost = fit_cost(p, n_rows, min(chunk, n), solver, device, fit_config["val_fraction"])
    log.info("%s: projected %s per pass (%d passes)", source, cost, -(-n // chunk))
    weights, biases, lams, val_corrs = [], [], [], []
    diagnostics: dict = {}
    for first in range(0, n, chunk):
        targets = slice(first, min(first + chunk, n))
        start = time.perf_counter()
        train, val = accumulate(
            batches(), is_val, p, targets, n, device, source=source, progress=progress
        )
        if train.n + val.n != n_rows:
            raise ValueError(f"{source}: read {train.n + val.n} rows, expected {n_rows}")
        n_train, n_val = train.n, val.n
        log.info(
            "examples %d..%d: streamed %d rows (%d train, %d validation) on %s in %.2f s",
            targets.start,
            targets.stop - 1,
            n_rows,
            n_train,
            n_val,
            device,
            time.perf_counter() - start,
        )
        start = time.perf_counter()
        # One bar for the solve, which is one long factorisation: it shows that the fit
        # runs, since when, and what was projected.
        solving = tqdm(
            total=1,
            desc=f"fit: solving {solver} for {p:,} components",
            unit="solve",
            disable=not progress,
            postfix=f"{format_seconds(cost.seconds)} projected",
        )
        final, diagnostics = fit_stats(train, val, fit_config)
        solving.update(1)
        solving.close()
        del train, val
        val_corr = diagnostics.pop("val_corr", np.full(targets.stop - targets.start, np.nan))
        log.info(
            "%s solved in %.2f s; validation correlation mean %.4f, median %.4f "
            "(%d examples without one)",
            fit_config["solver"],
            time.perf_counter() - start,
            np.nanmean(val_corr) if np.isfinite(val_corr).any() else float("nan"),
            np.nanmedian(val_corr) if np.isfinite(val_corr).any() else float("nan"),
            int(np.isnan(val_corr).sum()),
        )
        weights.append(final.weight)
        biases.append(final.bias)
        lams.append(final.lam)
        val_corrs.append(val_corr)
    val_corr = np.concatenate(val_corrs)
    weight, bias = np.concatenate(weights, axis=1), np.concatenate(biases)
    finite = np.isfinite(weight).all(axis=0) & np.isfinite(bias)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValueError(
            f"{source}: the fit gave non-finite attributions for {len(bad)} examples "
            f"(positions {bad[:10].tolist()}); check the solver settings (fit.solver, "
            "lambda_grid) and the component dataset"
        )
    return Attributions(
        weight=weight,
        bias=bias,
        lam=np.concatenate(lams).astype(np.float32),
        component_names=component_names,
        example_ids=example_ids,
        meta={
            **meta,
            "solver": fit_config["solver"],
            "fit_config": dict(fit_config),
            "device": str(device),
            "n_rows": n_rows,
            "n_val_rows": n_val,
            "val_corr_mean": float(np.nanmean(val_corr)) if np.isfinite(val_corr).any() else None,
            "val_corr": [float(c) for c in val_corr],
            **diagnostics,
        },
    )


def fit_from_beton(beton_path, *, batch_size: int = 4096, **kwargs) -> Attributions:
    """`fit_from_batches` over a gathered component dataset (FFCV beton, see
    `coar.store`), checked against its integrity record first; keyword arguments as
    there."""
    n_rows = check_component_dataset(beton_path)["rows"]
    return fit_from_batches(
        lambda: iter_beton(beton_path, batch_size=batch_size),
        n_rows,
        source=str(beton_path),
        **kwargs,
    )
