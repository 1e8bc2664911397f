"""How close a throughput is to the hardware: model FLOPs and the device's matmul peak.

``bench/ablation.py`` reports each measured rate as FLOP/s and as a fraction of the
dense-matmul rate measured on the same device in the same precision, so that "at the
hardware limit" is a number, and so that a speed-up target can be checked against what
the device can do at all.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

# The peak is measured in one place, beside the fit-cost projection that uses it too.
from coar.cost import matmul_peak

__all__ = ["forward_flops", "matmul_peak"]


@torch.no_grad()
def forward_flops(forward: Callable[[], object]) -> int:
    """FLOPs of one call of ``forward`` (matmuls, convolutions and attention, as counted
    by torch.utils.flop_counter; elementwise work is not counted)."""
    with FlopCounterMode(display=False) as counter:
        forward()
    return int(counter.get_total_flops())
