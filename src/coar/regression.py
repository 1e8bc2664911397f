"""Least squares with intercept for all examples at once, from sufficient statistics.

Every example shares the design matrix X (the masks), so a fit needs only
X^T X, X^T Y, column sums, target sums and target squares. They are streamed
batch by batch, so m x |C| never has to fit in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg


@dataclass
class GramStats:
    """Running sums over rows of (X, Y); float64 holds 0/1 products exactly."""

    xtx: np.ndarray  # (p, p)
    xty: np.ndarray  # (p, N)
    x_sum: np.ndarray  # (p,)
    y_sum: np.ndarray  # (N,)
    y_sq: np.ndarray  # (N,)
    n: int = 0

    @classmethod
    def zeros(cls, p: int, n_targets: int) -> GramStats:
        return cls(
            np.zeros((p, p)),
            np.zeros((p, n_targets)),
            np.zeros(p),
            np.zeros(n_targets),
            np.zeros(n_targets),
        )

    def update(self, x: np.ndarray, y: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        self.xtx += x.T @ x
        self.xty += x.T @ y
        self.x_sum += x.sum(0)
        self.y_sum += y.sum(0)
        self.y_sq += (y * y).sum(0)
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


@dataclass
class LinearFit:
    weight: np.ndarray  # (p, N), raw mask units
    bias: np.ndarray  # (N,)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64) @ self.weight + self.bias


def least_squares(stats: GramStats) -> LinearFit:
    """OLS with intercept: solve the centred normal equations by Cholesky.

    When the centred Gram matrix is singular (e.g. fewer rows than components,
    or a component never ablated) the minimum-norm solution is returned.
    """
    if stats.n < 2:
        raise ValueError(f"need at least 2 rows to fit, got {stats.n}")
    x_mean = stats.x_sum / stats.n
    y_mean = stats.y_sum / stats.n
    sxx = stats.xtx - stats.n * np.outer(x_mean, x_mean)
    sxy = stats.xty - stats.n * np.outer(x_mean, y_mean)
    try:
        factor = scipy.linalg.cho_factor(sxx)
        # Cholesky can succeed on a numerically singular matrix: its diagonal bounds the
        # condition number from below, so fall back when that bound is already too large.
        diag = np.abs(np.diag(factor[0]))
        if (diag.min() / diag.max()) ** 2 < 1e-12:
            raise np.linalg.LinAlgError("centred Gram matrix is numerically singular")
        weight = scipy.linalg.cho_solve(factor, sxy)
    except np.linalg.LinAlgError:
        weight = scipy.linalg.pinvh(sxx) @ sxy
    return LinearFit(weight=weight, bias=y_mean - x_mean @ weight)


def correlation_from_stats(fit: LinearFit, stats: GramStats) -> np.ndarray:
    """Per-target Pearson correlation between predictions and targets on the rows of `stats`.

    Computed from the sums alone (no pass over the rows): with p = b + X w,
    sum p = n b + s.w, sum p^2 = n b^2 + 2 b s.w + w^T X^T X w, sum p y = b sum y + w.X^T y.
    """
    n, w, b = stats.n, fit.weight, fit.bias
    sw = stats.x_sum @ w
    sum_p = n * b + sw
    sum_pp = n * b**2 + 2 * b * sw + np.einsum("pn,pq,qn->n", w, stats.xtx, w)
    sum_py = b * stats.y_sum + np.einsum("pn,pn->n", w, stats.xty)
    cov = sum_py - sum_p * stats.y_sum / n
    var_p = sum_pp - sum_p**2 / n
    var_y = stats.y_sq - stats.y_sum**2 / n
    with np.errstate(invalid="ignore", divide="ignore"):
        return cov / np.sqrt(var_p * var_y)
