"""Model architectures defined by this project (the paper's MiniResNet family).

Their checkpoints: `coar_replication.checkpoints.save_model` / `load_model`.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    """ResNet basic block with bias-free 3x3 convs followed by BatchNorm."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class MiniResNet(nn.Module):
    """The paper's setup-A "ResNet": a stem conv and stride-1 BasicBlocks at full resolution.

    Setup A is ``MiniResNet(in_channels=3, planes=256, num_blocks=4, pool=8, image_size=32)``
    (2,304 conv-filter components); the embedded default uses a narrow version on 8x8 digits.
    """

    def __init__(
        self,
        in_channels: int = 3,
        planes: int = 256,
        num_blocks: int = 4,
        num_classes: int = 10,
        pool: int = 8,
        image_size: int = 32,
    ):
        super().__init__()
        self.config = dict(
            in_channels=in_channels,
            planes=planes,
            num_blocks=num_blocks,
            num_classes=num_classes,
            pool=pool,
            image_size=image_size,
        )
        self.conv1 = nn.Conv2d(in_channels, planes, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.layers = nn.Sequential(*(BasicBlock(planes, planes) for _ in range(num_blocks)))
        self.pool = nn.AvgPool2d(pool)
        side = image_size // pool
        self.linear = nn.Linear(planes * side * side, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.pool(self.layers(out))
        return self.linear(out.flatten(1))


def digits_miniresnet(arch: dict, x_train, y_train) -> MiniResNet:
    """The embedded default's MiniResNet for a setup's digits: ``arch`` is the setup's
    ``model`` config (planes, num_blocks, pool); the input channels and image size come
    from the (N, C, H, W) training images, the classes from the training labels. The one
    place that builds it (training, and ``coar components`` of a setup)."""
    _, channels, side, _ = x_train.shape
    return MiniResNet(
        in_channels=channels,
        planes=arch["planes"],
        num_blocks=arch["num_blocks"],
        num_classes=int(y_train.max()) + 1,
        pool=arch["pool"],
        image_size=side,
    )
