"""Small convolutional nets: the Caffe LeNet-5 and a tiny conv net for the 8x8 digits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError
from .init import init_weights, spatial
from .zoo import register_model


class LeNet5(nn.Module):
    """Caffe's LeNet-5: conv 20@5x5, pool, conv 50@5x5, pool, fc 500, ReLU, fc (no ReLU on the convs)."""

    def __init__(
        self, in_channels: int, height: int, width: int, num_classes: int,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        h, w = ((height - 4) // 2 - 4) // 2, ((width - 4) // 2 - 4) // 2
        if h < 1 or w < 1:
            raise ModelError(f"model 'lenet5': input {height}x{width} is too small; it needs at least 16x16")
        self.conv1 = nn.Conv2d(in_channels, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.fc1 = nn.Linear(50 * h * w, 500)
        self.fc2 = nn.Linear(500, num_classes)
        self.shrinkbench_classifier = "fc2"
        init_weights(self, linear="default", generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.conv1(x), 2)
        x = F.max_pool2d(self.conv2(x), 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


class ConvNetDigits(nn.Module):
    """conv 16@3x3, conv 32@3x3, max-pool 2, fc 64, fc: a few thousand MACs per 8x8 digit."""

    def __init__(
        self, in_channels: int, height: int, width: int, num_classes: int,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if height < 2 or width < 2:
            raise ModelError(f"model 'convnet_digits': input {height}x{width} is too small; it needs 2x2")
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * (height // 2) * (width // 2), 64)
        self.fc2 = nn.Linear(64, num_classes)
        self.shrinkbench_classifier = "fc2"
        init_weights(self, linear="default", generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


@register_model("lenet5", input_shape=(1, 28, 28), num_classes=10, family="lenet", aliases=("lenet_5",),
                min_size=16)
def lenet5(
    num_classes: int, input_shape: tuple[int, ...], generator: torch.Generator | None = None
) -> nn.Module:
    """LeNet-5 as in Caffe (LeCun et al. 1998; Han et al. 2015): 431K parameters on MNIST."""
    return LeNet5(*spatial("lenet5", input_shape), num_classes, generator)


@register_model("convnet_digits", input_shape=(1, 8, 8), num_classes=10, family="lenet", min_size=2)
def convnet_digits(
    num_classes: int, input_shape: tuple[int, ...], generator: torch.Generator | None = None
) -> nn.Module:
    """A tiny conv net (conv 16, conv 32, fc 64) for the 8x8 scikit-learn digits."""
    return ConvNetDigits(*spatial("convnet_digits", input_shape), num_classes, generator)
