"""Helpers shared by the metrics: example inputs, eval-mode forward passes, mask densities."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Union

import torch
from torch import nn

from shrinkbench.errors import ConfigError, ModelError
from shrinkbench.pruning.masks import get_mask

ExampleInput = Union[torch.Tensor, tuple[torch.Tensor, ...], list[torch.Tensor]]


def as_inputs(example_input: ExampleInput, model: nn.Module | None = None) -> tuple[torch.Tensor, ...]:
    """Return the example input as a tuple of tensors, on the model's device when it has one."""
    inputs = (example_input,) if isinstance(example_input, torch.Tensor) else example_input
    if not isinstance(inputs, (tuple, list)) or not inputs or not all(
        isinstance(t, torch.Tensor) for t in inputs
    ):
        raise ConfigError(
            "example_input must be a tensor or a non-empty tuple of tensors, "
            f"got {type(example_input).__name__}"
        )
    if inputs[0].dim() == 0 or inputs[0].shape[0] == 0:
        raise ConfigError(
            f"example_input must have a non-empty batch dimension first, got shape {tuple(inputs[0].shape)}"
        )
    device = model_device(model) if model is not None else None
    if device is not None:
        inputs = tuple(t.to(device) for t in inputs)
    return tuple(inputs)


def batch_size(inputs: tuple[torch.Tensor, ...]) -> int:
    """Batch size of an example input: the first dimension of its first tensor."""
    return int(inputs[0].shape[0])


def single_example(inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """The first example of a batch (every tensor sliced alike), or the inputs as given when the
    tensors disagree on the batch size. Counts are per example, so shapes are all a count needs."""
    n = batch_size(inputs)
    if n > 1 and all(t.dim() > 0 and t.shape[0] == n for t in inputs):
        return tuple(t[:1] for t in inputs)
    return inputs


def per_example(total: int, n: int) -> int:
    """A count over a batch of n, divided by n (exact for any model that treats examples alike)."""
    return total // n if total % n == 0 else round(total / n)


def model_device(model: nn.Module) -> torch.device | None:
    """Device of the model's first parameter or buffer, None for a model with neither."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return None


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode, restoring each one's own training flag afterwards."""
    training = [m for m in model.modules() if m.training]
    if training:  # nn.Module.__setattr__ is slow: touch nothing when the model is already in eval mode
        model.eval()
    try:
        yield model
    finally:
        for module in training:
            module.training = True


def forward(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> Any:
    """Run the model on the inputs; a shape mismatch becomes a ModelError naming the input shapes."""
    try:
        return model(*inputs)
    except RuntimeError as exc:
        shapes = ", ".join(str(tuple(t.shape)) for t in inputs)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        message = f"the model's forward pass failed on example input of shape {shapes}: {first}"
        raise ModelError(message) from exc


def kept_entries(module: nn.Module, name: str, param: torch.Tensor) -> int:
    """Entries of a parameter not removed by its mask (all of them when it has no mask)."""
    mask = get_mask(module, name)
    return param.numel() if mask is None else int(torch.count_nonzero(mask).item())
