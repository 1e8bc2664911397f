"""How many ablations does each solver need? Held-out correlation against m.

The first m rows of a component dataset are a random sample of m masks (rows
are i.i.d. draws), so one pass over the dataset gives the statistics of every
prefix: we snapshot them at each m. Each solver then fits exactly as the `fit`
stage does (ridge and lasso pick lambda on the validation share of those m rows,
then refit on all m), and is scored by the paper's protocol on the setup's fresh
evaluation masks at alpha_test = alpha_train.
"""

from __future__ import annotations

import copy
import logging
import time

import numpy as np
import pandas as pd

from coar.evaluation import per_example_correlation, summarize_correlations
from coar.fit import fit_stats, validation_rows
from coar.regression import GramStats
from coar.store import check_component_dataset, iter_beton

log = logging.getLogger(__name__)


def m_grid(fractions, n_rows: int) -> list[int]:
    """Row counts for fractions of the component dataset (at least 10 rows each)."""
    m_values = sorted({max(10, round(f * n_rows)) for f in fractions})
    if m_values[-1] > n_rows:
        raise ValueError(f"sample_efficiency.fractions give m up to {m_values[-1]} > {n_rows} rows")
    return m_values


def prefix_statistics(
    beton_path, m_values, val_fraction: float, seed: int, batch_size=4096, device="cpu"
) -> dict[int, tuple[GramStats, GramStats]]:
    """(train, validation) statistics of rows 0..m-1 for every m, in one pass."""
    n_rows = check_component_dataset(beton_path)["rows"]
    m_values = sorted(set(int(m) for m in m_values))
    if m_values[-1] > n_rows or m_values[0] < 2:
        raise ValueError(f"m must lie in 2..{n_rows} (rows of {beton_path}), got {m_values}")
    is_val = validation_rows(n_rows, val_fraction, seed)
    train = val = None
    snapshots, pending = {}, list(m_values)
    for masks, outputs, idx in iter_beton(beton_path, batch_size=batch_size):
        if train is None:
            train = GramStats.zeros(masks.shape[1], outputs.shape[1], device)
            val = GramStats.zeros(masks.shape[1], outputs.shape[1], device)
        if (idx != np.arange(idx[0], idx[0] + len(idx))).any():
            raise ValueError(f"{beton_path}: rows are not in order")
        start = 0
        while start < len(idx):
            # rows up to the next snapshot (or the end of this batch)
            stop = len(idx) if not pending else min(len(idx), pending[0] - int(idx[0]))
            rows = slice(start, stop)
            held_out = is_val[idx[rows]]
            train.update(masks[rows][~held_out], outputs[rows][~held_out])
            val.update(masks[rows][held_out], outputs[rows][held_out])
            start = stop
            if pending and train.n + val.n == pending[0]:
                snapshots[pending.pop(0)] = (copy.deepcopy(train), copy.deepcopy(val))
        if not pending:
            break
    return snapshots


def sample_efficiency(
    beton_path,
    eval_outputs_path,
    *,
    m_values,
    solvers,
    fit_config: dict,
    n_bootstrap: int = 1000,
    seed: int = 0,
    device="cpu",
) -> pd.DataFrame:
    """One row per (solver, m): mean held-out correlation with a bootstrap interval, and
    how many examples had none (``n_undefined`` of ``n_examples``; a fit that predicts a
    constant, e.g. a lasso with all weights zero at small m). As in the evaluation, a
    mean over fewer examples is never given: with any undefined example it is NaN."""
    with np.load(eval_outputs_path) as data:
        alpha, masks, true = float(data["alpha"]), data["masks"], data["outputs"]
    snapshots = prefix_statistics(
        beton_path, m_values, fit_config["val_fraction"], fit_config["seed"], device=device
    )
    rows = []
    for m, (train, val) in snapshots.items():
        for solver in solvers:
            start = time.perf_counter()
            fit, diagnostics = fit_stats(
                copy.deepcopy(train), copy.deepcopy(val), {**fit_config, "solver": solver}
            )
            corr = per_example_correlation(true, fit.predict(masks))
            numbers = summarize_correlations(corr, n_boot=n_bootstrap, seed=seed)
            rows.append(
                dict(
                    solver=solver,
                    m=m,
                    alpha_test=alpha,
                    mean_corr=numbers["mean_corr"],
                    ci_low=numbers["ci_low"],
                    ci_high=numbers["ci_high"],
                    median_lambda=float(np.median(fit.lam)),
                    val_corr=float(np.nanmean(diagnostics["val_corr"])),
                    n_examples=numbers["n_examples"],
                    n_undefined=numbers["n_undefined"],
                )
            )
            log.info(  # the time goes to the log: the table holds only what reruns repeat
                "m=%d %s: held-out correlation %.4f (%d of %d examples undefined), %.2f s",
                m,
                solver,
                numbers["mean_corr"],
                numbers["n_undefined"],
                numbers["n_examples"],
                time.perf_counter() - start,
            )
    return pd.DataFrame(rows)


def ablations_needed(table: pd.DataFrame, reference_solver: str = "least_squares") -> pd.DataFrame:
    """Per solver, the smallest m whose mean correlation reaches the reference solver's at
    the largest m (NaN if none does), also as a fraction of that largest m."""
    m_full = table["m"].max()
    target = float(table.query("solver == @reference_solver and m == @m_full")["mean_corr"].iloc[0])
    rows = []
    for solver, group in table.groupby("solver", sort=False):
        group = group.sort_values("m")
        reached = group[group["mean_corr"] >= target]
        m_needed = int(reached["m"].iloc[0]) if len(reached) else np.nan
        m_crossing = np.nan  # linear in log m between the grid points around the crossing
        if len(reached) and reached.index[0] != group.index[0]:
            before = group[group["m"] < m_needed].iloc[-1]
            weight = (target - before["mean_corr"]) / (
                reached["mean_corr"].iloc[0] - before["mean_corr"]
            )
            m_crossing = float(
                np.exp(np.log(before["m"]) + weight * (np.log(m_needed) - np.log(before["m"])))
            )
        at_quarter = group.iloc[(group["m"] - m_full / 4).abs().argsort()[:1]]
        rows.append(
            dict(
                solver=solver,
                target_corr=target,
                m_full=int(m_full),
                m_needed=m_needed,
                m_crossing_interpolated=m_crossing,
                fraction_of_full=m_needed / m_full,
                m_near_quarter=int(at_quarter["m"].iloc[0]),
                corr_near_quarter=float(at_quarter["mean_corr"].iloc[0]),
                gap_near_quarter=float(at_quarter["mean_corr"].iloc[0]) - target,
            )
        )
    return pd.DataFrame(rows)


def least_squares_equivalent_m(table: pd.DataFrame) -> np.ndarray:
    """Per row, the m at which least squares reaches that row's correlation (linear in
    log m between least squares' grid points; NaN outside its range): how many
    ablations least squares needs for what the row's solver gets from m."""
    ls = table[table["solver"] == "least_squares"].sort_values("m")
    corr, log_m = ls["mean_corr"].to_numpy(), np.log(ls["m"].to_numpy())
    out = np.full(len(table), np.nan)
    for k, value in enumerate(table["mean_corr"].to_numpy()):
        above = np.flatnonzero(corr >= value)
        if not len(above) or value < corr[0]:
            continue
        j = above[0]
        if j == 0:
            out[k] = float(np.exp(log_m[0]))
            continue
        weight = (value - corr[j - 1]) / (corr[j] - corr[j - 1])
        out[k] = float(np.exp(log_m[j - 1] + weight * (log_m[j] - log_m[j - 1])))
    return out
