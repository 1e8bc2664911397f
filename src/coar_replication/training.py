"""Seeded training of small classifiers on in-memory tensors (the embedded default)."""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1024) -> float:
    model.eval()
    correct = sum(
        (model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum().item()
        for i in range(0, len(x), batch)
    )
    return correct / len(x)


def train_classifier(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
    shift_pixels: int = 1,
) -> nn.Module:
    """SGD with Nesterov momentum, one-cycle learning rate and random-shift augmentation."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    x_t, y_t = torch.from_numpy(x), torch.from_numpy(y)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay
    )
    steps_per_epoch = -(-len(x_t) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    background = float(x_t.min())  # value of an empty pixel after standardisation
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x_t), generator=generator)
        total = 0.0
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            xb = _random_shift(x_t[idx], shift_pixels, generator, background)
            loss = loss_fn(model(xb), y_t[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(idx)
        log.info("epoch %d/%d  train loss %.4f", epoch + 1, epochs, total / len(x_t))
    return model.eval()


def _random_shift(
    x: torch.Tensor, pixels: int, generator: torch.Generator, fill: float
) -> torch.Tensor:
    """Shift the batch by up to `pixels` in each direction, padding with `fill`."""
    if pixels == 0:
        return x
    padded = nn.functional.pad(x, (pixels,) * 4, value=fill)
    dx, dy = torch.randint(0, 2 * pixels + 1, (2,), generator=generator).tolist()
    h, w = x.shape[-2:]
    return padded[..., dy : dy + h, dx : dx + w]
