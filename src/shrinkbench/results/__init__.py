"""Results: the SQLite store, run folders, DataFrames, statistics and the reporting checklist (no torch).

Names are loaded on first use, so `shrinkbench.results.store` does not pull in pandas or scipy.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Store": "store",
    "load": "frame",
    "load_epochs": "frame",
    "load_layers": "frame",
    "aggregate": "analysis",
    "accuracy_change": "analysis",
    "auc": "analysis",
    "pareto_front": "analysis",
    "paired_comparison": "analysis",
    "PairedComparison": "analysis",
    "checklist": "checks",
    "CheckItem": "checks",
    "display_name": "names",
    "canonical_strategy": "names",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
