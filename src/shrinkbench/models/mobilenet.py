"""MobileNetV2 (Sandler et al. 2018) with torchvision's parameter names, so its weights load."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .init import check_dropout, init_weights, spatial
from .zoo import register_model

# (expansion t, output channels c, repeats n, first stride s), Table 2 of the paper.
INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def conv_bn_relu6(
    in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    """Conv (no bias, "same" padding), BN, ReLU6: indices 0, 1, 2 as in torchvision."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """1x1 expand (unless t = 1), 3x3 depthwise, 1x1 linear projection; residual when shapes match."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(in_ch * expand_ratio))
        self.use_res_connect = stride == 1 and in_ch == out_ch
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_bn_relu6(in_ch, hidden, kernel=1))
        layers += [
            conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_res_connect else out


class MobileNetV2(nn.Module):
    """Width 1.0: conv 32/2, 17 inverted residual blocks, conv 1x1 1280, pool, dropout, fc."""

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        dropout: float = 0.2,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn_relu6(in_channels, 32, stride=2)]
        channels = 32
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            for i in range(n):
                layers.append(InvertedResidual(channels, c, s if i == 0 else 1, t))
                channels = c
        layers.append(conv_bn_relu6(channels, 1280, kernel=1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(1280, num_classes))
        self.shrinkbench_classifier = "classifier.1"
        init_weights(self, linear="normal", generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


@register_model(
    "mobilenet_v2", input_shape=(3, 224, 224), num_classes=1000, family="mobilenet",
    aliases=("mobilenetv2",), min_size=32,
)
def mobilenet_v2(
    num_classes: int,
    input_shape: tuple[int, ...],
    generator: torch.Generator | None = None,
    *,
    dropout: float = 0.2,
) -> nn.Module:
    """MobileNetV2 for ImageNet (Sandler et al. 2018), torchvision parameter names."""
    channels, _, _ = spatial("mobilenet_v2", input_shape)
    return MobileNetV2(num_classes, channels, check_dropout("mobilenet_v2", dropout), generator)
