"""How close a throughput is to the hardware: model FLOPs and the device's matmul peak.

``bench/ablation.py`` reports each measured rate as FLOP/s and as a fraction of the
dense-matmul rate measured on the same device in the same precision, so that "at the
hardware limit" is a number, and so that a speed-up target can be checked against what
the device can do at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode


@torch.no_grad()
def forward_flops(forward: Callable[[], object]) -> int:
    """FLOPs of one call of ``forward`` (matmuls, convolutions and attention, as counted
    by torch.utils.flop_counter; elementwise work is not counted)."""
    with FlopCounterMode(display=False) as counter:
        forward()
    return int(counter.get_total_flops())


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
    return 2 * size**3 / best
