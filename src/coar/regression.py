"""Linear models for all examples at once, from streamed sufficient statistics.

Every example shares the design matrix X (the keep-masks), so a fit needs only
X^T X, X^T Y, column sums, target sums and target squares. They are streamed
batch by batch, so m x |C| never has to fit in memory, and they live on the
device that solves (CPU or CUDA).

Solvers (all targets at once, intercept never penalised):

- `least_squares`: Cholesky of the centred Gram matrix; the minimum-norm
  solution when it is singular (e.g. fewer rows than components).
- `ridge_path`: min (1/2n)||y - b - Xw||^2 + (lam/2)||w||^2 for a grid of lam
  through one eigendecomposition; lam picked per target by validation MSE.
- `lasso_path`: min (1/2n)||y - b - Xw||^2 + lam ||w||_1 (scikit-learn's Lasso
  objective, its `alpha` = our lam) by FISTA on the Gram matrix with warm starts
  down a per-target grid; lam picked per target by validation MSE.

Validation MSEs come from the validation rows' own statistics (`mse_from_stats`),
so choosing lam needs no extra pass over the data.

Precision: on the CPU everything is float64. On CUDA the sums are float32; X^T X
and the column sums hold integer counts, exact below 2^24 rows. Centring is done
in float64, block by block, so that only one extra p x p matrix (the factor) is
ever allocated next to the Gram matrix.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field

import numpy as np
import torch

log = logging.getLogger(__name__)

# float32 represents every integer up to 2^24 exactly: the row-count limit for exact
# float32 X^T X and column sums.
FLOAT32_EXACT_ROWS = 2**24
# Elements of a float64 temporary in the blockwise helpers (256 MiB): bounds the memory
# that centring or streaming a p x p matrix needs on top of the matrix itself.
BLOCK_ELEMENTS = 2**25


def block_rows(width: int) -> int:
    """Rows of a (., width) matrix processed at once by the blockwise helpers."""
    return max(64, BLOCK_ELEMENTS // max(width, 1))


def default_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if torch.device(device).type == "cuda" else torch.float64


@contextlib.contextmanager
def _exact_tensor_cores(device: torch.device, dtype: torch.dtype):
    """Allow TF32 tensor cores for float32 0/1 products on CUDA: 0 and 1 are exact in TF32
    and the products accumulate in float32, so X^T X stays an exact count, several times
    faster. Outputs (X^T Y) keep full float32 precision: this applies only inside."""
    if device.type != "cuda" or dtype != torch.float32:
        yield
        return
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


@dataclass
class GramStats:
    """Running sums over the rows of (X, Y). Tensors live on one device."""

    xtx: torch.Tensor  # (p, p)
    xty: torch.Tensor  # (p, N)
    x_sum: torch.Tensor  # (p,)
    y_sum: torch.Tensor  # (N,) float64
    y_sq: torch.Tensor  # (N,) float64
    n: int = 0

    @classmethod
    def zeros(
        cls, p: int, n_targets: int, device="cpu", dtype: torch.dtype | None = None
    ) -> GramStats:
        device = torch.device(device)
        dtype = dtype or default_dtype(device)
        return cls(
            torch.zeros(p, p, dtype=dtype, device=device),
            torch.zeros(p, n_targets, dtype=dtype, device=device),
            torch.zeros(p, dtype=dtype, device=device),
            torch.zeros(n_targets, dtype=torch.float64, device=device),
            torch.zeros(n_targets, dtype=torch.float64, device=device),
        )

    @property
    def p(self) -> int:
        return self.xtx.shape[0]

    @property
    def device(self) -> torch.device:
        return self.xtx.device

    @property
    def dtype(self) -> torch.dtype:
        return self.xtx.dtype

    def update(self, x, y) -> None:
        """Add rows: x (rows, p) keep-masks (bool or 0/1), y (rows, N) outputs."""
        x = torch.as_tensor(x).to(self.device, non_blocking=True).to(self.dtype)
        y = torch.as_tensor(y).to(self.device, non_blocking=True)
        if x.shape[0] != y.shape[0] or x.shape[1] != self.p or y.shape[1] != self.xty.shape[1]:
            raise ValueError(
                f"batch of shape {tuple(x.shape)} x {tuple(y.shape)} does not match "
                f"statistics for {self.p} components x {self.xty.shape[1]} targets"
            )
        if self.dtype == torch.float32 and self.n + len(x) > FLOAT32_EXACT_ROWS:
            raise ValueError(
                f"{self.n + len(x)} rows exceed float32's exact count range "
                f"({FLOAT32_EXACT_ROWS}); accumulate in float64"
            )
        with _exact_tensor_cores(x.device, self.dtype):
            self.xtx.addmm_(x.T, x)
        self.xty.addmm_(x.T, y.to(self.dtype))
        self.x_sum += x.sum(0)
        y64 = y.to(torch.float64)
        self.y_sum += y64.sum(0)
        self.y_sq += (y64 * y64).sum(0)
        self.n += len(x)

    def __add__(self, other: GramStats) -> GramStats:
        return GramStats(
            self.xtx + other.xtx,
            self.xty + other.xty,
            self.x_sum + other.x_sum,
            self.y_sum + other.y_sum,
            self.y_sq + other.y_sq,
            self.n + other.n,
        )

    def add_(self, other: GramStats) -> GramStats:
        """In-place sum (no new p x p matrix); `other` may live on another device."""
        rows = block_rows(self.p)
        for i in range(0, self.p, rows):
            self.xtx[i : i + rows] += other.xtx[i : i + rows].to(self.device)
        self.xty += other.xty.to(self.device)
        self.x_sum += other.x_sum.to(self.device)
        self.y_sum += other.y_sum.to(self.device)
        self.y_sq += other.y_sq.to(self.device)
        self.n += other.n
        return self

    def to(self, device) -> GramStats:
        """The same sums on `device` (e.g. parked in host memory to free GPU memory)."""
        device = torch.device(device)
        move = lambda t: t.to(device)  # noqa: E731
        return GramStats(
            move(self.xtx),
            move(self.xty),
            move(self.x_sum),
            move(self.y_sum),
            move(self.y_sq),
            self.n,
        )

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.xtx, self.xty))

    def x_mean(self) -> torch.Tensor:
        return self.x_sum.to(torch.float64) / self.n

    def y_mean(self) -> torch.Tensor:
        return self.y_sum / self.n

    def centred_gram(self) -> torch.Tensor:
        """S_xx = X^T X - n mu mu^T as a new matrix in the stats' dtype (centred in float64)."""
        mu = self.x_mean()
        out = torch.empty_like(self.xtx)
        rows = block_rows(self.p)
        for i in range(0, self.p, rows):
            # (a float64 xtx must not be modified: compute out of place)
            block = self.xtx[i : i + rows].to(torch.float64)
            out[i : i + rows] = block - self.n * mu[i : i + rows, None] * mu[None, :]
        return out

    def centred_xty(self) -> torch.Tensor:
        """S_xy = X^T Y - n mu ybar^T (p, N)."""
        mu, ybar = self.x_mean(), self.y_mean()
        out = torch.empty_like(self.xty)
        rows = block_rows(self.xty.shape[1])
        for i in range(0, self.p, rows):
            block = self.xty[i : i + rows].to(torch.float64)
            out[i : i + rows] = block - self.n * mu[i : i + rows, None] * ybar[None, :]
        return out


@dataclass
class LinearFit:
    """Per-target linear models: predict = bias + masks @ weight (raw mask units)."""

    weight: np.ndarray  # (p, N)
    bias: np.ndarray  # (N,)
    lam: np.ndarray | None = None  # (N,) the regularisation each target was fitted with
    info: dict = field(default_factory=dict)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64) @ self.weight + self.bias


def _to_fit(weight: torch.Tensor, stats: GramStats, lam=None, info=None) -> LinearFit:
    # To the host before widening to float64: no float64 copy of (p, N) on the GPU.
    w64 = weight.cpu().to(torch.float64)
    bias = stats.y_mean().cpu() - stats.x_mean().cpu() @ w64
    return LinearFit(
        weight=w64.numpy(),
        bias=bias.numpy(),
        lam=None if lam is None else torch.as_tensor(lam).cpu().to(torch.float64).numpy(),
        info=info or {},
    )


def _check_rows(stats: GramStats) -> None:
    if stats.n < 2:
        raise ValueError(f"need at least 2 rows to fit, got {stats.n}")


def _minimum_norm_solve(sxx: torch.Tensor, sxy: torch.Tensor) -> torch.Tensor:
    """pinv(sxx) @ sxy for symmetric PSD sxx, dropping eigenvalues at rounding level."""
    evals, evecs = torch.linalg.eigh(sxx)
    cutoff = evals.abs().max() * sxx.shape[0] * torch.finfo(sxx.dtype).eps
    inverse = torch.where(evals > cutoff, 1.0 / evals, torch.zeros_like(evals))
    return evecs @ (inverse[:, None] * (evecs.T @ sxy))


def least_squares(stats: GramStats) -> LinearFit:
    """OLS with intercept: solve the centred normal equations by Cholesky.

    When the centred Gram matrix is singular (fewer rows than components, or a
    component never ablated) the minimum-norm solution is returned.
    """
    _check_rows(stats)
    sxx = stats.centred_gram()
    sxy = stats.centred_xty()
    # In place (out=sxx): the factor takes the centred Gram's memory, no third p x p matrix.
    info = torch.empty((), dtype=torch.int32, device=sxx.device)
    factor, info = torch.linalg.cholesky_ex(sxx, out=(sxx, info))
    diag = factor.diagonal().abs()
    # Cholesky can succeed on a numerically singular matrix: its diagonal bounds the
    # condition number from below, so fall back when that bound is already too large
    # for the precision (about 1e12 in float64, 1e5 in float32).
    too_large = torch.finfo(sxx.dtype).eps ** 0.75
    singular = int(info) != 0 or bool((diag.min() / diag.max()) ** 2 < too_large)
    if not singular:
        weight = torch.cholesky_solve(sxy, factor)
        method = "cholesky"
    else:
        del factor, sxx
        weight = _minimum_norm_solve(stats.centred_gram(), sxy)
        method = "minimum_norm"
    return _to_fit(weight, stats, lam=torch.zeros(sxy.shape[1]), info={"method": method})


def mse_from_stats(weight: torch.Tensor, bias: torch.Tensor, stats: GramStats) -> torch.Tensor:
    """Per-target mean squared error of bias + X w on the rows summarised by `stats`.

    sum (y - b - Xw)^2 = sum y^2 - 2 b sum y - 2 w.X^T y + n b^2 + 2 b s.w + w^T X^T X w.
    Computed on `weight`'s device; `stats` may live elsewhere (streamed in blocks).
    """
    device = weight.device
    w = weight.to(stats.dtype)
    b = bias.to(device, torch.float64)
    quad = _quadratic_forms(stats.xtx, w)
    sw = (stats.x_sum.to(device) @ w).to(torch.float64)
    wxy = _column_dots(stats.xty, w)
    return _mse_from_sums(stats, b, sw, wxy, quad)


def _mse_from_sums(stats: GramStats, b, sw, wxy, quad) -> torch.Tensor:
    """The MSE formula of `mse_from_stats` from its per-target pieces (float64)."""
    y_sum, y_sq = stats.y_sum.to(b.device), stats.y_sq.to(b.device)
    total = y_sq - 2 * b * y_sum - 2 * wxy + stats.n * b * b + 2 * b * sw + quad
    return total.clamp_min(0) / stats.n


def _quadratic_forms(gram: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """diag(w^T G w) per column of w, in float64, on w's device, in row blocks of G
    (G may live in host memory: each block is copied over)."""
    out = torch.zeros(w.shape[1], dtype=torch.float64, device=w.device)
    rows = block_rows(max(gram.shape[1], w.shape[1]))
    for i in range(0, gram.shape[0], rows):
        block = gram[i : i + rows].to(w.device, non_blocking=True)
        out += ((block @ w) * w[i : i + rows]).sum(0).to(torch.float64)
    return out


def _column_dots(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """sum_i a[i, j] w[i, j] per column, float64, on w's device, in row blocks of a."""
    out = torch.zeros(w.shape[1], dtype=torch.float64, device=w.device)
    rows = block_rows(w.shape[1])
    for i in range(0, a.shape[0], rows):
        block = a[i : i + rows].to(w.device, non_blocking=True)
        out += (block * w[i : i + rows]).sum(0).to(torch.float64)
    return out


def correlation_from_stats(fit: LinearFit, stats: GramStats, device=None) -> np.ndarray:
    """Per-target Pearson correlation between predictions and targets on the rows of `stats`.

    Computed from the sums alone (no pass over the rows): with p = b + X w,
    sum p = n b + s.w, sum p^2 = n b^2 + 2 b s.w + w^T X^T X w, sum p y = b sum y + w.X^T y.
    `device` (default: the stats') is where the products are computed.
    """
    device = torch.device(device) if device is not None else stats.device
    n = stats.n
    w = torch.as_tensor(fit.weight).to(device, stats.dtype)
    b = torch.as_tensor(fit.bias).to(device, torch.float64)
    y_sum, y_sq = stats.y_sum.to(device), stats.y_sq.to(device)
    sw = (stats.x_sum.to(device) @ w).to(torch.float64)
    sum_p = n * b + sw
    sum_pp = n * b**2 + 2 * b * sw + _quadratic_forms(stats.xtx, w)
    sum_py = b * y_sum + _column_dots(stats.xty, w)
    cov = sum_py - sum_p * y_sum / n
    var_p = sum_pp - sum_p**2 / n
    var_y = y_sq - y_sum**2 / n
    corr = cov / torch.sqrt(var_p * var_y)
    corr[(var_p <= 0) | (var_y <= 0)] = float("nan")
    return corr.cpu().numpy()


# --- ridge ---------------------------------------------------------------------------


def ridge_grid(stats: GramStats, n_lambdas: int, min_ratio: float, max_ratio: float) -> np.ndarray:
    """Geometric lam grid (largest first) relative to the mean mask variance
    (alpha (1 - alpha) for Bernoulli masks): lam = max_ratio * var means heavy shrinkage."""
    mu = stats.x_mean()
    variance = float((stats.xtx.diagonal().to(torch.float64) / stats.n - mu * mu).mean())
    return variance * np.geomspace(max_ratio, min_ratio, n_lambdas)


@dataclass
class RidgeBasis:
    """Eigendecomposition of the per-row centred Gram matrix S_xx / n = Q diag(s) Q^T,
    with Q^T S_xy / n: every ridge solution is then Q (Q^T c / (s + lam))."""

    evals: torch.Tensor
    evecs: torch.Tensor
    projected: torch.Tensor
    x_mean: torch.Tensor
    y_mean: torch.Tensor

    @classmethod
    def of(cls, stats: GramStats) -> RidgeBasis:
        _check_rows(stats)
        sxx = stats.centred_gram()
        sxx /= stats.n
        evals, evecs = torch.linalg.eigh(sxx)
        del sxx
        projected = evecs.T @ (stats.centred_xty() / stats.n)
        return cls(evals.clamp_min(0), evecs, projected, stats.x_mean(), stats.y_mean())

    def weight(self, lam) -> torch.Tensor:
        """Solutions (p, N) for lam a scalar or one value per target."""
        lam = torch.as_tensor(lam, device=self.evals.device).to(self.evals.dtype)
        shrink = 1.0 / (self.evals[:, None] + lam.reshape(1, -1))
        return self.evecs @ (self.projected * shrink)

    def fit(self, lam) -> LinearFit:
        weight = self.weight(lam).cpu().to(torch.float64)
        lam = np.broadcast_to(np.asarray(lam, dtype=np.float64), (weight.shape[1],)).copy()
        return LinearFit(
            weight=weight.numpy(),
            bias=(self.y_mean.cpu() - self.x_mean.cpu() @ weight).numpy(),
            lam=lam,
            info={"method": "eigh"},
        )


def ridge_path(
    basis: RidgeBasis, val: GramStats, lambdas, in_eigenbasis: bool | None = None
) -> np.ndarray:
    """Validation MSE (n_lambdas, N) of the ridge fits in `basis` for each lam of the grid.

    In the eigenbasis, Q^T G_val Q is formed once (two |C|^3 products, two extra
    |C| x |C| matrices) and each lam then costs one |C|^2 N product instead of two: the
    default when that saves work, the validation Gram sits on the same device and the
    extra matrices fit.
    """
    device = basis.evecs.device
    lambdas = np.asarray(lambdas, dtype=np.float64)
    if in_eigenbasis is None:
        p, n = basis.projected.shape
        extra = 2 * p * p * basis.evecs.element_size()
        room = device.type == "cpu" or extra < 0.5 * torch.cuda.mem_get_info(device)[0]
        in_eigenbasis = val.device == device and len(lambdas) * n > 2 * p and room
    mses = []
    if not in_eigenbasis:
        for lam in lambdas:
            weight = basis.weight(lam)
            bias = basis.y_mean - basis.x_mean @ weight.to(torch.float64)
            mses.append(mse_from_stats(weight, bias, val).cpu().numpy())
        return np.stack(mses)
    q = basis.evecs
    gram_q = q.T @ (val.xtx.to(device) @ q)
    x_sum_q = val.x_sum.to(device) @ q
    xty_q = q.T @ val.xty.to(device)
    mean_q = basis.x_mean.to(q.dtype) @ q
    for lam in lambdas:
        z = basis.projected / (basis.evals + lam)[:, None]  # the solution is Q z
        bias = basis.y_mean - (mean_q @ z).to(torch.float64)
        quad = ((gram_q @ z) * z).sum(0).to(torch.float64)
        sw = (x_sum_q @ z).to(torch.float64)
        wxy = (xty_q * z).sum(0).to(torch.float64)
        mses.append(_mse_from_sums(val, bias, sw, wxy, quad).cpu().numpy())
    return np.stack(mses)


def ridge(stats: GramStats, lam) -> LinearFit:
    """Ridge fit on all rows of `stats`, with lam a scalar or one value per target."""
    return RidgeBasis.of(stats).fit(lam)


# --- lasso ---------------------------------------------------------------------------


def lasso_lambda_max(stats: GramStats) -> torch.Tensor:
    """Per-target smallest lam with an all-zero solution: max_j |S_xy[j]| / n."""
    return stats.centred_xty().abs().amax(0).to(torch.float64) / stats.n


def lasso_grid(stats: GramStats, n_lambdas: int, min_ratio: float) -> np.ndarray:
    """Per-target geometric grid (n_lambdas, N): lambda_max down to min_ratio * lambda_max."""
    ratios = np.geomspace(1.0, min_ratio, n_lambdas)
    return ratios[:, None] * lasso_lambda_max(stats).cpu().numpy()[None, :]


def _largest_eigenvalue(a: torch.Tensor, iterations: int = 100) -> float:
    if a.shape[0] <= 4096:
        return float(torch.linalg.eigvalsh(a)[-1])
    # Power iteration approaches from below: pad it so 1/L stays a safe step size.
    generator = torch.Generator(device=a.device).manual_seed(0)
    v = torch.randn(a.shape[0], dtype=a.dtype, device=a.device, generator=generator)
    for _ in range(iterations):
        v = a @ v
        v /= v.norm()
    return 1.1 * float(v @ (a @ v))


@dataclass
class _LassoProblem:
    """min_w 1/2 w^T A w - c^T w + lam |w|_1 per column, A = S_xx/n, c = S_xy/n."""

    a: torch.Tensor
    c: torch.Tensor
    step: float  # 1 / Lipschitz constant of the gradient

    @classmethod
    def of(cls, stats: GramStats) -> _LassoProblem:
        a = stats.centred_gram()
        a /= stats.n
        c = stats.centred_xty() / stats.n
        return cls(a, c, 1.0 / max(_largest_eigenvalue(a), 1e-300))


def _soft_threshold(x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * (x.abs() - threshold).clamp_min(0)


def fista(
    problem: _LassoProblem,
    lam: torch.Tensor,
    start: torch.Tensor,
    tol: float = 1e-6,
    max_iter: int = 1000,
) -> tuple[torch.Tensor, int]:
    """Lasso on the Gram matrix by FISTA with adaptive restart, all targets at once.

    Stops when no coefficient moved by more than tol relative to the largest one
    (per target). Returns the solution and the number of iterations run.
    """
    a, c, step = problem.a, problem.c, problem.step
    threshold = (step * lam).to(a.dtype)[None, :]
    w = start.clone()
    y = w.clone()
    t = torch.ones(c.shape[1], dtype=a.dtype, device=a.device)
    for iteration in range(1, max_iter + 1):
        w_next = _soft_threshold(y - step * (a @ y - c), threshold)
        delta = w_next - w
        # Restart momentum where it points uphill (O'Donoghue & Candes, 2015).
        uphill = ((y - w_next) * delta).sum(0) > 0
        t_next = (1 + torch.sqrt(1 + 4 * t * t)) / 2
        momentum = torch.where(uphill, torch.zeros_like(t), (t - 1) / t_next)
        t = torch.where(uphill, torch.ones_like(t), t_next)
        y = w_next + momentum[None, :] * delta
        w = w_next
        scale = w.abs().amax(0).clamp_min(torch.finfo(a.dtype).tiny)
        if bool((delta.abs().amax(0) <= tol * scale).all()):
            return w, iteration
    log.warning("FISTA stopped at max_iter=%d before reaching tol=%g", max_iter, tol)
    return w, max_iter


def lasso(
    stats: GramStats, lam, start: torch.Tensor | None = None, tol=1e-6, max_iter=1000
) -> LinearFit:
    """Lasso fit on all rows of `stats`, lam a scalar or one value per target."""
    _check_rows(stats)
    problem = _LassoProblem.of(stats)
    lam = torch.as_tensor(
        np.broadcast_to(lam, (stats.xty.shape[1],)).copy(), device=stats.device
    ).to(stats.dtype)
    start = torch.zeros_like(problem.c) if start is None else start.to(problem.c)
    weight, iterations = fista(problem, lam, start, tol=tol, max_iter=max_iter)
    return _to_fit(weight, stats, lam=lam, info={"method": "fista", "iterations": iterations})


def lasso_path(
    train: GramStats,
    val: GramStats,
    lambdas: np.ndarray,
    tol: float = 1e-6,
    max_iter: int = 1000,
    patience: int = 3,
) -> dict:
    """Warm-started lasso path on `train`; per target keep the solution with the lowest
    validation MSE. Stops early once every target's validation MSE has risen for
    `patience` consecutive lam values past its best.

    Returns dict(weight=best train solution (tensor), lam=(N,), mse=(K, N) with NaN
    for lam values not reached, iterations=list).
    """
    lambdas = np.asarray(lambdas, dtype=np.float64)
    problem = _LassoProblem.of(train)
    n_targets = train.xty.shape[1]
    w = torch.zeros_like(problem.c)
    best_w = w.clone()
    best_mse = torch.full((n_targets,), math.inf, dtype=torch.float64, device=train.device)
    best_lam = torch.as_tensor(lambdas[0], device=train.device).clone()
    since_best = torch.zeros(n_targets, dtype=torch.long, device=train.device)
    mses = np.full(lambdas.shape, np.nan)
    iterations = []
    for k, lam in enumerate(lambdas):
        lam_t = torch.as_tensor(lam, device=train.device).to(train.dtype)
        w, its = fista(problem, lam_t, w, tol=tol, max_iter=max_iter)
        iterations.append(its)
        bias = train.y_mean() - train.x_mean() @ w.to(torch.float64)
        mse = mse_from_stats(w, bias, val)
        mses[k] = mse.cpu().numpy()
        better = mse < best_mse
        best_mse = torch.where(better, mse, best_mse)
        best_lam = torch.where(better, lam_t.to(torch.float64), best_lam)
        best_w[:, better] = w[:, better]
        since_best = torch.where(better, torch.zeros_like(since_best), since_best + 1)
        if bool((since_best >= patience).all()):
            break
    return dict(weight=best_w, lam=best_lam, mse=mses, iterations=iterations)
