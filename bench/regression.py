"""Our regression solvers against scikit-learn's on synthetic Coar-like data, in one run.

    python bench/regression.py --p 2304 --m 50000 --n 10000 --device cuda
    python bench/regression.py --p 288 --m 5000 --n 360 --device cpu      # CPU, reduced

Data: keep-masks with each component kept with probability 1 - alpha (0.95 by
default) and targets with a saturating nonlinearity plus noise, so that no
linear model fits them perfectly. Rows are generated on the device batch by
batch from (seed, stream, batch index): m x |C| never exists in memory.

For each of our solvers it reports the time to stream the sufficient statistics
(`stats_s`, data generation excluded), the time to solve (`solve_s`), the mean
held-out correlation over targets (on `--test-rows` fresh rows) and, on CUDA, the
peak GPU memory. `least_squares` fits all rows (the original's final fit);
`ridge` and `lasso` pick lambda per target on `--val-fraction` of the rows and
refit on all. scikit-learn: LinearRegression on all targets; Lasso at our lasso's
lambdas and LassoCV (same single split, same number of lambdas) on
`--sklearn-targets` targets, timed and extrapolated to all targets.

`--estimate-only` prints the memory plan (bytes per buffer) and exits.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch

from coar.device import describe, resolve_device
from coar.fit import fit_stats
from coar.regression import GramStats, LinearFit, least_squares


class SyntheticCoar:
    """Rows (keep-masks, targets) of a synthetic component dataset, generated per batch."""

    def __init__(self, p: int, n: int, alpha: float, seed: int, device: torch.device):
        self.p, self.n, self.alpha, self.seed, self.device = p, n, alpha, seed, device
        g = torch.Generator(device=device).manual_seed(seed)
        # A few components matter a lot, most a little (as in real attributions).
        weight = torch.randn(p, n, generator=g, device=device) * (0.3 / math.sqrt(alpha * p))
        heavy = torch.rand(p, n, generator=g, device=device) < 0.01
        heavy_scale = 2.0 / math.sqrt(alpha * (1 + 0.01 * p))
        weight += heavy * torch.randn(p, n, generator=g, device=device) * heavy_scale
        self.weight = weight
        self.offset = torch.rand(n, generator=g, device=device) * 4 + 1

    def batch(self, stream: int, index: int, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator(device=self.device).manual_seed(
            self.seed * 1_000_003 + stream * 10_007 + index
        )
        keep = torch.rand(rows, self.p, generator=g, device=self.device) >= self.alpha
        z = (keep.to(torch.float32) - (1 - self.alpha)) @ self.weight
        # Saturating margins (large ablation effects compressed) plus a symmetric part no
        # linear model can capture: the fit is imperfect, as with real margins.
        y = self.offset + 2.0 * torch.tanh(z) + 0.6 * z * z
        y += 0.1 * torch.randn(rows, self.n, generator=g, device=self.device)
        return keep, y

    def batches(self, stream: int, m: int, batch_rows: int):
        for index, start in enumerate(range(0, m, batch_rows)):
            yield self.batch(stream, index, min(batch_rows, m - start))


TRAIN, TEST = 0, 1


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def accumulate(data: SyntheticCoar, m, batch_rows, val_fraction, seed, dtype):
    """Statistics of the training and validation rows; seconds spent in the updates."""
    p, n, device = data.p, data.n, data.device
    train = GramStats.zeros(p, n, device, dtype)
    val = GramStats.zeros(p, n, device, dtype) if val_fraction > 0 else None
    is_val = torch.from_numpy(np.random.default_rng(seed).random(m) < val_fraction).to(device)
    seconds, first = 0.0, 0
    for keep, y in data.batches(TRAIN, m, batch_rows):
        held_out = is_val[first : first + len(keep)]
        first += len(keep)
        synchronize(device)
        start = time.perf_counter()
        if val is None:
            train.update(keep, y)
        else:
            train.update(keep[~held_out], y[~held_out])
            val.update(keep[held_out], y[held_out])
        synchronize(device)
        seconds += time.perf_counter() - start
    return train, val, seconds


def held_out_correlation(fit: LinearFit, data: SyntheticCoar, rows: int, batch_rows: int):
    """Per-target Pearson correlation on fresh rows (the test stream)."""
    device = data.device
    w = torch.from_numpy(fit.weight).to(device, torch.float64)
    b = torch.from_numpy(fit.bias).to(device)
    preds, trues = [], []
    for keep, y in data.batches(TEST, rows, batch_rows):
        preds.append(keep.to(torch.float64) @ w + b)
        trues.append(y.to(torch.float64))
    pred, true = torch.cat(preds), torch.cat(trues)
    pred, true = pred - pred.mean(0), true - true.mean(0)
    corr = (pred * true).sum(0) / torch.sqrt((pred * pred).sum(0) * (true * true).sum(0))
    return corr.cpu().numpy()


def memory_plan(p: int, n: int, batch_rows: int, itemsize: int, val: bool) -> dict:
    """Bytes of the buffers alive at once in each phase of a least-squares fit. While
    solving, the validation Gram waits in host memory when three p x p matrices would not
    fit (see coar.fit.fit_stats); the bench's own least squares uses no validation rows."""
    gram, pn = p * p * itemsize, p * n * itemsize
    bench_only = p * n * 4 + batch_rows * (p + n) * 4  # generator weights, one batch
    stream = (2 if val else 1) * (gram + pn) + bench_only
    solve = 2 * gram + 3 * pn + p * n * 4  # Gram, factor; X^T Y, centred, solution; generator
    return {
        "gram (p x p)": gram,
        "xty (p x N)": pn,
        "streaming phase (grams, xty, batch, generator)": stream,
        "solving phase (gram, factor, xty, centred xty, solution, generator)": solve,
        "peak": max(stream, solve),
    }


def gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.2f} GiB"


def run_ours(args, data, device, dtype, solver):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    val_fraction = 0.0 if solver == "least_squares" else args.val_fraction
    train, val, stats_s = accumulate(data, args.m, args.batch_rows, val_fraction, args.seed, dtype)
    synchronize(device)
    start = time.perf_counter()
    if solver == "least_squares":
        fit, diagnostics = least_squares(train), {}
    else:
        config = {"solver": solver, "lambda_grid": {"n": args.n_lambdas}}
        fit, diagnostics = fit_stats(train, val, config)
    synchronize(device)
    solve_s = time.perf_counter() - start
    del train, val
    corr = held_out_correlation(fit, data, args.test_rows, args.batch_rows)
    row = dict(
        method=f"ours:{solver}",
        stats_s=stats_s,
        solve_s=solve_s,
        total_s=stats_s + solve_s,
        mean_corr=float(np.nanmean(corr)),
        targets=data.n,
    )
    if device.type == "cuda":
        row["peak_gpu_memory"] = gib(torch.cuda.max_memory_allocated(device))
    if "lasso_iterations" in diagnostics:
        row["lasso_iterations"] = int(sum(diagnostics["lasso_iterations"]))
    return row, fit, corr


def materialise(data: SyntheticCoar, stream: int, rows: int, batch_rows: int):
    parts = [(k.cpu().numpy(), y.cpu().numpy()) for k, y in data.batches(stream, rows, batch_rows)]
    return np.concatenate([k for k, _ in parts]), np.concatenate([y for _, y in parts])


def run_sklearn(args, data, lasso_fit: LinearFit | None) -> list[dict]:
    from sklearn.linear_model import Lasso, LassoCV, LinearRegression

    rows = []
    x, y = materialise(data, TRAIN, args.m, args.batch_rows)
    x_test, y_test = materialise(data, TEST, args.test_rows, args.batch_rows)
    x, x_test = x.astype(np.float64), x_test.astype(np.float64)

    def test_corr(pred, true):
        pred, true = pred - pred.mean(0), true - true.mean(0)
        return (pred * true).sum(0) / np.sqrt((pred * pred).sum(0) * (true * true).sum(0))

    start = time.perf_counter()
    ols = LinearRegression().fit(x, y)
    seconds = time.perf_counter() - start
    corr = test_corr(x_test @ ols.coef_.T + ols.intercept_, y_test)
    rows.append(
        dict(
            method="sklearn:LinearRegression",
            total_s=seconds,
            mean_corr=float(corr.mean()),
            targets=data.n,
        )
    )

    subset = np.linspace(0, data.n - 1, min(args.sklearn_targets, data.n)).astype(int)
    is_val = np.random.default_rng(args.seed).random(args.m) < args.val_fraction
    split = [(np.flatnonzero(~is_val), np.flatnonzero(is_val))]
    for name in ("Lasso", "LassoCV"):
        if len(subset) == 0 or (name == "Lasso" and lasso_fit is None):
            continue
        coefs, intercepts, seconds = [], [], 0.0
        for j in subset:
            start = time.perf_counter()
            if name == "Lasso":
                model = Lasso(alpha=float(lasso_fit.lam[j]), tol=1e-4).fit(x, y[:, j])
            else:
                model = LassoCV(alphas=args.n_lambdas, eps=1e-3, cv=split, tol=1e-4, n_jobs=1).fit(
                    x, y[:, j]
                )
            seconds += time.perf_counter() - start
            coefs.append(model.coef_)
            intercepts.append(model.intercept_)
        corr = test_corr(x_test @ np.stack(coefs, 1) + np.array(intercepts), y_test[:, subset])
        rows.append(
            dict(
                method=f"sklearn:{name}" + (" (at our lambdas)" if name == "Lasso" else ""),
                total_s=seconds * data.n / len(subset),
                measured_s=seconds,
                targets=len(subset),
                extrapolated_to=data.n,
                mean_corr=float(corr.mean()),
            )
        )
    return rows, subset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--p", type=int, required=True, help="components")
    parser.add_argument("--m", type=int, required=True, help="ablation rows")
    parser.add_argument("--n", type=int, required=True, help="targets (examples)")
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], default="auto")
    parser.add_argument("--alpha", type=float, default=0.05, help="ablation fraction")
    parser.add_argument("--solvers", default="least_squares,ridge,lasso")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--n-lambdas", type=int, default=20)
    parser.add_argument("--test-rows", type=int, default=2000)
    parser.add_argument("--batch-rows", type=int, default=8192)
    parser.add_argument(
        "--sklearn-targets", type=int, default=10, help="targets for Lasso/LassoCV (0: skip them)"
    )
    parser.add_argument(
        "--sklearn-max-gib",
        type=float,
        default=4.0,
        help="skip scikit-learn when its float64 X would exceed this",
    )
    parser.add_argument("--no-sklearn", action="store_true")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--estimate-only", action="store_true")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    on_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    dtype = torch.float32 if on_cuda else torch.float64
    print(f"p={args.p} m={args.m} N={args.n} alpha={args.alpha}")
    for val in (False, True):
        plan = memory_plan(args.p, args.n, args.batch_rows, dtype.itemsize, val)
        print(
            f"memory plan ({str(dtype).removeprefix('torch.')}, "
            f"{'with' if val else 'without'} validation rows):"
        )
        for key, nbytes in plan.items():
            print(f"  {key:70s} {gib(nbytes)}")
    if args.estimate_only:
        return
    device = resolve_device(args.device)
    print(f"device: {describe(device)}")

    data = SyntheticCoar(args.p, args.n, args.alpha, args.seed, device)
    results, fits = [], {}
    for solver in args.solvers.split(","):
        row, fit, corr = run_ours(args, data, device, dtype, solver)
        fits[solver] = (fit, corr)
        results.append(row)
        print(json.dumps(row))
    sklearn_gib = args.m * args.p * 8 / 2**30
    if args.no_sklearn or sklearn_gib > args.sklearn_max_gib:
        print(f"scikit-learn skipped (X in float64 would take {sklearn_gib:.1f} GiB)")
    else:
        lasso_fit = fits.get("lasso", (None, None))[0]
        sk_rows, subset = run_sklearn(args, data, lasso_fit)
        for row in sk_rows:
            if "extrapolated_to" in row and "lasso" in fits:
                row["ours_lasso_mean_corr_same_targets"] = float(fits["lasso"][1][subset].mean())
            results.append(row)
            print(json.dumps(row))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                dict(args=vars(args), device=describe(device), memory_plan=plan, results=results),
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
