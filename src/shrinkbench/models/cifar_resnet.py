"""The CIFAR ResNets of He et al. 2016 (section 4.2): 6n+2 layers, 16/32/64 channels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError
from .init import init_weights, spatial
from .zoo import register_model

SHORTCUTS = ("A", "B")


class PadShortcut(nn.Module):
    """Option A: subsample by `stride` and append zero channels; no parameters."""

    def __init__(self, stride: int, extra_channels: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra_channels = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))


class BasicBlock(nn.Module):
    """Two 3x3 conv+BN layers with an identity (or option A/B) shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int, shortcut: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module | None = None
        self.downsample: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            if shortcut == "A":
                self.shortcut = PadShortcut(stride, planes - in_planes)
            else:
                self.downsample = nn.Sequential(
                    nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.shortcut is not None:
            x = self.shortcut(x)
        elif self.downsample is not None:
            x = self.downsample(x)
        return F.relu(out + x)


class CifarResNet(nn.Module):
    """conv 3x3 16, three stages of `n` basic blocks (16, 32, 64 channels), global average pool, fc."""

    def __init__(
        self,
        n: int,
        num_classes: int = 10,
        in_channels: int = 3,
        shortcut: str = "A",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if shortcut not in SHORTCUTS:
            raise ModelError(f"CIFAR ResNet shortcut {shortcut!r} is unknown; choose from: A, B")
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        planes_in = 16
        for i, planes in enumerate((16, 32, 64)):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BasicBlock(planes_in, planes, stride, shortcut))
                planes_in = planes
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(64, num_classes)
        self.shrinkbench_classifier = "fc"
        init_weights(self, linear="default", generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


def _register(depth: int) -> None:
    name = f"resnet{depth}"

    def build(
        num_classes: int,
        input_shape: tuple[int, ...],
        generator: torch.Generator | None = None,
        *,
        shortcut: str = "A",
    ) -> nn.Module:
        channels, _, _ = spatial(name, input_shape)
        if shortcut not in SHORTCUTS:
            raise ModelError(f"model {name!r}: shortcut {shortcut!r} is unknown; choose from: A, B")
        return CifarResNet((depth - 2) // 6, num_classes, channels, shortcut, generator)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"ResNet-{depth} for CIFAR (He et al. 2016), option-A (zero-padding) shortcuts."
    register_model(name, input_shape=(3, 32, 32), num_classes=10, family="cifar-resnet",
                   min_size=4)(build)


for _depth in (20, 32, 44, 56, 110):
    _register(_depth)
