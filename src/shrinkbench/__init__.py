"""shrinkbench: standardized, reproducible evaluation of neural-network pruning methods.

The top-level package imports no PyTorch, so that `shrinkbench.results` and `shrinkbench.report`
work on a machine without it; subpackages (`sb.metrics`, `sb.models`, ...) and `shrinkbench.prune`
and friends are loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "prune": ("shrinkbench.pruning", "prune"),
    "register_strategy": ("shrinkbench.pruning", "register_strategy"),
    "list_strategies": ("shrinkbench.pruning", "list_strategies"),
    "create_model": ("shrinkbench.models", "create"),
    "list_models": ("shrinkbench.models", "list_models"),
}

_SUBMODULES = (
    "common",
    "data",
    "download",
    "errors",
    "experiment",
    "metrics",
    "models",
    "pruning",
    "registry",
    "report",
    "results",
    "sweep",
)

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_SUBMODULES})
