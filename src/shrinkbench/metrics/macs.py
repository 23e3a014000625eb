"""Exact multiply-accumulate counts of conv and linear layers, dense and sparse, per example."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

from shrinkbench.metrics._common import (
    ExampleInput,
    as_inputs,
    batch_size,
    eval_mode,
    forward,
    per_example,
    single_example,
    weight_density,
)

MacRule = Callable[[nn.Module, tuple[Any, ...], Any], int]
"""MACs of one call of a module over the whole batch, from the module, its inputs and its output."""

MAC_RULES: dict[type, MacRule] = {}


def register_mac_rule(*module_types: type) -> Callable[[MacRule], MacRule]:
    """Decorator: count the MACs of these module types (and their subclasses) with the function."""

    def decorate(rule: MacRule) -> MacRule:
        for module_type in module_types:
            MAC_RULES[module_type] = rule
        return rule

    return decorate


def mac_rule(module: nn.Module) -> MacRule | None:
    """The MAC rule of a module's class or its nearest registered base class, or None."""
    for cls in type(module).__mro__:
        if cls in MAC_RULES:
            return MAC_RULES[cls]
    return None


@register_mac_rule(nn.Conv1d, nn.Conv2d, nn.Conv3d)
def _conv_macs(module: nn.Module, inputs: tuple[Any, ...], output: torch.Tensor) -> int:
    # Each output element sums over in_channels/groups input channels times the kernel window.
    return output.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)


@register_mac_rule(nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
def _conv_transpose_macs(module: nn.Module, inputs: tuple[Any, ...], output: torch.Tensor) -> int:
    # Each input element meets out_channels/groups filters of the kernel window: the MACs of the
    # forward convolution whose adjoint this layer is.
    return inputs[0].numel() * (module.out_channels // module.groups) * math.prod(module.kernel_size)


@register_mac_rule(nn.Linear)
def _linear_macs(module: nn.Module, inputs: tuple[Any, ...], output: torch.Tensor) -> int:
    return output.numel() * module.in_features


class LayerMacs(NamedTuple):
    """MACs of one layer for one input example: dense, and scaled by the weight's mask density."""

    name: str
    kind: str
    dense: int
    sparse: float
    density: float


@dataclass(frozen=True)
class MacReport:
    """Per-layer and total MACs for one input example, and the theoretical speedup."""

    layers: list[LayerMacs]

    @property
    def dense(self) -> int:
        """MACs of the unpruned network."""
        return sum(layer.dense for layer in self.layers)

    @property
    def sparse(self) -> float:
        """MACs left after pruning: each layer's dense MACs times its weight density."""
        return sum(layer.sparse for layer in self.layers)

    @property
    def speedup(self) -> float:
        """Theoretical speedup dense / sparse (inf when all counted MACs are pruned, 1.0 when none)."""
        dense, sparse = self.dense, self.sparse
        if dense == 0:
            return 1.0
        return dense / sparse if sparse > 0 else math.inf


def mac_layers(model: nn.Module) -> list[tuple[str, nn.Module, MacRule]]:
    """(qualified name, module, rule) of every module with a MAC rule, in module order."""
    found = []
    for name, module in model.named_modules():
        rule = mac_rule(module)
        if rule is not None:
            found.append((name, module, rule))
    return found


def count_macs(model: nn.Module, example_input: ExampleInput) -> MacReport:
    """Count dense and sparse MACs of every conv and linear layer for ONE example, in one forward pass."""
    inputs = single_example(as_inputs(example_input, model))
    layers = mac_layers(model)
    totals = [0] * len(layers)

    def make_hook(index: int, rule: MacRule) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            totals[index] += rule(module, args, output)

        return hook

    handles = [module.register_forward_hook(make_hook(i, rule)) for i, (_, module, rule) in enumerate(layers)]
    try:
        with eval_mode(model), torch.no_grad():
            forward(model, inputs)
    finally:
        for handle in handles:
            handle.remove()

    n = batch_size(inputs)
    report = []
    for (name, module, _), total in zip(layers, totals):
        density = weight_density(module)
        dense = per_example(total, n)
        report.append(LayerMacs(name, type(module).__name__, dense, dense * density, density))
    return MacReport(report)
