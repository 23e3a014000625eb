"""Results: the SQLite store, run folders, DataFrames, statistics and the reporting checklist (no torch).

Names are loaded on first use, so `shrinkbench.results.store` does not pull in pandas or scipy.
"""

from __future__ import annotations

from .._lazy import lazy_exports

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
    "compare_per_compression": "analysis",
    "holm": "analysis",
    "checklist": "checks",
    "CheckItem": "checks",
    "display_name": "names",
    "canonical_strategy": "names",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
