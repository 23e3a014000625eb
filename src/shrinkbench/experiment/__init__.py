"""Experiments: the typed config and its hash, train/eval loops, one run with checkpoints and resume."""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Config": "config",
    "DataConfig": "config",
    "ModelConfig": "config",
    "RecipeConfig": "config",
    "DenseConfig": "config",
    "PruningConfig": "config",
    "load_config": "config",
    "config_from_dict": "config",
    "config_to_dict": "config",
    "apply_overrides": "config",
    "run_id": "config",
    "dense_id": "config",
    "run_experiment": "runner",
    "execute": "runner",
    "ensure_dense": "dense",
    "dense_metrics": "dense",
    "preflight": "components",
    "clear_data_cache": "components",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
