"""Which channels to remove: global or layerwise allocation to a target, with exact cost counting.

Targets: `compression` (all parameters / parameters left), `speedup` (dense MACs / MACs left, the
MACs of layers that do not lose channels counted as a fixed cost) or `channels` (prunable channels / channels left). The smallest removal
that reaches the target is chosen (channels come whole, so the result reaches at least the target,
overshooting by less than one channel's cost; a layerwise channel target removes the ceiling of the
fraction from each group). Every group keeps at least one channel, which can leave a target out of
reach: then it is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ...errors import CompressionError, PruningError
from .graph import DependencyGraph

TARGETS = ("compression", "speedup", "channels")


@dataclass
class Cost:
    """Counts of a model with some channels removed."""

    params_total: int
    params_left: int
    macs_dense: int
    macs_left: int
    channels_total: int
    channels_left: int

    @property
    def compression(self) -> float:
        return self.params_total / self.params_left if self.params_left else math.inf

    @property
    def speedup(self) -> float:
        return self.macs_dense / self.macs_left if self.macs_left else math.inf

    @property
    def channel_ratio(self) -> float:
        return self.channels_total / self.channels_left if self.channels_left else math.inf

    def value(self, target: str) -> float:
        return {"compression": self.compression, "speedup": self.speedup,
                "channels": self.channel_ratio}[target]


class CostModel:
    """Counts parameters and MACs left for a set of removed classes, without touching the model."""

    def __init__(self, model: nn.Module, graph: DependencyGraph, prunable: list[int]) -> None:
        self.graph = graph
        self.order = {c: i for i, c in enumerate(sorted(graph.classes))}
        n = len(self.order)
        self.params_total = sum(p.numel() for p in model.parameters())  # shared ones once
        parts: dict[tuple[str, int], list[tuple[Tensor, int]]] = {}
        for cls, places in graph.classes.items():
            for param, dim, index in places:
                parts.setdefault((param, dim), []).append((index, self.order[cls]))
        # (parameter, dim) -> the class order of each index along it (n: no class, never removed)
        self.index_of: dict[tuple[str, int], Tensor] = {}
        for (param, dim), found in parts.items():
            column = torch.full((graph.param_shapes[param][dim],), n, dtype=torch.int64)
            index = torch.cat([i for i, _ in found])
            lengths = torch.tensor([i.numel() for i, _ in found])
            column[index] = torch.tensor([c for _, c in found]).repeat_interleave(lengths)
            self.index_of[(param, dim)] = column
        self.macs: list[tuple[int, list[tuple[str, int]]]] = []
        for name, call in graph.modules.items():
            for macs, local, scaled in call.mac_parts:
                qual = f"{name}.{local}" if name else local
                self.macs.append((macs, [(qual, d) for d in scaled if (qual, d) in self.index_of]))
        self.macs.append((graph.fixed_macs, []))  # ops whose cost does not shrink
        self.macs_dense = sum(m for m, _ in self.macs)
        self.prunable = prunable
        self.n = n

    def cost(self, removed: list[int]) -> Cost:
        flag = torch.zeros(self.n + 1, dtype=torch.int64)
        if removed:
            flag[torch.tensor([self.order[c] for c in removed], dtype=torch.int64)] = 1
        left_along: dict[tuple[str, int], int] = {}
        for key, idx in self.index_of.items():
            left_along[key] = idx.numel() - int(flag[idx].sum())
        removed_params = 0
        for param, shape in self.graph.param_shapes.items():
            kept = 1
            for d, size in enumerate(shape):
                kept *= left_along.get((param, d), size)
            removed_params += math.prod(shape) - kept
        macs_left = 0
        for macs, dims in self.macs:
            frac = 1.0
            for key in dims:
                frac *= left_along[key] / self.index_of[key].numel()
            macs_left += round(macs * frac)
        return Cost(self.params_total, self.params_total - removed_params, self.macs_dense, macs_left,
                    len(self.prunable), len(self.prunable) - len(removed))


def _check_target(target: str, amount: float) -> None:
    if target not in TARGETS:
        raise PruningError(f"structured target {target!r} is unknown; choose from: {', '.join(TARGETS)}")
    if not isinstance(amount, (int, float)) or isinstance(amount, bool) or not math.isfinite(
            float(amount)) or amount < 1:
        raise CompressionError(f"the {target} target must be a finite number >= 1, got {amount!r}")


def _smallest(n: int, reaches) -> int:
    """The smallest k in [0, n] with reaches(k), assuming monotone; n + 1 when none."""
    lo, hi = 0, n
    if not reaches(n):
        return n + 1
    while lo < hi:
        mid = (lo + hi) // 2
        if reaches(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _rounded(removal: Any, groups: list, ranked: dict[int, list[int]], round_to: int) -> Any:
    """`removal` with each group's kept count rounded up to a multiple of `round_to`."""
    group_of = {c: g.index for g in groups for c in g.classes}

    def rounded(k: int) -> list[int]:
        count: dict[int, int] = {}
        for c in removal(k):
            count[group_of[c]] = count.get(group_of[c], 0) + 1
        out = []
        for g in groups:
            keep = min(g.size, -(-(g.size - count.get(g.index, 0)) // round_to) * round_to)
            out.extend(ranked[g.index][:g.size - keep])
        return out

    return rounded


def select(model: nn.Module, graph: DependencyGraph, scores: dict[int, Tensor], allocation: str,
           target: str, amount: float, round_to: int = 1) -> tuple[list[int], Cost]:
    """Classes to remove (lowest scores first) reaching `amount` of `target`, and the resulting cost.

    `round_to` > 1 keeps a multiple of it in every group (rounded up, a group smaller than it kept
    whole): vectorized CPU and GPU kernels run widths of 8 or 16 faster than odd ones."""
    _check_target(target, amount)
    if not isinstance(round_to, int) or isinstance(round_to, bool) or round_to < 1:
        raise PruningError(f"round_to must be an integer >= 1, got {round_to!r}")
    if target == "speedup" and graph.uncounted:
        raise PruningError(f"a speedup target cannot be counted for this model: "
                           f"{', '.join(graph.uncounted[:3])} may multiply-accumulate, and no rule "
                           "here counts it; ask for a compression or channel target")
    groups = [g for g in graph.groups if g.index in scores and g.size > 1]
    for g in groups:
        s = scores[g.index]
        if s.shape != (g.size,) or bool(torch.isnan(s).any()):
            raise PruningError(f"channel scores of group {g.index} have shape {tuple(s.shape)} or NaN; "
                               f"expected {g.size} finite numbers")
    prunable = [c for g in graph.groups if g.index in scores for c in g.classes]
    costs = CostModel(model, graph, prunable)
    if not groups:
        raise PruningError("the model has no channels that can be removed (every channel is pinned: "
                           + "; ".join(f"{k}: {v}" for k, v in list(graph.pinned.items())[:3]) + ")")
    # lowest first within each group; ties by channel position
    ranked = {g.index: [g.classes[i] for i in torch.argsort(scores[g.index], stable=True).tolist()]
              for g in groups}
    if allocation == "global":
        pool = []
        for g in groups:
            position = {c: i for i, c in enumerate(g.classes)}
            values = scores[g.index].tolist()
            pool += [(values[position[c]], g.index, position[c], c)
                     for c in ranked[g.index][:-1]]  # the best channel of each group stays
        pool.sort()
        order = [c for *_, c in pool]

        def removal(k: int) -> list[int]:
            return order[:k]

        steps = len(order)
        channel_k = math.ceil(len(prunable) * (1 - 1 / float(amount)) - 1e-9)
    elif allocation == "layerwise":
        steps = 10_000

        def by_fraction(f: float) -> list[int]:
            out = []
            for g in groups:
                out.extend(ranked[g.index][:min(g.size - 1, math.ceil(g.size * f - 1e-9))])
            return out

        def removal(k: int) -> list[int]:
            return by_fraction(k / steps) if k >= 0 else by_fraction(1 - 1 / float(amount))

        channel_k = -1  # the exact fraction
    else:
        raise PruningError(f"structured allocation {allocation!r} is unknown; choose global or layerwise")
    if round_to > 1:
        removal = _rounded(removal, groups, ranked, round_to)
    if target == "channels":
        removed = removal(min(channel_k, steps))
        cost = costs.cost(removed)
        if cost.channel_ratio < float(amount) * (1 - 1e-12):
            raise CompressionError(
                f"channels {float(amount):g} cannot be reached by removing channels: at most "
                f"{costs.cost(removal(steps)).channel_ratio:.4g} (one channel left in every prunable "
                "group; pinned channels stay)")
        return removed, cost
    k = _smallest(steps, lambda k: costs.cost(removal(k)).value(target) >= float(amount) * (1 - 1e-12))
    if k > steps:
        best = costs.cost(removal(steps)).value(target)
        raise CompressionError(
            f"{target} {float(amount):g} cannot be reached by removing channels: at most {best:.4g} "
            f"(one channel left in every prunable group; pinned channels stay)")
    removed = removal(k)
    return removed, costs.cost(removed)


def reachable(model: nn.Module, graph: DependencyGraph) -> Cost:
    """The counts with every group down to one channel: the most any target can reach."""
    prunable = [c for g in graph.groups for c in g.classes]
    removed = [c for g in graph.groups for c in g.classes[1:]]
    return CostModel(model, graph, prunable).cost(removed)
