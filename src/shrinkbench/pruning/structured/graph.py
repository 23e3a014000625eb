"""Channel dependency groups, found by tracing the model with torch.fx and running it once.

Every channel of every traced tensor gets an integer id; operators tie ids together (a residual
addition ties channel i of both operands, a BatchNorm keeps its input's ids, a flatten repeats
each channel's id over its spatial positions, a concatenation joins id lists) and union-find
merges tied ids into classes. One class is one channel that must be kept or removed as a whole,
in every layer it touches. A class is *pinned* (never removed) when it reaches the model's input
or output, an operator this module does not understand, or an operator that does not map a zero
channel to zero (a sigmoid, an added constant, a LayerNorm over channels, a channel padding):
removing it would change the model's outputs. Classes that touch the same parameter dimensions
form a group (e.g. the 64 hidden channels of one residual block).
"""

from __future__ import annotations

import math
import operator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn
from torch.nn.utils import parametrize
from torch.utils.flop_counter import FlopCounterMode
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from ...errors import PruningError
from ..prunable import _check_patterns, _ignored


@dataclass
class Chan:
    """The channel ids of one traced tensor: `dim` is its channel dimension, `ids` one id per entry."""

    dim: int
    ids: Tensor  # int64, length = the tensor's size along `dim`


@dataclass
class Group:
    """Channels removed together: `classes[i]` is one channel; `keys` are the dimensions they span."""

    index: int
    classes: list[int]
    keys: tuple[tuple[str, int], ...]  # (parameter, dim) the group's channels index
    producers: tuple[str, ...]  # modules whose output channels these are
    has_norm: bool
    producer_params: tuple[str, ...] = ()  # their weights (filters, attention projections)

    @property
    def size(self) -> int:
        return len(self.classes)


@dataclass
class ModuleCall:
    """One prunable module and how its dimensions map to classes."""

    name: str
    module: nn.Module
    dims: dict[str, dict[int, Tensor]] = field(default_factory=dict)  # param -> dim -> class ids
    macs: int = 0  # multiply-accumulates of its calls on the example input
    # (MACs, parameter, dims): MACs that scale with the kept fraction of those dims of the parameter
    mac_parts: list[tuple[int, str, tuple[int, ...]]] = field(default_factory=list)


@dataclass
class DependencyGraph:
    """The result of tracing: classes, groups, where each class lives, and per-module MACs."""

    classes: dict[int, list[tuple[str, int, Tensor]]]  # class -> [(param, dim, index tensor)]
    groups: list[Group]
    modules: dict[str, ModuleCall]
    pinned: dict[str, str]  # a few pinned places -> why (for messages)
    param_shapes: dict[str, tuple[int, ...]]
    dense_macs: int
    fixed_macs: int = 0  # of ops whose cost removal does not change (counted by FlopCounterMode)
    uncounted: tuple[str, ...] = ()  # nodes that may carry MACs that nothing here counts


class _UnionFind:
    def __init__(self) -> None:
        self.parent: list[int] = [0]  # id 0 is the pin

    def fresh(self, n: int) -> Tensor:
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        return torch.arange(start, start + n, dtype=torch.int64)

    def find(self, x: int) -> int:
        parent = self.parent
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            if rb == 0:
                ra, rb = rb, ra
            self.parent[rb] = ra  # the pin (0) stays a root

    def union_all(self, a: Tensor, b: Tensor) -> None:
        for x, y in zip(a.tolist(), b.tolist()):
            if x != y:
                self.union(x, y)

    def pin(self, ids: Tensor, reason: str) -> None:
        """Tie `ids` to the pin; `reason` is for the reader (messages keep theirs in `pinned`)."""
        for x in set(ids.tolist()):
            self.union(0, x)


# Modules and functions that map each channel to itself and a zero channel to zero.
_KEEP_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish, nn.Tanh,
    nn.Hardtanh, nn.Softshrink, nn.Hardshrink, nn.Tanhshrink, nn.Dropout, nn.Dropout1d,
    nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity, nn.MaxPool1d, nn.MaxPool2d,
    nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d, nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d,
    nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d,
)
# Modules whose output mixes channels (a zero channel does not stay zero): what enters is pinned.
_NORMALIZING = (nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d,
                nn.LocalResponseNorm, nn.RMSNorm, nn.Softmax, nn.Softmin, nn.LogSoftmax)
_KEEP_FUNCTIONS = {
    F.relu, F.relu_, F.relu6, F.leaky_relu, F.elu, F.gelu, F.silu, F.mish, F.hardswish,
    F.hardtanh, F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.max_pool1d, F.max_pool2d,
    F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d, F.adaptive_avg_pool3d, F.adaptive_max_pool1d, F.adaptive_max_pool2d,
    F.adaptive_max_pool3d, F.interpolate, torch.relu, torch.relu_, torch.tanh, F.tanh,
    torch.nn.functional.hardshrink, operator.neg, torch.neg, torch.abs, operator.pos,
}
_KEEP_METHODS = {"relu", "relu_", "tanh", "contiguous", "clone", "detach", "float", "double",
                 "half", "bfloat16", "to", "type_as", "abs", "neg", "cpu", "cuda"}
_ELEMENTWISE = {operator.add, operator.iadd, operator.sub, operator.isub, torch.add, torch.sub,
                operator.mul, operator.imul, torch.mul, operator.truediv, operator.itruediv,
                torch.div, torch.maximum, torch.minimum}
_ELEMENTWISE_METHODS = {"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_"}
_DIVISION = {operator.truediv, operator.itruediv, torch.div, "div", "div_"}
_ZERO_KEEPING = {operator.mul, operator.imul, torch.mul, "mul", "mul_", *_DIVISION}
_FLATTEN = {torch.flatten}
_CAT = {torch.cat, torch.concat}
_REDUCE_METHODS = {"mean", "sum", "amax", "amin"}
_REDUCE_FUNCTIONS = {torch.mean, torch.sum, torch.amax, torch.amin}
_SHAPE_METHODS = {"view", "reshape", "flatten"}


def _name_of(target: Any) -> str:
    return getattr(target, "__name__", None) or str(target)


class _Tracer(fx.Tracer):
    """symbolic_trace that remembers which module it was inside, to name it when tracing fails."""

    def __init__(self) -> None:
        super().__init__()
        self.inside: list[str] = []

    def call_module(self, m: nn.Module, forward: Any, args: Any, kwargs: Any) -> Any:
        name = self.path_of_module(m)
        self.inside.append(name)
        out = super().call_module(m, forward, args, kwargs)
        self.inside.pop()
        return out


def trace(model: nn.Module) -> fx.GraphModule:
    """`model` as a torch.fx GraphModule; an untraceable model raises one line naming the module."""
    tracer = _Tracer()
    try:
        graph = tracer.trace(model)
    except Exception as exc:  # fx raises TraceError, TypeError, RuntimeError... from user code
        where = tracer.inside[-1] if tracer.inside else ""
        place = f"module {where!r} ({type(model.get_submodule(where)).__name__})" if where else \
            f"the forward of {type(model).__name__}"
        detail = " ".join(str(exc).split())[:200]
        raise PruningError(
            f"structured pruning cannot trace the model: {place} stopped torch.fx ({detail}); "
            "make that forward free of data-dependent control flow, or use unstructured pruning"
        ) from None
    return fx.GraphModule(tracer.root, graph)


class _Propagate(fx.Interpreter):
    """Runs the traced model once, giving every tensor's channels ids and recording couplings."""

    def __init__(self, gm: fx.GraphModule, model: nn.Module, shared: "_Propagate | None" = None) -> None:
        super().__init__(gm, garbage_collect_values=False)
        self.model = model
        self.count = shared is None  # a second pass (the training-mode trace) only adds couplings
        self.uf = _UnionFind() if shared is None else shared.uf
        self.chans: dict[fx.Node, Any] = {}
        self.calls: dict[str, ModuleCall] = {} if shared is None else shared.calls
        self.pinned: dict[str, str] = {} if shared is None else shared.pinned
        self.attrs: set[str] = set() if shared is None else shared.attrs
        self.fixed_macs: dict[fx.Node, int] = {}  # MACs of nodes whose cost does not shrink
        self.uncounted: list[str] = []  # nodes that may multiply-accumulate, with no rule here

    # -- helpers -------------------------------------------------------------------------------
    def _pin(self, chan: Any, where: str, why: str) -> None:
        for c in _chans_in(chan):
            self.uf.pin(c.ids, why)
            if len(self.pinned) < 20:
                self.pinned.setdefault(where, why)

    def _fresh(self, value: Any, dim: int | None = None) -> Any:
        if isinstance(value, Tensor) and value.dim() >= 1:
            d = (1 if value.dim() >= 2 else 0) if dim is None else dim % value.dim()
            return Chan(d, self.uf.fresh(value.shape[d]))
        if isinstance(value, (tuple, list)):
            return [self._fresh(v) for v in value]
        if isinstance(value, dict):
            return {k: self._fresh(v) for k, v in value.items()}
        return None

    def _pinned_on(self, value: Any, dim: int | None, where: str, why: str) -> Any:
        """Fresh pinned ids for `value`, on channel dimension `dim` (default: 1)."""
        chan = self._fresh(value, dim)
        self._pin(chan, where, why)
        return chan

    def _pinned_fresh(self, value: Any, where: str, why: str) -> Any:
        return self._pinned_on(value, None, where, why)

    def _chan(self, arg: Any) -> Any:
        if isinstance(arg, fx.Node):
            return self.chans.get(arg)
        if isinstance(arg, (tuple, list)):
            return [self._chan(a) for a in arg]
        if isinstance(arg, dict):
            return {k: self._chan(a) for k, a in arg.items()}
        return None

    def _value(self, arg: Any) -> Any:
        return self.env[arg] if isinstance(arg, fx.Node) else arg

    # -- the pass ------------------------------------------------------------------------------
    def run_node(self, n: fx.Node) -> Any:
        module = self.model.get_submodule(str(n.target)) if n.op == "call_module" else None
        own = isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) and \
            "weight" in module._parameters and not parametrize.is_parametrized(module)
        if own or not self.count or n.op not in ("call_module", "call_function", "call_method"):
            out = super().run_node(n)
        else:  # MACs this pass does not model stay as they are: counted once, as a constant
            with FlopCounterMode(display=False) as counter:
                out = super().run_node(n)
            self.fixed_macs[n] = counter.get_total_flops() // 2
            if not self.fixed_macs[n] and _may_multiply(n, self.model):
                self.uncounted.append(str(n.target) if n.op == "call_module" else
                                      f"{_name_of(n.target)} ({n.name})")
        self.chans[n] = self._rule(n, out)
        return out

    def _rule(self, n: fx.Node, out: Any) -> Any:
        where = f"{n.op} {n.name}"
        if n.op == "placeholder":
            return self._pinned_fresh(out, "the model's input", "reaches the model's input")
        if n.op == "get_attr":
            self.attrs.add(str(n.target))
            return None  # a parameter or buffer used directly: its consumers pin what they touch
        if n.op == "output":
            self._pin(self._chan(n.args[0]), "the model's output", "reaches the model's output")
            return None
        ins = [a for a in n.all_input_nodes]
        if n.op == "call_module":
            return self._module(n, self.model.get_submodule(str(n.target)), out)
        target = n.target
        if n.op == "call_method":
            return self._method(n, str(target), out)
        # call_function
        if target is operator.getitem:
            return self._getitem(n, out)
        if target in _KEEP_FUNCTIONS:
            return self._same(n, out)
        if target in _ELEMENTWISE:
            return self._elementwise(n, target, out)
        if target in _FLATTEN:
            start = n.args[1] if len(n.args) > 1 else n.kwargs.get("start_dim", 0)
            end = n.args[2] if len(n.args) > 2 else n.kwargs.get("end_dim", -1)
            return self._flatten(n.args[0], start, end, out, where)
        if target in _CAT:
            tensors = n.args[0] if n.args else n.kwargs.get("tensors")
            dim = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim", 0)
            return self._cat(list(tensors), dim, out, where)
        if target in _REDUCE_FUNCTIONS:
            return self._reduce(n, out, where)
        if target in (F.pad,):
            return self._pad(n, out, where)
        if target is getattr and isinstance(out, (int, torch.Size, tuple)):
            return None
        if not _holds_tensor(out):
            return None  # sizes, dtypes, shapes: no channels
        for arg in ins:
            self._pin(self._chan(arg), f"{_name_of(target)} ({n.name})",
                      f"passes through {_name_of(target)}, which structured pruning does not model")
        return self._pinned_fresh(out, where, f"comes out of {_name_of(target)}")

    def _same(self, n: fx.Node, out: Any) -> Any:
        chan = self._chan(n.args[0]) if n.args else None
        src = self._value(n.args[0]) if n.args else None
        if isinstance(chan, Chan) and isinstance(out, Tensor) and isinstance(src, Tensor) and \
                out.dim() == src.dim() and out.shape[chan.dim] == src.shape[chan.dim]:
            return chan
        self._pin(chan, n.name, f"changes the shape in {n.name}")
        return self._pinned_fresh(out, n.name, f"comes out of {n.name}")

    def _method(self, n: fx.Node, name: str, out: Any) -> Any:
        if name in _KEEP_METHODS:
            return self._same(n, out)
        if name in _ELEMENTWISE_METHODS:
            return self._elementwise(n, name, out)
        if name in _SHAPE_METHODS:
            return self._reshape(n, out)
        if name in _REDUCE_METHODS:
            return self._reduce(n, out, n.name)
        if name in ("size", "dim", "numel", "__len__") or not _holds_tensor(out):
            return None
        if not isinstance(out, Tensor):  # chunk, split, unbind, topk, ...: not modelled
            for arg in n.all_input_nodes:
                self._pin(self._chan(arg), f"method {name} ({n.name})",
                          f"passes through .{name}(), which structured pruning does not model")
            return self._pinned_fresh(out, n.name, f"comes out of .{name}()")
        if name in ("permute", "transpose"):
            chan = self._chan(n.args[0])
            src = self._value(n.args[0])
            if isinstance(chan, Chan):
                dims = [self._value(a) for a in n.args[1:]]
                if name == "transpose":
                    a, b = (int(d) % src.dim() for d in dims)
                    order = list(range(src.dim()))
                    order[a], order[b] = order[b], order[a]
                else:
                    order = [int(d) % src.dim() for d in (dims[0] if len(dims) == 1 and isinstance(
                        dims[0], (tuple, list)) else dims)]
                return Chan(order.index(chan.dim), chan.ids)
            return None
        for arg in n.all_input_nodes:
            self._pin(self._chan(arg), f"method {name} ({n.name})",
                      f"passes through .{name}(), which structured pruning does not model")
        return self._pinned_fresh(out, n.name, f"comes out of .{name}()")

    def _getitem(self, n: fx.Node, out: Any) -> Any:
        chan = self._chan(n.args[0])
        index = n.args[1]
        if isinstance(chan, (tuple, list)) and isinstance(index, int):
            return chan[index]
        src = self._value(n.args[0])
        if not isinstance(src, Tensor):
            return None
        if isinstance(chan, Chan):
            items = index if isinstance(index, tuple) else (index,)
            # plain slices before an Ellipsis: the channel dimension is kept whole?
            if all(isinstance(i, slice) or i is Ellipsis for i in items) and Ellipsis not in items:
                if chan.dim < len(items) and items[chan.dim] != slice(None):
                    self._pin(chan, n.name, "is sliced along its channels")
                    return self._pinned_fresh(out, n.name, "is a slice of channels")
                return chan
        self._pin(chan, n.name, "is indexed in a way structured pruning does not model")
        return self._pinned_fresh(out, n.name, "is indexed")

    def _elementwise(self, n: fx.Node, target: Any, out: Any) -> Any:
        args = list(n.args[:2]) + [n.kwargs.get("other")] if len(n.args) < 2 else list(n.args[:2])
        values = [self._value(a) for a in args]
        chans = [self._chan(a) for a in args]
        tensors = [(v, c) for v, c in zip(values, chans) if isinstance(v, Tensor)]
        if not isinstance(out, Tensor):
            return None
        zero_keeping = target in _ZERO_KEEPING
        outs = [c for v, c in tensors if isinstance(c, Chan) and v.dim() == out.dim()
                and v.shape[c.dim] == out.shape[c.dim] and out.shape[c.dim] > 1]
        if not outs:
            for _, c in tensors:
                self._pin(c, n.name, f"enters {_name_of(target)}")
            return self._pinned_fresh(out, n.name, f"comes out of {_name_of(target)}")
        base = outs[0]
        for v, c in tensors:
            if c is base:
                continue
            shift = out.dim() - v.dim()  # broadcasting aligns dimensions from the right
            size = v.shape[base.dim - shift] if base.dim - shift >= 0 else 1
            if isinstance(c, Chan) and c.dim + shift == base.dim and size == out.shape[base.dim]:
                self.uf.union_all(base.ids, c.ids)
                if target in _DIVISION:
                    self.uf.pin(c.ids, "divides")  # a zero divisor channel is not removable
            elif size == 1:
                # broadcast along the channels: zero stays zero only under multiplication
                self._pin(c, n.name, f"enters {_name_of(target)} broadcast")
                if not zero_keeping:
                    self._pin(base, n.name, f"has a tensor added in {n.name}")
            else:  # a tensor with one entry per channel that removal cannot resize
                self._pin(c, n.name, f"enters {_name_of(target)}")
                self._pin(base, n.name, f"meets a tensor of its size in {n.name} that is not "
                          "one of its channels")
        others = [v for v in values if not isinstance(v, Tensor) and v is not None]
        if others and not zero_keeping and any(v != 0 for v in others if isinstance(v, (int, float))):
            self._pin(base, n.name, f"has a constant added in {n.name}")
        if target in _DIVISION and values and not isinstance(values[0], Tensor):
            self._pin(base, n.name, "is a divisor")
        return Chan(base.dim, base.ids)

    def _flatten(self, arg: Any, start: int, end: int, out: Any, where: str) -> Any:
        chan, src = self._chan(arg), self._value(arg)
        if not isinstance(chan, Chan) or not isinstance(out, Tensor):
            return self._pinned_fresh(out, where, "is flattened") if isinstance(out, Tensor) else None
        nd = src.dim()
        s, e = start % nd, end % nd
        if chan.dim < s:
            return Chan(chan.dim, chan.ids)
        if chan.dim > e:
            return Chan(chan.dim - (e - s), chan.ids)
        inner = math.prod(src.shape[chan.dim + 1:e + 1])
        outer = math.prod(src.shape[s:chan.dim])
        ids = chan.ids.repeat_interleave(inner).repeat(outer)
        return Chan(s, ids)

    def _reshape(self, n: fx.Node, out: Any) -> Any:
        chan, src = self._chan(n.args[0]), self._value(n.args[0])
        if not isinstance(chan, Chan) or not isinstance(out, Tensor):
            return None if not isinstance(out, Tensor) else self._pinned_fresh(out, n.name, "reshaped")
        if str(n.target) == "flatten":
            start = n.args[1] if len(n.args) > 1 else n.kwargs.get("start_dim", 0)
            end = n.args[2] if len(n.args) > 2 else n.kwargs.get("end_dim", -1)
            return self._flatten(n.args[0], start, end, out, n.name)
        shape_args = n.args[1:]
        if len(shape_args) == 1 and isinstance(shape_args[0], (tuple, list)):
            shape_args = tuple(shape_args[0])
        s_in, s_out = list(src.shape), list(out.shape)
        if s_in == s_out:
            literal = shape_args[chan.dim] if chan.dim < len(shape_args) else None
            if isinstance(literal, int) and literal != -1:
                self._pin(chan, n.name, f"is reshaped to a fixed size {literal} in {n.name}")
            return chan
        # a flatten of dims [s, e] into one: the only reshape whose channel layout is known
        for s in range(len(s_in)):
            for e in range(s + 1, len(s_in)):
                merged = s_in[:s] + [math.prod(s_in[s:e + 1])] + s_in[e + 1:]
                if merged == s_out:
                    at = s if s <= chan.dim <= e else chan.dim - (e - s if chan.dim > e else 0)
                    literal = shape_args[at] if at < len(shape_args) else None
                    if isinstance(literal, int) and literal != -1:
                        self._pin(chan, n.name, f"is reshaped to a fixed size {literal} in {n.name}")
                        return self._pinned_fresh(out, n.name, "reshaped to a fixed size")
                    return self._flatten(n.args[0], s, e, out, n.name)
        self._pin(chan, n.name, f"is reshaped in {n.name}")
        return self._pinned_fresh(out, n.name, "reshaped")

    def _cat(self, tensors: list[Any], dim: int, out: Any, where: str) -> Any:
        chans = [self._chan(t) for t in tensors]
        values = [self._value(t) for t in tensors]
        if not all(isinstance(c, Chan) for c in chans) or len({c.dim for c in chans}) != 1:
            for c in chans:
                self._pin(c, where, "is concatenated with untracked tensors")
            return self._pinned_fresh(out, where, "comes out of a concatenation")
        cdim = chans[0].dim
        if dim % values[0].dim() == cdim:
            return Chan(cdim, torch.cat([c.ids for c in chans]))
        for c in chans[1:]:
            self.uf.union_all(chans[0].ids, c.ids)
        return Chan(cdim, chans[0].ids)

    def _reduce(self, n: fx.Node, out: Any, where: str) -> Any:
        chan, src = self._chan(n.args[0]), self._value(n.args[0])
        dims = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim")
        keep = n.kwargs.get("keepdim", n.args[2] if len(n.args) > 2 else False)
        if not isinstance(chan, Chan) or dims is None or not isinstance(out, Tensor):
            self._pin(chan, where, "is reduced over all dimensions")
            return self._pinned_fresh(out, where, "reduced") if isinstance(out, Tensor) else None
        dims = [int(d) % src.dim() for d in (dims if isinstance(dims, (tuple, list)) else [dims])]
        if chan.dim in dims:
            self._pin(chan, where, "is reduced over its channels")
            return self._pinned_fresh(out, where, "reduced over channels")
        shift = 0 if keep else sum(1 for d in dims if d < chan.dim)
        return Chan(chan.dim - shift, chan.ids)

    def _pad(self, n: fx.Node, out: Any, where: str) -> Any:
        chan, src = self._chan(n.args[0]), self._value(n.args[0])
        pads = list(self._value(n.args[1]) if len(n.args) > 1 else n.kwargs.get("pad"))
        if not isinstance(chan, Chan):
            return self._pinned_fresh(out, where, "padded")
        touched = {src.dim() - 1 - i // 2 for i, p in enumerate(pads) if p}
        mode = n.args[2] if len(n.args) > 2 else n.kwargs.get("mode", "constant")
        value = n.args[3] if len(n.args) > 3 else n.kwargs.get("value", None)
        if chan.dim in touched or mode != "constant" or value not in (None, 0, 0.0):
            self._pin(chan, where, "is padded along its channels (or with a nonzero value)")
            return self._pinned_fresh(out, where, "padded channels")
        return chan

    # -- modules -------------------------------------------------------------------------------
    def _module(self, n: fx.Node, m: nn.Module, out: Any) -> Any:
        name = str(n.target)
        x = self._value(n.args[0]) if n.args else None
        chan = self._chan(n.args[0]) if n.args else None
        extra = [a for a in n.all_input_nodes[1:]]
        for a in extra:
            self._pin(self._chan(a), name, f"is a second input of {name}")
        computed = [p for p in ("weight", "bias", "in_proj_weight")
                    if getattr(m, p, None) is not None and p not in m._parameters]
        if computed or parametrize.is_parametrized(m):  # weight_norm, spectral_norm, ...
            return self._unmodelled(name, m, chan, out, "its weight is computed (parametrized)")
        if isinstance(m, _ConvNd) and not isinstance(m, (nn.ConvTranspose1d, nn.ConvTranspose2d,
                                                         nn.ConvTranspose3d)):
            return self._conv(name, m, x, chan, out)
        if isinstance(m, nn.Linear):
            return self._linear(name, m, x, chan, out)
        if isinstance(m, nn.MultiheadAttention):
            return self._attention(n, name, m, out)
        if isinstance(m, _BatchNorm):
            if not isinstance(chan, Chan) or chan.dim != 1:
                self._pin(chan, name, "enters a batch norm off its channel dimension")
                return self._pinned_fresh(out, name, "batch norm")
            if not m.affine:
                self._pin(chan, name, f"{name} has no scale and shift to zero")
            call = self._call(name, m)
            for p in ("weight", "bias"):
                if getattr(m, p, None) is not None:
                    self._bind(call, p, 0, chan.ids)
            return chan
        if isinstance(m, _NORMALIZING):
            why = f"is normalized across channels by {name} ({type(m).__name__})"
            self._pin(chan, name, why)
            return self._pinned_on(out, chan.dim if isinstance(chan, Chan) else None, name, why)
        if isinstance(m, _KEEP_MODULES):
            if isinstance(chan, Chan) and isinstance(out, Tensor) and out.dim() == x.dim() and \
                    out.shape[chan.dim] == x.shape[chan.dim]:  # not pooled along the channels
                return chan
            self._pin(chan, name, f"changes shape in {name}")
            return self._pinned_fresh(out, name, name)
        if isinstance(m, nn.Flatten):
            return self._flatten(n.args[0], m.start_dim, m.end_dim, out, name)
        if isinstance(m, nn.Sequential) and len(m) == 0:
            return chan
        return self._unmodelled(name, m, chan, out, "structured pruning does not model it")

    def _unmodelled(self, name: str, m: nn.Module, chan: Any, out: Any, why: str) -> Any:
        """Pin what enters and leaves a module this pass does not model."""
        self._pin(chan, name, f"enters {name} ({type(m).__name__}): {why}")
        for p_name, _ in m.named_parameters(recurse=True):
            self.pinned.setdefault(f"{name}.{p_name}", "parameter of an unmodelled module")
        return self._pinned_fresh(out, name, f"comes out of {type(m).__name__}")

    def _call(self, name: str, m: nn.Module) -> ModuleCall:
        if name not in self.calls:
            self.calls[name] = ModuleCall(name, m)
        return self.calls[name]

    def _bind(self, call: ModuleCall, param: str, dim: int, ids: Tensor) -> None:
        dims = call.dims.setdefault(param, {})
        if dim in dims:
            self.uf.union_all(dims[dim], ids)  # a module called twice: its channels are shared
        else:
            dims[dim] = ids

    def _conv(self, name: str, m: _ConvNd, x: Tensor, chan: Any, out: Tensor) -> Any:
        call = self._call(name, m)
        macs = out.numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size) if self.count else 0
        call.macs += macs
        if not isinstance(chan, Chan) or chan.dim != 1:
            self._pin(chan, name, f"enters {name} off its channel dimension")
            chan = self._pinned_on(x, 1, name, f"input of {name}")
        depthwise = m.groups == m.in_channels == m.out_channels and m.groups > 1
        if self.count:
            call.mac_parts.append((macs, "weight", (0,) if depthwise else (0, 1)))
        if depthwise:
            self._bind(call, "weight", 0, chan.ids)
            if m.bias is not None:
                self._bind(call, "bias", 0, chan.ids)
            return Chan(1, call.dims["weight"][0])
        if m.groups != 1:
            self._pin(chan, name, f"{name} is a grouped convolution (groups={m.groups})")
            outs = self._pinned_fresh(out, name, f"{name} is a grouped convolution")
        else:
            self._bind(call, "weight", 1, chan.ids)
            known = call.dims.get("weight", {}).get(0)
            outs = Chan(1, known) if known is not None else self._fresh(out, 1)
        self._bind(call, "weight", 0, outs.ids)
        if m.bias is not None:
            self._bind(call, "bias", 0, outs.ids)
        return Chan(1, call.dims["weight"][0])

    def _linear(self, name: str, m: nn.Linear, x: Tensor, chan: Any, out: Tensor) -> Any:
        call = self._call(name, m)
        if self.count:
            macs = out.numel() * m.in_features
            call.macs += macs
            call.mac_parts.append((macs, "weight", (0, 1)))
        if not isinstance(chan, Chan) or chan.dim != x.dim() - 1:
            self._pin(chan, name, f"enters {name} off its feature dimension")
            chan = Chan(x.dim() - 1, self.uf.fresh(x.shape[-1]))
            self._pin(chan, name, f"input of {name}")
        self._bind(call, "weight", 1, chan.ids)
        known = call.dims.get("weight", {}).get(0)
        ids = known if known is not None else self.uf.fresh(m.out_features)
        self._bind(call, "weight", 0, ids)
        if m.bias is not None:
            self._bind(call, "bias", 0, ids)
        return Chan(out.dim() - 1, call.dims["weight"][0])

    def _attention(self, n: fx.Node, name: str, m: nn.MultiheadAttention, out: Any) -> Any:
        """Self-attention: the model dimension passes in and out; each head is one class spanning
        its query, key and value rows of in_proj and its columns of out_proj."""
        inputs = [n.args[i] if len(n.args) > i else n.kwargs.get(k)
                  for i, k in enumerate(("query", "key", "value"))]
        x = self._value(inputs[0])
        chan = self._chan(inputs[0])
        weights_used = any(u.op != "call_function" or u.target is not operator.getitem or
                           (u.args[1] != 0 and len(u.users) > 0) for u in n.users)
        mask = n.args[5] if len(n.args) > 5 else n.kwargs.get("attn_mask")
        mask = self._value(mask)
        per_head = isinstance(mask, Tensor) and mask.dim() == 3  # (batch x heads, L, S)
        plain = (m._qkv_same_embed_dim and m.bias_k is None and not m.add_zero_attn and not per_head
                 and inputs[0] is inputs[1] is inputs[2] and isinstance(x, Tensor) and x.dim() == 3)
        if not plain or weights_used or not isinstance(chan, Chan) or chan.dim != 2:
            why = ("its attention weights are used" if weights_used else
                   "a per-head attention mask is passed" if per_head else
                   f"{name} is not plain self-attention on (batch, tokens, features)")
            for a in n.all_input_nodes:
                self._pin(self._chan(a), name, why)
            return self._pinned_fresh(out, name, why)
        call = self._call(name, m)
        self.fixed_macs.pop(n, None)  # counted below, in parts that shrink with the heads
        if str(n.target) in self.uncounted:
            self.uncounted.remove(str(n.target))
        e, h = m.embed_dim, m.num_heads
        d = e // h
        batch, tokens = (x.shape[0], x.shape[1]) if m.batch_first else (x.shape[1], x.shape[0])
        proj, mix = batch * tokens * 3 * e * e, batch * tokens * e * e
        attend = 2 * batch * tokens * tokens * e  # QK^T and AV: no weight, but they shrink with heads
        if self.count:
            call.macs += proj + mix + attend
            call.mac_parts += [(proj, "in_proj_weight", (0, 1)), (mix, "out_proj.weight", (0, 1)),
                               (attend, "in_proj_weight", (0,))]
        known = call.dims.get("out_proj.weight", {}).get(1)
        heads = self.uf.fresh(h) if known is None else None
        rows = heads.repeat_interleave(d).repeat(3) if heads is not None else \
            call.dims["in_proj_weight"][0]
        cols = heads.repeat_interleave(d) if heads is not None else known
        self._bind(call, "in_proj_weight", 0, rows)
        self._pin(chan, name, f"is the model dimension of {name}, which keeps its width")
        self._bind(call, "in_proj_weight", 1, chan.ids)
        if m.in_proj_bias is not None:
            self._bind(call, "in_proj_bias", 0, rows)
        self._bind(call, "out_proj.weight", 1, cols)
        outs = call.dims.get("out_proj.weight", {}).get(0)
        outs = outs if outs is not None else self.uf.fresh(e)
        self.uf.pin(outs, f"the output of {name} keeps the model dimension")
        self._bind(call, "out_proj.weight", 0, outs)
        if m.out_proj.bias is not None:
            self._bind(call, "out_proj.bias", 0, outs)
        out_chan = Chan(2, call.dims["out_proj.weight"][0])
        return (out_chan, self._pinned_fresh(out[1], name, "attention weights")
                if isinstance(out, tuple) and isinstance(out[1], Tensor) else None)


# Operators and modules that multiply-accumulate (exact names: "bilinear" upsampling does not).
_MAC_FUNCTIONS = {"matmul", "mm", "bmm", "mv", "dot", "vdot", "einsum", "bilinear", "linear",
                  "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                  "conv_transpose3d", "scaled_dot_product_attention", "baddbmm", "addmm", "addbmm",
                  "addmv", "tensordot", "inner", "outer", "multi_head_attention_forward", "lstm",
                  "gru", "rnn_tanh", "rnn_relu", "chain_matmul", "__matmul__", "matmul_"}
_MAC_MODULES = (nn.RNNBase, nn.RNNCellBase, nn.Bilinear, nn.MultiheadAttention, nn.Transformer,
                nn.TransformerEncoderLayer, nn.TransformerDecoderLayer, nn.Linear,
                nn.modules.conv._ConvNd)


def _may_multiply(n: fx.Node, model: nn.Module) -> bool:
    """Whether a node could carry multiply-accumulates (by its operator or module type)."""
    if n.op == "call_module":
        return isinstance(model.get_submodule(str(n.target)), _MAC_MODULES)
    return _name_of(n.target) in _MAC_FUNCTIONS


def _holds_tensor(value: Any) -> bool:
    if isinstance(value, Tensor):
        return True
    if isinstance(value, (tuple, list)):
        return any(_holds_tensor(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_tensor(v) for v in value.values())
    return False


def _tensor(module: nn.Module, name: str) -> Tensor:
    """A module's parameter by local (possibly dotted) name."""
    return module.get_parameter(name)


def _chans_in(chan: Any) -> Iterable[Chan]:
    if isinstance(chan, Chan):
        yield chan
    elif isinstance(chan, (tuple, list)):
        for c in chan:
            yield from _chans_in(c)
    elif isinstance(chan, dict):
        for c in chan.values():
            yield from _chans_in(c)


def twice_if_single(inputs: tuple) -> tuple:
    """The inputs with a batch of one given twice (batch statistics in training mode need two)."""
    return tuple(torch.cat([t, t]) if isinstance(t, Tensor) and t.dim() and t.shape[0] == 1 else t
                 for t in inputs)


@contextmanager
def training_trial(model: nn.Module) -> Iterator[None]:
    """Training mode for a trial forward: no grad, and the mode, every buffer (batch-norm
    statistics) and the global random state (dropout) as they were afterwards."""
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    was_training = model.training
    devices = sorted({t.device.index or 0 for t in model.parameters() if t.is_cuda})
    model.train()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            yield
    finally:
        model.train(was_training)
        model.load_state_dict(saved)


def _training_pass(model: nn.Module, inputs: tuple, prop: _Propagate) -> None:
    """Trace and run the model in training mode too, adding its couplings and pins: a branch only
    training takes (an auxiliary head, a statistic over channels) must see the same channels.
    The inputs as given are tried first, then a batch of one given twice."""
    doubled = twice_if_single(inputs)
    attempts = [inputs] + ([doubled] if any(a is not b for a, b in zip(inputs, doubled)) else [])
    failure = ""
    for attempt in attempts:
        with training_trial(model):
            gm = trace(model)  # in training mode: the branches training takes
            try:
                _Propagate(gm, model, shared=prop).run(*attempt)
                return
            except PruningError:
                raise
            except Exception as exc:
                failure = " ".join(str(exc).split())[:200]
    raise PruningError(f"structured pruning could not run the model in training mode on the "
                       f"example input: {failure}")


def dependency_graph(model: nn.Module, example_input: Any, ignore: Iterable[str] = ()) -> DependencyGraph:
    """Trace `model` on `example_input` (a batch of one or two examples), in eval and in training
    mode, and find its channel groups.

    Output channels of the modules named in `ignore` are pinned (never removed).
    """
    gm = trace(model)
    inputs = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
    prop = _Propagate(gm, model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            prop.run(*inputs)
    except PruningError:
        raise
    except Exception as exc:
        detail = " ".join(str(exc).split())[:200]
        raise PruningError(f"structured pruning could not run the traced model on the example "
                           f"input: {detail}") from None
    finally:
        model.train(was_training)
    _training_pass(model, inputs, prop)
    uf = prop.uf
    ignore = [ignore] if isinstance(ignore, str) else list(ignore)
    _check_patterns(model, ignore)
    for name, call in prop.calls.items():
        for pname, dims in call.dims.items():
            qual = f"{name}.{pname}" if name else pname
            if ignore and _ignored(qual, ignore) and 0 in dims:
                uf.pin(dims[0], f"{name} is ignored")  # what it makes stays; its inputs may go
    # a tensor also held by a module this pass does not model (an embedding tied to a head)
    modelled = {id(_tensor(c.module, p)) for c in prop.calls.values() for p in c.dims}

    def inside_a_call(mod_name: str) -> bool:
        parts = mod_name.split(".")
        return any(".".join(parts[:i]) in prop.calls for i in range(len(parts) + 1))

    elsewhere = {id(t) for mod_name, mod in model.named_modules() if not inside_a_call(mod_name)
                 for t in mod._parameters.values() if t is not None}
    shared = elsewhere & modelled
    for call in prop.calls.values():
        for pname, dims in call.dims.items():
            if id(_tensor(call.module, pname)) in shared:
                for ids in dims.values():
                    uf.pin(ids, f"{call.name}.{pname} is shared with a module that keeps its shape")
    # tied parameters: one tensor in two modules shares its channels
    by_tensor: dict[int, list[tuple[ModuleCall, str]]] = {}
    for call in prop.calls.values():
        for pname in call.dims:
            by_tensor.setdefault(id(_tensor(call.module, pname)), []).append((call, pname))
    for users in by_tensor.values():
        first, fname = users[0]
        for call, pname in users[1:]:
            for dim, ids in call.dims[pname].items():
                if dim in first.dims[fname]:
                    uf.union_all(first.dims[fname][dim], ids)
                else:
                    uf.pin(ids, f"{call.name}.{pname} is tied to another shape")
    # a parameter also used directly by the forward (not through its module) keeps its shape
    for call in prop.calls.values():
        for pname, dims in call.dims.items():
            qual = f"{call.name}.{pname}" if call.name else pname
            if qual in prop.attrs:
                for ids in dims.values():
                    uf.pin(ids, f"{qual} is used directly by the forward")
                prop.pinned.setdefault(qual, "used directly by the forward")
    roots = torch.tensor([uf.find(i) for i in range(len(uf.parent))], dtype=torch.int64)
    classes: dict[int, list[tuple[str, int, Tensor]]] = {}
    seen_params: set[int] = set()
    param_shapes: dict[str, tuple[int, ...]] = {}
    for call in prop.calls.values():
        for pname, dims in call.dims.items():
            tensor = _tensor(call.module, pname)
            qual = f"{call.name}.{pname}" if call.name else pname
            if id(tensor) in seen_params:
                continue
            seen_params.add(id(tensor))
            param_shapes[qual] = tuple(tensor.shape)
            for dim, ids in dims.items():
                r = roots[ids]
                order = torch.argsort(r, stable=True)  # positions grouped by class, in order
                values, counts = torch.unique_consecutive(r[order], return_counts=True)
                for root, index in zip(values.tolist(), torch.split(order, counts.tolist())):
                    if root != 0:
                        classes.setdefault(root, []).append((qual, dim, index))
    # group classes by the (parameter, dim) places they touch
    by_keys: dict[tuple[tuple[str, int], ...], list[int]] = {}
    for root, places in classes.items():
        key = tuple(sorted((p, d) for p, d, _ in places))
        by_keys.setdefault(key, []).append(root)
    groups = []
    norm_params = {f"{c.name}.{p}" for c in prop.calls.values() if isinstance(c.module, _BatchNorm)
                   for p in c.dims}
    weights = {f"{c.name}.{p}" if c.name else p for c in prop.calls.values()
               for p in c.dims if p in ("weight", "in_proj_weight")}
    for key, members in by_keys.items():
        made_by = tuple(sorted({p for p, d in key if d == 0 and p in weights and p not in norm_params}))
        producers = tuple(sorted({p.rpartition(".")[0] for p in made_by}))
        has_norm = any(p in norm_params for p, _ in key)
        groups.append(Group(len(groups), sorted(members), key, producers, has_norm, made_by))
    fixed = sum(prop.fixed_macs.values())
    dense = sum(c.macs for c in prop.calls.values()) + fixed
    return DependencyGraph(classes, groups, prop.calls, prop.pinned, param_shapes, dense, fixed,
                           tuple(prop.uncounted))
