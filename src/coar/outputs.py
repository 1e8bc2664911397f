"""Output functions: what the attributions explain (here, classification margins)."""

from __future__ import annotations

import torch


def margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Correct-class logit minus the largest other logit, per row."""
    logits = logits.float()
    correct = logits.gather(1, labels.view(-1, 1)).squeeze(1)
    others = logits.scatter(1, labels.view(-1, 1), float("-inf"))
    return correct - others.max(dim=1).values
