"""Counts of normalization, pooling, activation and addition operations per example."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from shrinkbench.metrics import count_other_ops


class Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn(self.conv(x))
        out += x  # in place, as torchvision-style blocks do
        return F.relu(out)  # functional: no module to hook


def test_residual_net_counts_by_hand():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True), Residual(4),
        nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10), nn.Softmax(dim=1),
    )  # fmt: skip
    counts = count_other_ops(model, torch.randn(3, 3, 8, 8))
    feature = 4 * 8 * 8
    assert counts == {
        "normalization": 2 * feature,
        "pooling": (4 * 4 * 4) * 4 + 4 * 4 * 4,  # 2x2 max windows, then a global mean over 4x4
        "activation": 2 * feature + 10,
        "addition": feature,
    }


def test_pooling_windows_including_adaptive_and_1d_3d():
    def windows(size_in: int, size_out: int) -> int:
        # sum of the adaptive window lengths: [floor(i*in/out), ceil((i+1)*in/out))
        return sum(-(-(i + 1) * size_in // size_out) - i * size_in // size_out for i in range(size_out))

    assert windows(5, 3) == 2 + 3 + 2
    x2 = torch.randn(2, 3, 5, 5)
    assert count_other_ops(nn.AdaptiveAvgPool2d(3), x2)["pooling"] == 3 * 7 * 7
    assert count_other_ops(nn.AdaptiveMaxPool2d((3, 5)), x2)["pooling"] == 3 * 7 * 5
    assert count_other_ops(nn.AvgPool2d(3, stride=1, padding=1), x2)["pooling"] == 3 * 25 * 9
    x1 = torch.randn(2, 3, 9)
    assert count_other_ops(nn.MaxPool1d(3), x1)["pooling"] == 3 * 3 * 3
    assert count_other_ops(nn.AdaptiveAvgPool1d(4), x1)["pooling"] == 3 * windows(9, 4)
    x3 = torch.randn(1, 2, 4, 4, 4)
    assert count_other_ops(nn.MaxPool3d(2), x3)["pooling"] == 2 * 8 * 8
    assert count_other_ops(nn.AdaptiveAvgPool3d(1), x3)["pooling"] == 2 * 64


@pytest.mark.parametrize(
    "norm, shape",
    [(nn.LayerNorm(6), (2, 5, 6)), (nn.GroupNorm(2, 4), (2, 4, 3, 3)), (nn.InstanceNorm1d(3), (2, 3, 7))]
    + ([(nn.RMSNorm(6), (2, 5, 6))] if hasattr(nn, "RMSNorm") else []),
)
def test_normalization_counts_elements_once(norm, shape):
    counts = count_other_ops(norm, torch.randn(*shape))
    per_example = int(torch.Size(shape[1:]).numel())
    assert counts == {"normalization": per_example, "pooling": 0, "activation": 0, "addition": 0}


def test_ops_inside_conv_and_linear_layers_are_not_counted():
    # a bias add on a non-contiguous 3-D input and reflect padding run inside the layers
    model = nn.Sequential(nn.Linear(8, 4))
    assert count_other_ops(model, torch.randn(5, 2, 8).transpose(0, 1))["addition"] == 0
    conv = nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect")
    assert count_other_ops(conv, torch.randn(1, 2, 4, 4)) == dict.fromkeys(
        ("normalization", "pooling", "activation", "addition"), 0
    )


def test_scalar_additions_are_not_tensor_additions():
    class AddOne(nn.Module):
        def forward(self, x):
            return (x + 1) - x

    assert count_other_ops(AddOne(), torch.randn(2, 5))["addition"] == 5
