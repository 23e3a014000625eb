"""Fully connected nets that flatten their input: LeNet-300-100 and a small MLP for digits."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from ..errors import ModelError
from .init import init_weights
from .zoo import register_model


class MLP(nn.Module):
    """Flatten, then Linear+ReLU layers `fc1..fc{n}` ending in the classifier `fc{n}`."""

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        num_classes: int,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        widths = [in_features, *hidden, num_classes]
        self.depth = len(widths) - 1
        for i in range(self.depth):
            self.add_module(f"fc{i + 1}", nn.Linear(widths[i], widths[i + 1]))
        self.shrinkbench_classifier = f"fc{self.depth}"
        init_weights(self, linear="default", generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)
        for i in range(1, self.depth):
            x = torch.relu(getattr(self, f"fc{i}")(x))
        return getattr(self, f"fc{self.depth}")(x)


def _hidden(name: str, hidden: Sequence[int]) -> tuple[int, ...]:
    try:
        widths = tuple(int(h) for h in hidden)
    except (TypeError, ValueError):
        raise ModelError(f"model {name!r}: hidden must be a list of layer widths, got {hidden!r}") from None
    if any(h <= 0 for h in widths):
        raise ModelError(f"model {name!r}: hidden widths must be positive, got {list(widths)}")
    return widths


@register_model(
    "lenet300", input_shape=(1, 28, 28), num_classes=10, family="mlp", aliases=("lenet_300_100",)
)
def lenet300(
    num_classes: int, input_shape: tuple[int, ...], generator: torch.Generator | None = None
) -> nn.Module:
    """LeNet-300-100 (LeCun et al. 1998): fully connected 300-100 with ReLU; MNIST."""
    return MLP(math.prod(input_shape), (300, 100), num_classes, generator)


@register_model("mlp_digits", input_shape=(1, 8, 8), num_classes=10, family="mlp")
def mlp_digits(
    num_classes: int,
    input_shape: tuple[int, ...],
    generator: torch.Generator | None = None,
    *,
    hidden: Sequence[int] = (128, 64),
) -> nn.Module:
    """A small MLP (64-128-64-10) for the 8x8 scikit-learn digits."""
    return MLP(math.prod(input_shape), _hidden("mlp_digits", hidden), num_classes, generator)
