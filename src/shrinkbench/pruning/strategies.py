"""Named pruning strategies: a score function plus an allocation, in a registry with aliases."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable, Iterable

from torch import Tensor, nn

from ..registry import Registry
from .allocation import ALLOCATIONS
from .init_scores import grasp_score, snip_score, synflow_score
from .llm import sparsegpt_score, wanda_score
from .scores import (
    ScoreContext,
    activation_score,
    gradient_score,
    magnitude_score,
    random_score,
)

ScoreFn = Callable[[dict[str, nn.Parameter], ScoreContext], dict[str, Tensor]]


@dataclass(frozen=True)
class Strategy:
    """A named strategy: `score(params, ctx) -> {name: scores}` (higher = keep), an allocation."""

    name: str
    score: ScoreFn
    allocation: str = "global"
    structured: bool = False  # scores channels (per dependency group), removes them whole
    # The score also rewrites the weights it keeps (SparseGPT) and scores its choice 1 (kept) and
    # 0 (pruned); prune() checks that the allocation keeps exactly that choice.
    updates_weights: bool = False

    def _option_parameters(self) -> list[inspect.Parameter]:
        try:
            params = list(inspect.signature(self.score).parameters.values())
        except (TypeError, ValueError):  # a builtin or C callable: no options
            return []
        return [p for p in params[2:] if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]

    def option_names(self) -> list[str]:
        """Keyword options of the score function (after `params, ctx`), sorted."""
        return sorted(p.name for p in self._option_parameters())

    def option_defaults(self) -> dict[str, object]:
        """The options that have a default value, with it."""
        return {p.name: p.default for p in self._option_parameters() if p.default is not p.empty}

    def required_options(self) -> list[str]:
        """The options without a default value."""
        return sorted(p.name for p in self._option_parameters() if p.default is p.empty)


STRATEGIES: Registry[Strategy] = Registry("pruning strategy")


def register_strategy(
    name: str,
    score_fn: ScoreFn | None = None,
    allocation: str = "global",
    aliases: Iterable[str] = (),
    structured: bool = False,
    updates_weights: bool = False,
) -> Strategy | Callable[[ScoreFn], ScoreFn]:
    """Register a strategy; without `score_fn`, a decorator registering the function it wraps.

    A structured strategy's score is `score(graph, ctx, **options) -> {group index: scores}`
    (see pruning.structured); its allocation is global or layerwise over channels. A strategy
    that `updates_weights` rewrites the kept weights inside its score and returns 1 (kept) and 0
    (pruned) in counts its allocation reproduces (checked by prune())."""
    if structured:
        if allocation not in ("global", "layerwise"):
            raise ValueError(f"structured allocation must be global or layerwise, got {allocation!r}")
    else:
        allocation = ALLOCATIONS.canonical(allocation)

    def add(fn: ScoreFn) -> Strategy:
        strategy = Strategy(name, fn, allocation, structured, updates_weights)
        STRATEGIES.add(name, strategy, aliases=aliases)
        return strategy

    if score_fn is None:

        def decorator(fn: ScoreFn) -> ScoreFn:
            add(fn)
            return fn

        return decorator
    return add(score_fn)


def list_strategies() -> list[str]:
    """Canonical names of the registered strategies, sorted."""
    return STRATEGIES.names()


def score_label(fn: ScoreFn) -> str:
    """A short name for a score function (`magnitude_score` -> `magnitude`)."""
    return getattr(fn, "__name__", type(fn).__name__).removesuffix("_score")


def strategy_info() -> list[tuple[str, tuple[str, ...], str, str]]:
    """(name, aliases, score, allocation) of every registered strategy, for listings."""
    return [
        (name, tuple(STRATEGIES.aliases_of(name)), score_label(s.score),
         f"{s.allocation} channels" if s.structured else s.allocation)
        for name in STRATEGIES.names()
        for s in [STRATEGIES.get(name)]
    ]


_BUILTIN = [
    ("global_magnitude", "GlobalMagWeight", magnitude_score, "global"),
    ("layer_magnitude", "LayerMagWeight", magnitude_score, "layerwise"),
    ("global_gradient", "GlobalMagGrad", gradient_score, "global"),
    ("layer_gradient", "LayerMagGrad", gradient_score, "layerwise"),
    ("global_activation", "GlobalMagAct", activation_score, "global"),
    ("layer_activation", "LayerMagAct", activation_score, "layerwise"),
    ("random", "RandomPruning", random_score, "global"),
]
for _name, _alias, _fn, _allocation in _BUILTIN:
    register_strategy(_name, _fn, _allocation, aliases=[_alias])

# pruning at initialization (init_scores): SNIP, GraSP, SynFlow, all ranked globally
register_strategy("snip", snip_score, "global", aliases=["SNIP"])
register_strategy("grasp", grasp_score, "global", aliases=["GraSP"])
register_strategy("synflow", synflow_score, "global", aliases=["SynFlow"])

# language-model pruning (llm): Wanda within output rows, SparseGPT layer by layer (uniform)
register_strategy("wanda", wanda_score, "per_row", aliases=["Wanda"])
register_strategy("sparsegpt", sparsegpt_score, "layerwise", aliases=["SparseGPT"],
                  updates_weights=True)

from .structured import scores as _channel  # noqa: E402  (after the registry exists)

_STRUCTURED = [
    ("channel_l1", _channel.channel_l1_score, "ChannelL1"),
    ("channel_l2", _channel.channel_l2_score, "ChannelL2"),
    ("channel_bn_scale", _channel.bn_scale_score, "NetworkSlimming"),
    ("channel_taylor", _channel.channel_taylor_score, "ChannelTaylor"),
]
for _name, _fn, _alias in _STRUCTURED:
    register_strategy(f"global_{_name}", _fn, "global", aliases=[f"Global{_alias}"], structured=True)
    register_strategy(f"layer_{_name}", _fn, "layerwise", aliases=[f"Layer{_alias}"], structured=True)
register_strategy("channel_random", _channel.channel_random_score, "layerwise",
                  aliases=["ChannelRandom"], structured=True)
