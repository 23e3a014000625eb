"""The experiment config: a dataclass tree holding every default, loaded from YAML with overrides.

This module is the one place where defaults live; each field's `help` metadata documents it and
docs/experiments.md lists them. Validation (types, ranges, names) is in `validate.py`, the run and
dense-model hashes in `ids.py`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..errors import ConfigError


def _f(default: Any = None, help: str = "", check: str | None = None, names: str | None = None,
       factory: Any = None) -> Any:
    meta = {"help": help, "check": check, "names": names}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class DataConfig:
    """Which data set, where it lives and how it is split and augmented."""

    name: str = _f("digits", "data set name (`shrinkbench list datasets`)", names="dataset")
    data_dir: str | None = _f(None, "folder holding the data set files; default $SHRINKBENCH_DATA "
                              "or the user cache folder (not part of the run id)", check="data_dir")
    val_size: int | float | None = _f(None, "training examples held out for validation (a count, "
                                      "or a fraction of the training set; fixed seed); default: the "
                                      "data set's own choice", check="val_size")
    augment: bool = _f(True, "the data set's standard training augmentation (none for MNIST/digits)")
    download: bool = _f(False, "download missing files (checked against their checksum; not part "
                        "of the run id)")
    num_workers: int = _f(0, "loader worker processes for data sets read from image files "
                          "(ImageNet); in-memory sets ignore it (not part of the run id)",
                          check="nonnegative")
    options: dict[str, Any] = _f(help="extra keyword options for the data set", factory=dict)


@dataclass(frozen=True)
class ModelConfig:
    """Which zoo model, with its options."""

    name: str = _f("convnet_digits", "model name (`shrinkbench list models`)", names="model")
    options: dict[str, Any] = _f(help="keyword options of the model constructor", factory=dict)


@dataclass(frozen=True)
class RecipeConfig:
    """A training recipe: optimizer, learning-rate schedule, epochs, batch sizes."""

    optimizer: str = _f("sgd", "sgd, adam or adamw", names="optimizer")
    lr: float = _f(0.1, "base learning rate", check="positive")
    momentum: float = _f(0.9, "SGD momentum (Adam/AdamW: beta1)", check="unit_open")
    weight_decay: float = _f(0.0, "L2 penalty (AdamW: decoupled weight decay)", check="nonnegative")
    nesterov: bool = _f(False, "Nesterov momentum (SGD with momentum > 0 only)")
    schedule: str = _f("constant", "learning-rate schedule: constant, step, multistep or cosine",
                       names="schedule")
    step_size: int = _f(30, "step: epochs between decays", check="positive")
    milestones: tuple[int, ...] = _f((), "multistep: epochs at which the rate decays",
                                     check="nonnegative")
    gamma: float = _f(0.1, "step/multistep: decay factor", check="unit_closed")
    warmup_epochs: int = _f(0, "epochs of linear warm-up before the schedule", check="nonnegative")
    epochs: int = _f(10, "epochs of training", check="nonnegative")
    batch_size: int = _f(128, "training batch size", check="positive")
    eval_batch_size: int | None = _f(None, "evaluation batch size; default: 4 x batch_size",
                                     check="positive")


def _dense_recipe() -> RecipeConfig:
    return RecipeConfig(epochs=20, lr=0.05, batch_size=64)


def _finetune_recipe() -> RecipeConfig:
    return RecipeConfig(epochs=4, lr=0.01, batch_size=64)


@dataclass(frozen=True)
class DenseConfig:
    """Where the dense (unpruned) model comes from."""

    source: str = _f("train", "'train' (train with `recipe`, cached by dense id) or a checkpoint "
                     "file (a state dict, loaded with weights_only=True)", check="dense_source")
    recipe: RecipeConfig = _f(help="training recipe when source is 'train'", factory=_dense_recipe)


@dataclass(frozen=True)
class PruningConfig:
    """Which strategy, how much, and on which parameters."""

    strategy: str = _f("global_magnitude", "strategy name or alias (`shrinkbench list "
                       "strategies`), e.g. GlobalMagWeight", names="strategy")
    compression: float = _f(4.0, "target compression: total parameters / nonzero parameters; "
                            "1 = the unpruned control", check="at_least_one")
    include_classifier: bool = _f(False, "also prune the final classifier layer")
    include_bias: bool = _f(False, "also prune biases")
    ignore: tuple[str, ...] = _f((), "qualified parameter or module names never pruned")
    score_batches: int = _f(1, "training batches (chosen by the seed) that feed gradient and "
                            "activation scores", check="positive")


@dataclass(frozen=True)
class Config:
    """One experiment: dataset, model, dense model, pruning, fine-tuning, seed and device."""

    data: DataConfig = _f(help="the data set", factory=DataConfig)
    model: ModelConfig = _f(help="the model", factory=ModelConfig)
    dense: DenseConfig = _f(help="the dense model", factory=DenseConfig)
    pruning: PruningConfig = _f(help="the pruning", factory=PruningConfig)
    finetune: RecipeConfig = _f(help="the fine-tuning recipe after pruning", factory=_finetune_recipe)
    seed: int = _f(0, "fixes data order, initialization, validation split, pruning and score "
                   "batches", check="nonnegative")
    device: str = _f("auto", "auto (CUDA when available), cpu, cuda, cuda:N or mps (not part of "
                     "the run id)", check="device")
    precision: str = _f("fp32", "fp32, or bf16 (autocast)", check="precision")
    channels_last: bool = _f(False, "channels-last memory format for 4-D inputs (conv nets)")
    checkpoint_every: int = _f(1, "write a resumable checkpoint every N epochs (0: never; not part "
                               "of the run id)", check="nonnegative")


# Fields that do not change any number a run produces: left out of the run id and the dense id.
UNHASHED = ("data.data_dir", "data.download", "data.num_workers", "device", "checkpoint_every")


def load_config(path: str | os.PathLike, overrides: Iterable[str] = ()) -> Config:
    """Read a YAML config (safe_load), apply `key=value` overrides, validate; errors name the field."""
    from ..results.files import read_yaml

    file = Path(path)
    raw = read_yaml(file, "config file", ConfigError)
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config file {str(file)!r}: expected a mapping of fields at the top, "
                          f"got {type(raw).__name__}")
    return config_from_dict(apply_overrides(raw, overrides))


def apply_overrides(raw: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of `raw` with each `dotted.key=value` set (the value parsed as YAML)."""
    import copy

    import yaml

    out = copy.deepcopy(dict(raw))
    for item in overrides:
        key, sep, text = str(item).partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE with a dotted key, "
                              "e.g. finetune.lr=0.01")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        node = out
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"{'.'.join(parts[:i + 1])}: is not a section, cannot set {key!r}")
            node = child
        node[parts[-1]] = value
    return out


def config_from_dict(raw: Mapping[str, Any]) -> Config:
    """Build and validate a Config from plain data (YAML/JSON); errors name the field."""
    from .validate import build

    return build(Config, raw)


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """The config as plain data, names canonical (aliases resolved), tuples as lists."""
    from .validate import to_plain

    return to_plain(cfg)


def run_id(cfg: Config) -> str:
    """The run's id: a hash of its canonical config without output paths and device."""
    from .ids import run_id as _run_id

    return _run_id(cfg)


def dense_id(cfg: Config) -> str:
    """The dense model's id: a hash of what fixes it (data, model, dense recipe, seed, precision)."""
    from .ids import dense_id as _dense_id

    return _dense_id(cfg)
