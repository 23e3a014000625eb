"""Structured (channel) pruning: dependency groups by tracing, channel scores, allocation to a
compression, speedup or channel target, masks over whole channels, and physical removal.

    result = prune(model, "layer_channel_l1", 2.0, inputs=x, target="speedup")  # masks in place
    slim = remove_channels(model, x)          # a smaller dense model, same outputs
    save_slim(slim, "slim.pt"); load_slim("slim.pt", fresh_model)
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ...errors import PruningError
from ..masks import masked_parameters
from ..scores import ScoreContext
from .graph import DependencyGraph, Group, dependency_graph, trace
from .remove import (SLIM_FORMAT, apply_architecture, architecture, check_same_outputs,
                     dead_classes, is_slim, load_slim, load_slim_state, remove_channels, save_slim,
                     slim_payload, structured_mask)
from .scores import (bn_scale_score, channel_l1_score, channel_l2_score, channel_random_score,
                     channel_taylor_score)
from .select import TARGETS, Cost, CostModel, reachable, select


def example_of(inputs: Any) -> Any:
    """The first two examples of a batch (every tensor sliced alike), for tracing."""
    if isinstance(inputs, Tensor):
        return inputs[:2]  # two, so that a batch norm without running statistics can run
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(t[:2] if isinstance(t, Tensor) else t for t in inputs)
    return inputs


def prune_channels(model: nn.Module, score: Any, allocation: str, target: str, amount: float,
                   example_input: Any, ctx: ScoreContext, options: dict[str, Any],
                   ignore: tuple[str, ...] = (), round_to: int = 1
                   ) -> tuple[list[int], Cost, DependencyGraph]:
    """Score channels, choose the smallest removal reaching the target, zero them with masks."""
    if any(True for _ in masked_parameters(model)):
        raise PruningError("structured pruning needs a model without masks; this one is already "
                           "pruned (prune channels first, or use an unstructured strategy)")
    graph = dependency_graph(model, example_input, ignore=ignore)
    scores = score(graph, ctx, **options)
    if not isinstance(scores, dict):
        raise PruningError(f"channel score {getattr(score, '__name__', score)!r} returned "
                           f"{type(scores).__name__}, expected a dict of group index -> scores")
    removed, cost = select(model, graph, scores, allocation, target, amount, round_to)
    structured_mask(model, graph, removed)
    return removed, cost, graph


__all__ = ["TARGETS", "Cost", "CostModel", "DependencyGraph", "Group", "SLIM_FORMAT",
           "apply_architecture", "architecture", "bn_scale_score", "channel_l1_score",
           "channel_l2_score", "channel_random_score", "channel_taylor_score",
           "check_same_outputs", "dead_classes", "dependency_graph", "example_of", "is_slim",
           "load_slim", "load_slim_state", "prune_channels", "reachable", "remove_channels", "save_slim",
           "select", "slim_payload", "structured_mask", "trace"]
