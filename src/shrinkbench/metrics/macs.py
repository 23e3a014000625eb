"""Exact multiply-accumulate counts, dense and sparse, per example, counted at the dispatcher.

The forward pass of ONE example runs under a TorchDispatchMode, so every ATen operator is seen,
whether a module or a functional call in `forward` ran it (`F.linear`, `torch.matmul`,
`F.scaled_dot_product_attention`, attention inside `nn.MultiheadAttention`, RNN cells). Each
matmul or convolution counts its MACs from the real shapes. When one operand is (a view of) a
parameter, the MACs are scaled by that parameter's mask density and attributed to the module that
owns it; weight-free products (attention scores) are dense and attributed to the module running.
A shared (tied) parameter is found wherever it is used. Operators that carry MACs but have no rule
are listed in `MacReport.uncounted` and warned about once. Units: MACs; FLOPs = 2 x MACs.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, NamedTuple

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
from shrinkbench.pruning.masks import masked_parameters

MacRule = Callable[[nn.Module, tuple[Any, ...], Any], int]
"""MACs of one call of a module over the whole batch, from the module, its inputs and its output."""

MAC_RULES: dict[type, MacRule] = {}

# Layers listed in the per-layer report even when the forward pass never calls them (0 MACs).
WEIGHTED_LAYERS: tuple[type, ...] = (
    nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)

OpMacs = Callable[[tuple[Any, ...], Any], list[tuple[int, tuple[int, ...]]]]
"""MACs of one ATen call over the whole batch, in parts: (MACs, argument positions that may hold the
weight whose mask density scales them)."""

OP_RULES: dict[Any, OpMacs] = {}
# Operator names that carry multiply-accumulates: one of these without a rule is reported uncounted.
MAC_WORDS = ("mm", "conv", "matmul", "linear", "attention", "lstm", "gru", "rnn", "dot", "mv",
             "einsum", "bilinear")
_WARNED: set[str] = set()


def register_mac_rule(*module_types: type) -> Callable[[MacRule], MacRule]:
    """Decorator: count the MACs of these module types (and subclasses) with the function instead
    of the operators they run (for custom modules whose kernels the dispatcher does not show)."""

    def decorate(rule: MacRule) -> MacRule:
        for module_type in module_types:
            MAC_RULES[module_type] = rule
        return rule

    return decorate


def mac_rule(module: nn.Module) -> MacRule | None:
    """The registered module rule of a module's class or its nearest base class, or None."""
    for cls in type(module).__mro__:
        if cls in MAC_RULES:
            return MAC_RULES[cls]
    return None


def register_op(*names: str) -> Callable[[OpMacs], OpMacs]:
    """Decorator: count the named ATen operators (those this PyTorch has) with the function."""

    def decorate(rule: OpMacs) -> OpMacs:
        for name in names:
            packet = getattr(torch.ops.aten, name, None)
            if packet is not None:
                OP_RULES[packet] = rule
        return rule

    return decorate


def _first(result: Any) -> torch.Tensor:
    return result[0] if isinstance(result, (tuple, list)) else result


@register_op("mm", "bmm")
def _matmul(args: tuple[Any, ...], result: Any) -> list[tuple[int, tuple[int, ...]]]:
    # (n, k) @ (k, m), batched or not: every output element sums k products
    return [(result.numel() * args[0].shape[-1], (0, 1))]


@register_op("addmm", "baddbmm")
def _add_matmul(args: tuple[Any, ...], result: Any) -> list[tuple[int, tuple[int, ...]]]:
    return [(result.numel() * args[1].shape[-1], (1, 2))]


@register_op("mv", "addmv", "dot", "vdot")
def _vector(args: tuple[Any, ...], result: Any) -> list[tuple[int, tuple[int, ...]]]:
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    a = tensors[-2]
    return [(max(result.numel(), 1) * a.shape[-1], tuple(range(len(tensors))))]


@register_op("convolution", "_convolution")
def _convolution(args: tuple[Any, ...], result: Any) -> list[tuple[int, tuple[int, ...]]]:
    x, weight = args[0], args[1]
    transposed = bool(args[6]) if len(args) > 6 and isinstance(args[6], bool) else False
    per_element = math.prod(weight.shape[1:])
    # A convolution sums C_in/groups x kernel products per output element; a transposed one spreads
    # each input element over C_out/groups x kernel outputs (the adjoint's count).
    return [((x.numel() if transposed else _first(result).numel()) * per_element, (1,))]


@register_op("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention",
             "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention",
             "_scaled_dot_product_fused_attention_overrideable")
def _attention(args: tuple[Any, ...], result: Any) -> list[tuple[int, tuple[int, ...]]]:
    q, k, v = args[0], args[1], args[2]
    rows = q.numel() // q.shape[-1]  # batch x heads x query positions
    # scores: every query row against every key (E each); output: every score times a value row.
    return [(rows * k.shape[-2] * (q.shape[-1] + v.shape[-1]), ())]


@register_op("mkldnn_rnn_layer")
def _rnn_layer(args: tuple[Any, ...], result: Any) -> list[tuple[int, tuple[int, ...]]]:
    # One layer and direction of an LSTM/GRU/RNN on CPU: at every step and sequence, the input
    # through weight_ih (gates x hidden, input) and the state through weight_hh (gates x hidden, hidden).
    x, w_ih, w_hh = args[0], args[1], args[2]
    steps = x.numel() // x.shape[-1]
    return [(steps * w_ih.numel(), (1,)), (steps * w_hh.numel(), (2,))]


class LayerMacs(NamedTuple):
    """MACs of one layer for one input example: dense, and scaled by the weights' mask densities."""

    name: str
    kind: str
    dense: int
    sparse: float
    density: float


@dataclass(frozen=True)
class MacReport:
    """Per-layer and total MACs for one input example, the theoretical speedup, and what no rule
    covered (`uncounted`: ATen operator -> calls)."""

    layers: list[LayerMacs]
    uncounted: dict[str, int] = field(default_factory=dict)

    @property
    def dense(self) -> int:
        """MACs of the unpruned network."""
        return sum(layer.dense for layer in self.layers)

    @property
    def sparse(self) -> float:
        """MACs left after pruning: each product scaled by the density of its weight."""
        return sum(layer.sparse for layer in self.layers)

    @property
    def flops_dense(self) -> int:
        """FLOPs of the unpruned network: 2 x MACs."""
        return 2 * self.dense

    @property
    def flops_sparse(self) -> float:
        """FLOPs left after pruning: 2 x MACs."""
        return 2 * self.sparse

    @property
    def speedup(self) -> float:
        """Theoretical speedup dense / sparse (inf when all counted MACs are pruned, 1.0 when none)."""
        dense, sparse = self.dense, self.sparse
        if dense == 0:
            return 1.0
        return dense / sparse if sparse > 0 else math.inf


def _storage_key(tensor: torch.Tensor) -> tuple[Any, int] | None:
    try:
        return (tensor.device, tensor.untyped_storage().data_ptr())
    except (RuntimeError, NotImplementedError):  # no storage (a meta or functional tensor)
        return None


def _parameter_table(model: nn.Module) -> dict[tuple[Any, int], tuple[float, list[str]]]:
    """Storage of every parameter -> (mask density, names of the modules that hold it directly)."""
    densities = {}
    for _, module, local, mask in masked_parameters(model):
        param = module._parameters[local]
        densities[id(param)] = float(torch.count_nonzero(mask).item()) / max(mask.numel(), 1)
    table: dict[tuple[Any, int], tuple[float, list[str]]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        for param in module._parameters.values():
            if param is None or param.numel() == 0:
                continue
            key = _storage_key(param)
            if key is None:
                continue
            density, owners = table.get(key, (densities.get(id(param), 1.0), []))
            density = min(density, densities.get(id(param), 1.0))
            if name not in owners:
                owners.append(name)
            table[key] = (density, owners)
    return table


class _MacMode(TorchDispatchMode):
    """Adds up MACs of the ATen operators run, per attributed module."""

    def __init__(self, table: dict[tuple[Any, int], tuple[float, list[str]]]) -> None:
        super().__init__()
        self.table = table
        self.stack: list[str] = [""]
        self.skip = 0
        self.dense: dict[str, int] = {}
        self.sparse: dict[str, float] = {}
        self.uncounted: dict[str, int] = {}

    def add(self, name: str, dense: int, density: float) -> None:
        self.dense[name] = self.dense.get(name, 0) + dense
        self.sparse[name] = self.sparse.get(name, 0.0) + dense * density

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: Any = None) -> Any:
        result = func(*args, **(kwargs or {}))
        if self.skip:
            return result
        rule = OP_RULES.get(func.overloadpacket)
        if rule is None:
            name = func.overloadpacket.__name__
            if any(word in name for word in MAC_WORDS) and not name.endswith("_backward"):
                self.uncounted[name] = self.uncounted.get(name, 0) + 1
            return result
        for macs, weight_positions in rule(args, result):
            density, owner = 1.0, self.stack[-1]
            for position in weight_positions:
                arg = args[position] if position < len(args) else None
                hit = self.table.get(_storage_key(arg)) if isinstance(arg, torch.Tensor) else None
                if hit is not None:
                    density, owners = hit
                    owner = self.stack[-1] if self.stack[-1] in owners else owners[0]
                    break
            self.add(owner, macs, density)
        return result


@contextmanager
def _no_fused_fastpath() -> Iterator[None]:
    """Turn off the fused inference kernels of nn.MultiheadAttention and nn.TransformerEncoderLayer
    for the count, so that their matmuls are seen one by one (results are the same)."""
    mha = getattr(torch.backends, "mha", None)
    if mha is None or not hasattr(mha, "set_fastpath_enabled"):
        yield
        return
    before = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(before)


def count_macs(model: nn.Module, example_input: ExampleInput) -> MacReport:
    """Count dense and sparse MACs of ONE example in one forward pass (see the module docstring)."""
    inputs = single_example(as_inputs(example_input, model))
    mode = _MacMode(_parameter_table(model))
    names = {id(m): n for n, m in model.named_modules()}

    def enter(module: nn.Module, args: Any) -> None:
        mode.stack.append(names.get(id(module), mode.stack[-1]))
        if mac_rule(module) is not None:
            mode.skip += 1

    def leave(module: nn.Module, args: Any, output: Any) -> None:
        rule = mac_rule(module)
        if rule is not None:
            mode.skip -= 1
            if mode.skip == 0:
                density = _weight_density(module, mode.table)
                mode.add(mode.stack[-1], rule(module, args, output), density)
        mode.stack.pop()

    handles = []
    for module in model.modules():
        handles.append(module.register_forward_pre_hook(enter))
        handles.append(module.register_forward_hook(leave, always_call=True))
    try:
        with eval_mode(model), torch.no_grad(), _no_fused_fastpath(), mode:
            forward(model, inputs)
    finally:
        for handle in handles:
            handle.remove()
    n = batch_size(inputs)
    layers = []
    for name, module in model.named_modules():
        if name not in mode.dense and not isinstance(module, WEIGHTED_LAYERS):
            continue
        dense_total, sparse_total = mode.dense.get(name, 0), mode.sparse.get(name, 0.0)
        dense = per_example(dense_total, n)
        density = sparse_total / dense_total if dense_total else _weight_density(module, mode.table)
        layers.append(LayerMacs(name, type(module).__name__, dense, dense * density, density))
    if mode.uncounted:
        new = sorted(set(mode.uncounted) - _WARNED)
        if new:
            _WARNED.update(new)
            warnings.warn(f"count_macs: no MAC rule for {', '.join(new)}; their MACs are not counted "
                          "(listed in MacReport.uncounted)", RuntimeWarning, stacklevel=2)
    return MacReport(layers, dict(mode.uncounted))


def _weight_density(module: nn.Module, table: dict[tuple[Any, int], tuple[float, list[str]]]) -> float:
    weight = module._parameters.get("weight")
    if not isinstance(weight, torch.Tensor):
        return 1.0
    hit = table.get(_storage_key(weight))
    return hit[0] if hit is not None else 1.0
