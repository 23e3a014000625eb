"""VGG-16 (Simonyan & Zisserman 2015): the ImageNet net with torchvision's names, and a CIFAR variant."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ModelError
from .init import check_dropout, init_weights, spatial
from .zoo import register_model

# Configuration "D": conv widths, "M" = 2x2 max-pool.
VGG16_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def vgg_features(in_channels: int, batch_norm: bool) -> nn.Sequential:
    """The 13 conv layers of VGG-16 (3x3, padding 1) with ReLU, optional BN, and 5 max-pools."""
    layers: list[nn.Module] = []
    channels = in_channels
    for spec in VGG16_LAYERS:
        if spec == "M":
            layers.append(nn.MaxPool2d(2, 2))
            continue
        layers.append(nn.Conv2d(channels, int(spec), 3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(int(spec)))
        layers.append(nn.ReLU(inplace=True))
        channels = int(spec)
    return nn.Sequential(*layers)


class VGG16(nn.Module):
    """ImageNet VGG-16: features, 7x7 adaptive average pool, classifier 4096-4096-classes."""

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        dropout: float = 0.5,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.features = vgg_features(in_channels, batch_norm=False)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )
        self.shrinkbench_classifier = "classifier.6"
        init_weights(self, linear="normal", generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


class VGG16CIFAR(nn.Module):
    """VGG-16 with batch norm for 32x32 inputs; classifier 512-512-classes as in Zagoruyko (2015)."""

    def __init__(
        self,
        num_classes: int = 10,
        input_shape: tuple[int, int, int] = (3, 32, 32),
        dropout: float = 0.5,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        channels, height, width = input_shape
        cells = (height // 32) * (width // 32)
        if cells == 0:
            raise ModelError(f"model 'vgg16_cifar': input {height}x{width} is too small; it needs 32x32")
        self.features = vgg_features(channels, batch_norm=True)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(512 * cells, 512),
            nn.BatchNorm1d(512),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(512, num_classes),
        )
        self.shrinkbench_classifier = "classifier.5"
        init_weights(self, linear="normal", generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


@register_model("vgg16", input_shape=(3, 224, 224), num_classes=1000, family="vgg", min_size=32)
def vgg16(
    num_classes: int,
    input_shape: tuple[int, ...],
    generator: torch.Generator | None = None,
    *,
    dropout: float = 0.5,
) -> nn.Module:
    """VGG-16 for ImageNet (Simonyan & Zisserman 2015), torchvision parameter names."""
    channels, _, _ = spatial("vgg16", input_shape)
    return VGG16(num_classes, channels, check_dropout("vgg16", dropout), generator)


@register_model("vgg16_cifar", input_shape=(3, 32, 32), num_classes=10, family="vgg", min_size=32)
def vgg16_cifar(
    num_classes: int,
    input_shape: tuple[int, ...],
    generator: torch.Generator | None = None,
    *,
    dropout: float = 0.5,
) -> nn.Module:
    """VGG-16 with batch norm for CIFAR (Zagoruyko 2015; as pruned by Li et al. 2017)."""
    shape = spatial("vgg16_cifar", input_shape)
    return VGG16CIFAR(num_classes, shape, check_dropout("vgg16_cifar", dropout), generator)
