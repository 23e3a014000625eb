"""The standard initializations of the zoo, drawn from an explicit generator when one is given."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ModelError

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm)


@torch.no_grad()
def _linear_default(m: nn.Linear, generator: torch.Generator | None) -> None:
    # PyTorch's own nn.Linear initialization (uniform with bound 1/sqrt(fan_in)), made reproducible.
    nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
    if m.bias is not None:
        bound = 1.0 / math.sqrt(m.in_features) if m.in_features > 0 else 0.0
        nn.init.uniform_(m.bias, -bound, bound, generator=generator)


@torch.no_grad()
def _linear_normal(m: nn.Linear, generator: torch.Generator | None) -> None:
    nn.init.normal_(m.weight, 0.0, 0.01, generator=generator)
    if m.bias is not None:
        nn.init.zeros_(m.bias)


_LINEAR_INITS = {"default": _linear_default, "normal": _linear_normal}


@torch.no_grad()
def init_weights(
    model: nn.Module, *, linear: str = "default", generator: torch.Generator | None = None
) -> nn.Module:
    """Kaiming-normal (fan_out) convs with zero bias, BN weight 1 bias 0, and the given Linear init.

    `linear` is "default" (PyTorch's uniform init) or "normal" (N(0, 0.01), zero bias).
    Modules are visited in definition order, so a generator seed fixes every value.
    """
    if linear not in _LINEAR_INITS:
        raise ModelError(f"linear init {linear!r} is unknown; choose from: {', '.join(_LINEAR_INITS)}")
    linear_init = _LINEAR_INITS[linear]
    for m in model.modules():
        if isinstance(m, _CONV):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=generator)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, _NORM):
            if getattr(m, "weight", None) is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
        elif isinstance(m, nn.Linear):
            linear_init(m, generator)
    return model


def check_dropout(model: str, dropout: float) -> float:
    """A dropout probability in [0, 1), else a ModelError naming the model."""
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ModelError(f"model {model!r}: dropout must be a number in [0, 1), got {dropout!r}")
    return float(dropout)


def spatial(model: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(C, H, W) of a convolutional model's input, else a ModelError naming the model."""
    if len(input_shape) != 3:
        raise ModelError(
            f"model {model!r} takes images: input_shape must be (C, H, W), got {tuple(input_shape)}"
        )
    c, h, w = input_shape
    return int(c), int(h), int(w)
