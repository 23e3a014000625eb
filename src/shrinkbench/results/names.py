"""Strategy names: canonical store names and the ShrinkBench names used in tables (no torch)."""

from __future__ import annotations

DISPLAY_NAMES: dict[str, str] = {
    "global_magnitude": "GlobalMagWeight",
    "layer_magnitude": "LayerMagWeight",
    "global_gradient": "GlobalMagGrad",
    "layer_gradient": "LayerMagGrad",
    "global_activation": "GlobalMagAct",
    "layer_activation": "LayerMagAct",
    "random": "RandomPruning",
    "none": "Unpruned",
}

MAGNITUDE_STRATEGIES: tuple[str, ...] = ("global_magnitude", "layer_magnitude")
RANDOM_STRATEGIES: tuple[str, ...] = ("random",)

_CANONICAL_BY_LOWER: dict[str, str] = {
    **{name.lower(): name for name in DISPLAY_NAMES},
    **{display.lower(): name for name, display in DISPLAY_NAMES.items()},
}


def display_name(strategy: str) -> str:
    """The ShrinkBench table name of a strategy (e.g. GlobalMagWeight); unknown names unchanged."""
    return DISPLAY_NAMES.get(canonical_strategy(strategy), strategy)


def canonical_strategy(strategy: str) -> str:
    """The canonical store name of a strategy given it or its ShrinkBench name; unknown names unchanged."""
    if not isinstance(strategy, str):
        return strategy
    return _CANONICAL_BY_LOWER.get(strategy.lower(), strategy)
