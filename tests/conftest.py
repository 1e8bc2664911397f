import pytest
import torch

from coar_replication.models import MiniResNet


def randomize_batchnorm(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Give BatchNorm layers non-trivial statistics and affine parameters."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)


@pytest.fixture
def tiny_resnet():
    """A random-weight MiniResNet on 8x8 single-channel images (40 conv filters)."""
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = MiniResNet(in_channels=1, planes=8, num_blocks=2, num_classes=10, pool=2, image_size=8)
    randomize_batchnorm(model, generator)
    return model.eval()
