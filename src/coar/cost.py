"""What a fit will cost, known before the ablations that feed it.

A fit keeps the Gram matrix X^T X (|C| x |C|) of its training rows and one of its
validation rows (`coar.regression.GramStats`; float64 on the CPU, float32 on CUDA), plus
X^T Y (|C| x examples) for each, and its solver needs one to three more |C| x |C|
matrices (a Cholesky factor; eigenvectors; a rotated validation Gram for ridge). Its
time grows with |C|^3 (a Cholesky factor costs about half of a |C| x |C| matrix product,
an eigendecomposition about ten) plus streaming the rows (two products of rows x |C|^2).
`fit_cost` turns that into bytes and seconds, the seconds from a matrix product timed on
the device; `check_fit` logs the estimate and warns, with the remedy, when the fit will
be weak (fewer rows than components: least squares falls back to the minimum-norm
solution) or will not fit the device's memory.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

# The time of factoring a |C| x |C| matrix as the flops of a matrix product that takes as
# long, per |C|^3; measured with CPU LAPACK at 1,000-2,000 components: Cholesky 0.4-0.6,
# eigh (eigenvalues and vectors) 8-10.
CHOLESKY_FLOPS = 0.5
EIGH_FLOPS = 10.0
# The fit's other work (centring in blocks, float64 copies of the rows, memory-bound
# passes) about doubles the matrix-product time: measured at 1,000-1,500 components,
# least squares and ridge, on a loaded CPU (then within a factor of two).
OVERHEAD = 2.0
# FISTA iterations per lambda assumed by the lasso estimate (they depend on the data).
LASSO_ITERATIONS = 50


def device_memory(device) -> int:
    """Bytes of memory of the device that fits: a GPU's total memory, or the host's RAM."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    raise OSError("cannot read the host's memory size")


def matmul_peak(device: torch.device, dtype: torch.dtype, size: int | None = None, rounds=5):
    """Best FLOP/s of a square ``size`` x ``size`` matmul in ``dtype`` on ``device``
    (default size: 2,048 on the CPU, 8,192 on CUDA), after a warm-up."""
    size = size or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    best = float("inf")
    for i in range(rounds + 2):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= 2:  # the first calls warm up the kernels and their workspaces
            best = min(best, time.perf_counter() - start)
    return 2 * size**3 / max(best, 1e-9)


@functools.lru_cache(maxsize=8)
def matmul_flops_per_second(device: str, dtype: torch.dtype) -> float:
    """Flops per second of a dense matrix product on ``device`` in ``dtype`` (timed once
    per process on small products: milliseconds)."""
    device = torch.device(device)
    return matmul_peak(device, dtype, size=1024 if device.type == "cuda" else 384, rounds=2)


@dataclass(frozen=True)
class FitCost:
    """The projected peak memory (bytes) and time (seconds) of a fit on ``device``,
    next to that device's memory (bytes)."""

    n_components: int
    n_rows: int
    n_examples: int
    solver: str
    device: str
    bytes: int
    seconds: float
    device_bytes: int

    @property
    def fits_in_memory(self) -> bool:
        return self.bytes <= self.device_bytes

    def __str__(self) -> str:
        return (
            f"{self.solver} fit of {self.n_components:,} components x {self.n_examples:,} "
            f"examples on {self.n_rows:,} rows: about {_bytes(self.bytes)} of "
            f"{_bytes(self.device_bytes)} on {self.device} and {format_seconds(self.seconds)}"
        )


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def format_seconds(s: float) -> str:
    """A duration as people read it.

    >>> format_seconds(0.3), format_seconds(42), format_seconds(600), format_seconds(9000)
    ('under a second', '42 s', '10 min', '2.5 h')
    """
    if s < 1:
        return "under a second"
    if s < 120:
        return f"{s:.0f} s"
    return f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"


def fit_cost(
    n_components: int,
    n_rows: int,
    n_examples: int,
    solver: str = "least_squares",
    device="cpu",
    val_fraction: float = 0.1,
) -> FitCost:
    """Projected peak memory and time of fitting ``n_components`` x ``n_examples`` on
    ``n_rows`` rows with ``solver`` on ``device`` (see the module's description).

    >>> cost = fit_cost(3000, 300, 4)
    >>> cost.bytes // 10**6  # four 3,000 x 3,000 float64 matrices and a little more
    288
    >>> cost.fits_in_memory
    True
    """
    device = torch.device(device)
    item = 4 if device.type == "cuda" else 8
    p, m, n = int(n_components), int(n_rows), int(n_examples)
    singular = m <= p  # least squares then solves by eigendecomposition too
    extra_grams = {"least_squares": 2 if singular else 1, "ridge": 3, "lasso": 1}.get(solver, 1)
    peak = item * ((2 + extra_grams) * p * p + 6 * p * n)
    solves = 2 if val_fraction > 0 else 1  # on the training rows (validation), then on all
    stream = 2 * m * p * p + 2 * m * p * n
    if solver == "ridge":
        solve = EIGH_FLOPS * p**3 + 2 * p * p * n
        solve = solves * solve + 4 * p**3 + 20 * 2 * p * p * n  # the lambda path, eigenbasis
    elif solver == "lasso":
        iterations = 20 * LASSO_ITERATIONS
        solve = solves * (EIGH_FLOPS / 3 * p**3 + iterations * 2 * p * p * n)
    else:
        solve = CHOLESKY_FLOPS * p**3 + 2 * p * p * n
        if singular:
            solve += EIGH_FLOPS * p**3 + 4 * p * p * n
        solve *= solves
    dtype = torch.float32 if device.type == "cuda" else torch.float64
    seconds = OVERHEAD * (stream + solve) / matmul_flops_per_second(str(device), dtype)
    return FitCost(p, m, n, solver, str(device), int(peak), seconds, device_memory(device))


def check_fit(
    n_components: int,
    n_rows: int,
    n_examples: int,
    solver: str = "least_squares",
    device="cpu",
    val_fraction: float = 0.1,
) -> FitCost:
    """Log the projected cost of a fit, and warn with the remedy when the fit will be
    weak or will not fit in memory: called before any ablation. Returns the `FitCost`."""
    cost = fit_cost(n_components, n_rows, n_examples, solver, device, val_fraction)
    log.info("projected %s", cost)
    if solver == "least_squares" and n_rows < n_components:
        log.warning(
            "%d masks for %d components: least squares falls back to the minimum-norm "
            "solution and the fit is weak (and slower: an eigendecomposition of %d x %d); "
            "use n_masks of at least a few times the number of components (e.g. %d), fewer "
            "components (include=/exclude=), or solver='ridge'",
            n_rows,
            n_components,
            n_components,
            n_components,
            3 * n_components,
        )
    if not cost.fits_in_memory:
        log.warning(
            "the projected %s exceeds the device's memory: fit fewer components "
            "(include=/exclude=), or fit on a device with more memory (fit(device=...))",
            cost,
        )
    return cost
