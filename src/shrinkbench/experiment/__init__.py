"""Experiments: the typed config and its ids, train/eval loops, one run with checkpoints and resume."""

from __future__ import annotations

from .._lazy import lazy_exports

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
    "execute": "runner",
    "ensure_dense": "dense",
    "dense_metrics": "dense",
    "preflight": "components",
    "clear_data_cache": "components",
    "load_plugins": "plugins",
    "export_run": "export",
    "load_exported": "export",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
