"""The experiment config's default values, flattened to dotted keys, for the report's setup section.

The report may not import `shrinkbench.experiment` (it would pull in torch), so the defaults of
`experiment.config.Config()` are written out here. tests/report/test_report_setup.py builds
`Config()` and fails when the two disagree: change this table together with a default there.
"""

from __future__ import annotations

import math
from typing import Any

_RECIPE: dict[str, Any] = {
    "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "nesterov": False,
    "schedule": "constant", "step_size": 30, "milestones": (), "gamma": 0.1, "warmup_epochs": 0,
    "epochs": 10, "batch_size": 128, "eval_batch_size": None,
}

CONFIG_DEFAULTS: dict[str, Any] = {
    "data.name": "digits",
    "data.data_dir": None,
    "data.val_size": None,
    "data.augment": True,
    "data.download": False,
    "data.num_workers": 0,
    "model.name": "convnet_digits",
    "dense.source": "train",
    **{f"dense.recipe.{k}": v for k, v in {**_RECIPE, "lr": 0.05, "epochs": 20, "batch_size": 64}.items()},
    "pruning.strategy": "global_magnitude",
    "pruning.compression": 4.0,
    "pruning.target": "compression",
    "pruning.round_to": 1,
    "pruning.include_classifier": False,
    "pruning.include_bias": False,
    "pruning.ignore": (),
    "pruning.score_batches": 1,
    "pruning.calibration_samples": None,
    "pruning.calibration_length": None,
    "pruning.calibration_seed": None,
    "pruning.allocation": None,
    "pruning.classifier_rate": 1.0,
    **{f"finetune.{k}": v for k, v in {**_RECIPE, "lr": 0.01, "epochs": 4, "batch_size": 64}.items()},
    "latency.enabled": True,
    "latency.batch_size": 16,
    "latency.warmup": 3,
    "latency.repeats": 10,
    "latency.sparse": False,
    "schedule.kind": "oneshot",
    "schedule.at_init": False,
    "schedule.rate": 0.2,
    "schedule.round_epochs": None,
    "schedule.rewind": "0it",
    "schedule.control": "none",
    "schedule.begin": "0it",
    "schedule.end": None,
    "schedule.frequency": 100,
    "schedule.initial_sparsity": 0.0,
    "seed": 0,
    "threads": 1,
    "device": "auto",
    "precision": "fp32",
    "channels_last": False,
    "checkpoint_every": 1,
    "plugins": (),
}

# Settings the setup section always shows: what defines the experiment and its training budgets.
DEFINING: tuple[str, ...] = ("dense.recipe.epochs", "finetune.epochs")


def same_value(value: Any, default: Any) -> bool:
    """True when a config value (as a results frame holds it) equals a default."""
    if hasattr(value, "item") and not isinstance(value, (list, tuple)):
        value = value.item()  # numpy scalars
    if value is None or (isinstance(value, float) and math.isnan(value)):  # NaN: absent from the run
        return default is None
    if isinstance(value, (list, tuple)) and isinstance(default, (list, tuple)):
        return tuple(value) == tuple(default)
    if isinstance(value, bool) != isinstance(default, bool):
        return False
    return bool(value == default)
