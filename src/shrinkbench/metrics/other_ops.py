"""Counts of the operations MACs leave out: normalization, pooling, activations, tensor additions.

The forward pass runs under a TorchDispatchMode, so every ATen operator is seen, whether it was
called by a module or by a functional call in `forward` (`F.relu`, `x + identity`). Operators run
inside a conv or linear layer (its bias, its padding) belong to its MACs and are skipped.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from shrinkbench.metrics._common import (
    ExampleInput,
    as_inputs,
    batch_size,
    eval_mode,
    forward,
    per_example,
    single_example,
)
from shrinkbench.metrics.macs import WEIGHTED_LAYERS, mac_rule

CATEGORIES = ("normalization", "pooling", "activation", "addition")

OpCounter = Callable[[tuple[Any, ...], Any], int]
"""Operations of one ATen call over the whole batch, from its arguments and its result."""

OP_COUNTERS: dict[Any, tuple[str, OpCounter]] = {}

# Modules whose implementation decomposes into generic ops on some backends: counted whole
# (output elements) and their inner ops skipped.
MODULE_CATEGORIES: dict[type, str] = {}
if hasattr(nn, "RMSNorm"):
    MODULE_CATEGORIES[nn.RMSNorm] = "normalization"


def register_ops(category: str, *names: str) -> Callable[[OpCounter], OpCounter]:
    """Decorator: count the named ATen operators (those this PyTorch has) in the category."""

    def decorate(counter: OpCounter) -> OpCounter:
        for name in names:
            packet = getattr(torch.ops.aten, name, None)
            if packet is not None:
                OP_COUNTERS[packet] = (category, counter)
        return counter

    return decorate


def _first(result: Any) -> torch.Tensor:
    return result[0] if isinstance(result, (tuple, list)) else result


@register_ops(
    "normalization",
    "native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_no_training",
    "_native_batch_norm_legit_functional", "_batch_norm_with_update", "_batch_norm_with_update_functional",
    "_batch_norm_no_update", "cudnn_batch_norm", "miopen_batch_norm", "native_layer_norm",
    "native_group_norm", "_fused_rms_norm",
)  # fmt: skip
@register_ops(
    "activation",
    "relu", "relu_", "relu6", "gelu", "gelu_", "silu", "silu_", "sigmoid", "sigmoid_", "tanh", "tanh_",
    "hardtanh", "hardtanh_", "leaky_relu", "leaky_relu_", "elu", "elu_", "celu", "celu_", "selu", "selu_",
    "hardswish", "hardswish_", "hardsigmoid", "hardsigmoid_", "mish", "mish_", "softplus", "_prelu_kernel",
    "threshold", "threshold_", "_softmax", "_log_softmax",
)  # fmt: skip
def _elements(args: tuple[Any, ...], result: Any) -> int:
    return _first(result).numel()


@register_ops("addition", "add", "add_", "sub", "sub_")
def _tensor_additions(args: tuple[Any, ...], result: Any) -> int:
    # Only tensor + tensor (residual connections, broadcast biases); x + 1 is not counted.
    both = len(args) >= 2 and all(isinstance(a, torch.Tensor) for a in args[:2])
    return _first(result).numel() if both else 0


def _window_elements(nd: int) -> OpCounter:
    def counter(args: tuple[Any, ...], result: Any) -> int:
        kernel = list(args[1])
        kernel = kernel * nd if len(kernel) == 1 else kernel
        return _first(result).numel() * math.prod(kernel)

    return counter


for _nd in (1, 2, 3):
    register_ops("pooling", f"max_pool{_nd}d", f"max_pool{_nd}d_with_indices", f"avg_pool{_nd}d")(
        _window_elements(_nd)
    )


def _adaptive_window_sum(size_in: int, size_out: int) -> int:
    """Sum over the output positions of the adaptive window lengths along one dimension."""
    return sum(
        -((-(i + 1) * size_in) // size_out) - (i * size_in) // size_out for i in range(size_out)
    )


def _adaptive_windows(nd: int) -> OpCounter:
    def counter(args: tuple[Any, ...], result: Any) -> int:
        x, out = args[0], _first(result)
        spatial_in, spatial_out = x.shape[-nd:], out.shape[-nd:]
        planes = x.numel() // max(1, math.prod(spatial_in))
        return planes * math.prod(_adaptive_window_sum(i, o) for i, o in zip(spatial_in, spatial_out))

    return counter


for _nd in (1, 2, 3):
    register_ops(
        "pooling",
        f"adaptive_avg_pool{_nd}d", f"_adaptive_avg_pool{_nd}d", f"adaptive_max_pool{_nd}d",
    )(_adaptive_windows(_nd))  # fmt: skip


@register_ops("pooling", "mean")
def _mean_reduction(args: tuple[Any, ...], result: Any) -> int:
    # Global average pooling reaches the dispatcher as a mean: one addition per input element.
    return args[0].numel()


class _OpCounterMode(TorchDispatchMode):
    """Adds up the registered ATen operators run outside skipped modules."""

    def __init__(self) -> None:
        super().__init__()
        self.counts = dict.fromkeys(CATEGORIES, 0)
        self.skip_depth = 0

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        result = func(*args, **(kwargs or {}))
        entry = OP_COUNTERS.get(func.overloadpacket)
        if entry is not None and self.skip_depth == 0:
            category, counter = entry
            self.counts[category] += counter(args, result)
        return result


def count_other_ops(model: nn.Module, example_input: ExampleInput) -> dict[str, int]:
    """Count normalization, pooling, activation and addition operations for ONE example."""
    inputs = single_example(as_inputs(example_input, model))
    mode = _OpCounterMode()

    def enter(module: nn.Module, args: Any) -> None:
        mode.skip_depth += 1

    def make_exit(category: str | None) -> Callable[..., None]:
        def leave(module: nn.Module, args: Any, output: Any) -> None:
            mode.skip_depth -= 1
            if category is not None and mode.skip_depth == 0:
                mode.counts[category] += _first(output).numel()

        return leave

    handles = []
    for module in model.modules():
        category = next((MODULE_CATEGORIES[c] for c in type(module).__mro__ if c in MODULE_CATEGORIES), None)
        if category is not None or isinstance(module, WEIGHTED_LAYERS) or mac_rule(module) is not None:
            handles.append(module.register_forward_pre_hook(enter))
            handles.append(module.register_forward_hook(make_exit(category), always_call=True))
    try:
        with eval_mode(model), torch.no_grad(), mode:
            forward(model, inputs)
    finally:
        for handle in handles:
            handle.remove()
    n = batch_size(inputs)
    return {category: per_example(total, n) for category, total in mode.counts.items()}
