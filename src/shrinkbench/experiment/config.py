"""The experiment config: an immutable tree of sections, checked when built, carrying its ids.

Every default lives here, documented by its field's `help` (docs/experiments.md lists them). A
section checks its own fields when it is constructed (by YAML, `--set`, a sweep point or
`dataclasses.replace`), so a `Config` that exists is valid: names are canonical (aliases resolved),
numbers coerced, cross-field rules hold. Machine facts (the data folder exists, CUDA is present)
are not part of it: `components.preflight` checks them on the machine that runs the job.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from ..common import DENSE_SECTIONS, set_dotted
from ..errors import ConfigError
from ..results.files import YAMLRefused, parse_yaml, read_yaml, yaml_problem
from .ids import UNHASHED, compute_ids
from .plugins import load_plugins, resolve_plugins
from ..pruning import STRATEGIES
from ..data import is_text_dataset
from .validate import (NO_STRATEGY, build, check_options, check_section, data_options,
                       field_path, model_options, strategy_defaults, strategy_options, to_plain,
                       without_defaults)


def _f(default: Any = None, help: str = "", check: str | None = None, names: str | None = None,
       factory: Any = None) -> Any:
    meta = {"help": help, "check": check, "names": names}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


class _Section:
    def __post_init__(self) -> None:
        check_section(self)


@dataclass(frozen=True)
class DataConfig(_Section):
    """Which data set, where it lives and how it is split and augmented."""

    name: str = _f("digits", "data set name (`shrinkbench list datasets`)", names="dataset")
    data_dir: str | None = _f(None, "folder holding the data set files; default $SHRINKBENCH_DATA "
                              "or the user cache folder (not part of the run id)")
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

    def __post_init__(self) -> None:
        check_section(self)
        check_options(field_path("options"), self.options, data_options(self.name), self.name)


@dataclass(frozen=True)
class ModelConfig(_Section):
    """Which zoo model, with its options."""

    name: str = _f("convnet_digits", "model name (`shrinkbench list models`)", names="model")
    options: dict[str, Any] = _f(help="keyword options of the model constructor", factory=dict)

    def __post_init__(self) -> None:
        check_section(self)
        check_options(field_path("options"), self.options, model_options(self.name), self.name)


@dataclass(frozen=True)
class RecipeConfig(_Section):
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

    def __post_init__(self) -> None:
        check_section(self)
        if self.nesterov and (self.optimizer != "sgd" or self.momentum <= 0):
            raise ConfigError(f"{field_path('nesterov')}: needs optimizer sgd with momentum > 0, got "
                              f"{self.optimizer} with momentum {self.momentum}")
        if self.schedule == "multistep" and not self.milestones:
            raise ConfigError(f"{field_path('milestones')}: the multistep schedule needs at least one "
                              "milestone")


def _dense_recipe() -> RecipeConfig:
    return RecipeConfig(epochs=20, lr=0.05, batch_size=64)


def _finetune_recipe() -> RecipeConfig:
    return RecipeConfig(epochs=4, lr=0.01, batch_size=64)


@dataclass(frozen=True)
class DenseConfig(_Section):
    """Where the dense (unpruned) model comes from."""

    source: str = _f("train", "'train' (train with `recipe`, cached by dense id) or a checkpoint "
                     "file (a state dict, loaded with weights_only=True)", check="dense_source")
    recipe: RecipeConfig = _f(help="training recipe when source is 'train'", factory=_dense_recipe)


@dataclass(frozen=True)
class PruningConfig(_Section):
    """Which strategy, how much, and on which parameters."""

    strategy: str = _f("global_magnitude", "strategy name or alias (`shrinkbench list "
                       "strategies`), e.g. GlobalMagWeight; at compression 1 it is `none`",
                       names="strategy")
    compression: float = _f(4.0, "target compression: total parameters / nonzero parameters; "
                            "1 = the unpruned control, one run shared by every strategy. With a "
                            "structured strategy, the value of `target`", check="at_least_one")
    target: str = _f("compression", "what `compression` asks of a structured (channel) strategy: "
                     "compression (parameters), speedup (dense MACs / MACs left) or channels "
                     "(prunable channels / channels kept; 2 = half the channels); unstructured "
                     "strategies take compression only", check="target")
    round_to: int = _f(1, "structured strategies: keep a multiple of this many channels in every "
                       "group (8 or 16 suit vectorized kernels)", check="positive")
    include_classifier: bool = _f(False, "also prune the final classifier layer")
    include_bias: bool = _f(False, "also prune biases")
    ignore: tuple[str, ...] = _f((), "qualified parameter or module names never pruned")
    score_batches: int = _f(1, "training batches (chosen by the seed) that feed gradient and "
                            "activation scores", check="positive")
    calibration_samples: int | None = _f(None, "examples (text: sequences) drawn at random from "
                                         "the training split, without augmentation, to score with "
                                         "(Wanda, SparseGPT, gradient and activation scores); null: "
                                         "the first score_batches training batches",
                                         check="positive")
    calibration_length: int | None = _f(None, "text data: tokens per calibration sequence (null: "
                                        "the data set's block_size); needs calibration_samples",
                                        check="positive")
    calibration_seed: int | None = _f(None, "the seed that draws the calibration examples (null: "
                                      "the run's seed); needs calibration_samples",
                                      check="nonnegative")
    allocation: str | None = _f(None, "how kept weights are shared among tensors, overriding the "
                                "strategy's own: global, layerwise (alias uniform: the same density "
                                "in every tensor) or erk (Erdos-Renyi-Kernel); unstructured "
                                "strategies only", names="allocation")
    classifier_rate: float = _f(1.0, "layerwise allocation: the classifier's pruning rate relative "
                                "to the other tensors' (0.5: half as many of its remaining weights "
                                "pruned at each step, as Frankle & Carbin prune the output layer); "
                                "needs include_classifier", check="positive")
    options: dict[str, Any] = _f(help="keyword options of the strategy's score function "
                                 "(`shrinkbench list strategies` shows them)", factory=dict)

    def __post_init__(self) -> None:
        check_section(self)
        if self.compression == 1.0:
            # the unpruned control: nothing is scored, so every strategy's control is one run
            for f in dataclasses.fields(self):
                object.__setattr__(self, f.name, CONTROL_FIELDS.get(f.name, _default(f)))
            return
        if self.strategy == NO_STRATEGY:
            raise ConfigError(f"{field_path('strategy')}: '{NO_STRATEGY}' prunes nothing: it is the "
                              f"strategy of the unpruned control (compression 1), got compression "
                              f"{self.compression:g}")
        structured = STRATEGIES.get(self.strategy).structured
        if self.round_to != 1 and not structured:
            raise ConfigError(f"{field_path('round_to')}: {self.round_to} needs a structured (channel) "
                              f"strategy; {STRATEGIES.shown(self.strategy)} prunes single weights")
        if self.target != "compression" and not structured:
            raise ConfigError(f"{field_path('target')}: {self.target!r} needs a structured (channel) "
                              f"strategy; {STRATEGIES.shown(self.strategy)} prunes single weights to a "
                              "compression")
        if self.allocation is not None and structured:
            raise ConfigError(f"{field_path('allocation')}: {self.allocation!r} applies to single "
                              f"weights; {STRATEGIES.shown(self.strategy)} removes whole channels")
        if self.classifier_rate != 1.0:
            allocation = self.allocation or STRATEGIES.get(self.strategy).allocation
            if not self.include_classifier or allocation != "layerwise":
                raise ConfigError(f"{field_path('classifier_rate')}: {self.classifier_rate:g} needs "
                                  "include_classifier: true and a layerwise allocation (got "
                                  f"include_classifier {str(self.include_classifier).lower()}, "
                                  f"allocation {allocation})")
        for name in ("calibration_length", "calibration_seed"):
            if getattr(self, name) is not None and self.calibration_samples is None:
                raise ConfigError(f"{field_path(name)}: {getattr(self, name)} needs "
                                  "calibration_samples (how many examples to draw); without it "
                                  "scores read the first score_batches training batches")
        valid, required = strategy_options(self.strategy)
        check_options(field_path("options"), self.options, valid, STRATEGIES.shown(self.strategy))
        object.__setattr__(self, "options", without_defaults(self.options, strategy_defaults(self.strategy)))
        missing = [name for name in required if name not in self.options]
        if missing:
            raise ConfigError(f"{field_path('options')}: strategy {self.strategy!r} needs option(s) "
                              f"{', '.join(missing)}")


CONTROL_FIELDS = {"strategy": NO_STRATEGY, "compression": 1.0}


@dataclass(frozen=True)
class LatencyConfig(_Section):
    """How each run measures its latency next to the dense model's (same batch, threads, device)."""

    enabled: bool = _f(True, "measure dense and pruned latency side by side after fine-tuning")
    batch_size: int = _f(16, "examples per timed forward pass", check="positive")
    warmup: int = _f(3, "untimed forward passes of each model first", check="nonnegative")
    repeats: int = _f(10, "timed forward passes of each model, interleaved", check="positive")
    sparse: bool = _f(False, "also time the pruned model with CSR sparse Linear layers "
                      "(unstructured masks, CPU)")


SCHEDULE_KINDS = ("oneshot", "iterative", "gradual", "lottery")
CONTROLS = ("none", "reinit", "random", "shuffle")
# The fields each schedule kind reads; another kind refuses them when they differ from the default.
_SCHEDULE_FIELDS = {
    "at_init": ("oneshot", "gradual"),
    "rate": ("iterative", "lottery"),
    "round_epochs": ("iterative",),
    "rewind": ("lottery",),
    "control": ("lottery",),
    "begin": ("gradual",),
    "end": ("gradual",),
    "frequency": ("gradual",),
    "initial_sparsity": ("gradual",),
}


@dataclass(frozen=True)
class ScheduleConfig(_Section):
    """When pruning happens during training: once, in rounds, gradually, or as lottery tickets."""

    kind: str = _f("oneshot", "oneshot (prune the trained dense model once, then fine-tune), "
                   "iterative (rounds of prune then fine-tune), gradual (Zhu & Gupta's cubic "
                   "schedule during training) or lottery (iterative magnitude pruning with "
                   "rewinding, Frankle & Carbin)", check="schedule_kind")
    at_init: bool = _f(False, "oneshot/gradual: start from the initialized model instead of the "
                       "trained dense one; the dense recipe then trains the sparse network, "
                       "followed by the fine-tuning recipe")
    rate: float = _f(0.2, "iterative/lottery: fraction of the remaining prunable weights pruned "
                     "per round; the last round stops at the target compression",
                     check="unit_interior")
    round_epochs: int | None = _f(None, "iterative: fine-tuning epochs after each round "
                                  "(default: finetune.epochs)", check="positive")
    rewind: int | str = _f("0it", "lottery: where surviving weights are rewound to: 0 (initialization), "
                     "Nep (after N epochs of dense training) or Nit (after N steps)", check="step")
    control: str = _f("none", "lottery: none (the ticket), or a control with the ticket's final "
                      "sparsity: reinit (its mask, weights re-initialized), random (random "
                      "pruning) or shuffle (its mask shuffled within each tensor)",
                      check="control")
    begin: int | str = _f("0it", "gradual: first pruning step (Nit steps or Nep epochs into the "
                    "training phase)", check="step")
    end: int | str | None = _f(None, "gradual: last pruning step, where the target is reached "
                         "(default: three quarters of the training phase)", check="step")
    frequency: int = _f(100, "gradual: optimizer steps between pruning steps", check="positive")
    initial_sparsity: float = _f(0.0, "gradual: sparsity of the prunable weights at the first "
                                 "pruning step (s_i in Zhu & Gupta)", check="unit_open")

    def __post_init__(self) -> None:
        check_section(self)
        for name in ("rewind", "begin", "end"):  # one spelling per step: 0, "00" and "0ep" are "0it"
            value = getattr(self, name)
            if value is not None:
                match = re.fullmatch(r"(\d+)(ep|it)?", str(value).replace(" ", ""))
                count, unit = int(match[1]), match[2] or "it"
                object.__setattr__(self, name, "0it" if count == 0 else f"{count}{unit}")
        if (self.end is not None and self.begin[-2:] == self.end[-2:]
                and int(self.begin[:-2]) > int(self.end[:-2])):
            raise ConfigError(f"{field_path('end')}: {self.end} comes before begin {self.begin}")
        for name, kinds in _SCHEDULE_FIELDS.items():
            if self.kind not in kinds and getattr(self, name) != _SCHEDULE_DEFAULTS[name]:
                raise ConfigError(f"{field_path(name)}: applies to schedule kind "
                                  f"{' or '.join(kinds)}, not {self.kind}")

    @property
    def is_default(self) -> bool:
        """One-shot pruning of the trained dense model (the schedule of runs without one)."""
        return self.kind == "oneshot" and all(getattr(self, name) == default
                                              for name, default in _SCHEDULE_DEFAULTS.items())


_SCHEDULE_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ScheduleConfig)}


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


@dataclass(frozen=True)
class Config(_Section):
    """One experiment: dataset, model, dense model, pruning, fine-tuning, seed and device."""

    data: DataConfig = _f(help="the data set", factory=DataConfig)
    model: ModelConfig = _f(help="the model", factory=ModelConfig)
    dense: DenseConfig = _f(help="the dense model", factory=DenseConfig)
    pruning: PruningConfig = _f(help="the pruning", factory=PruningConfig)
    finetune: RecipeConfig = _f(help="the fine-tuning recipe after pruning", factory=_finetune_recipe)
    latency: LatencyConfig = _f(help="the latency measurement of each run", factory=LatencyConfig)
    schedule: ScheduleConfig = _f(help="when pruning happens during training", factory=ScheduleConfig)
    seed: int = _f(0, "fixes data order, initialization, validation split, pruning and score "
                   "batches", check="nonnegative")
    threads: int = _f(1, "intra-op CPU threads of the run; part of the run id, since CPU results "
                      "depend on it in the last bits", check="positive")
    device: str = _f("auto", "auto (CUDA when available), cpu, cuda, cuda:N or mps (not part of "
                     "the run id)", check="device")
    precision: str = _f("fp32", "fp32, or bf16 (autocast)", check="precision")
    channels_last: bool = _f(False, "channels-last memory format for 4-D inputs (conv nets)")
    checkpoint_every: int = _f(1, "write a resumable checkpoint every N epochs (0: never; not part "
                               "of the run id)", check="nonnegative")
    plugins: tuple[str, ...] = _f((), "modules or .py files to import first, in every worker: they "
                                  "register strategies, models or data sets (not part of the run id)",
                                  check="plugin")

    def __post_init__(self) -> None:
        check_section(self)
        _cross_checks(self)

    @cached_property
    def _ids(self) -> tuple[str, str]:
        return compute_ids(self)

    @property
    def run_id(self) -> str:
        """The run's id: a hash of the canonical config without unhashed fields."""
        return self._ids[0]

    @property
    def dense_id(self) -> str:
        """The dense model's id: what fixes it (data, model, dense recipe, seed, numerics)."""
        return self._ids[1]

    @property
    def is_control(self) -> bool:
        """The unpruned control: compression 1, nothing pruned, fine-tuned like the pruned runs."""
        return self.pruning.compression == 1.0


def _cross_checks(cfg: Config) -> None:
    """Rules that span sections (each section checks its own when it is built)."""
    if cfg.pruning.calibration_seed is not None and cfg.pruning.calibration_seed == cfg.seed:
        # the run's seed is what null means: one run, one id
        object.__setattr__(cfg, "pruning", dataclasses.replace(cfg.pruning, calibration_seed=None))
    length = cfg.pruning.calibration_length
    if length is not None and not is_text_dataset(cfg.data.name):
        raise ConfigError(f"pruning.calibration_length: {length} applies to text data sets (token "
                          f"sequences); {cfg.data.name!r} has examples of a fixed shape")
    if cfg.is_control and not cfg.schedule.is_default:
        # the unpruned control prunes nothing: every schedule shares the one control run
        object.__setattr__(cfg, "schedule", ScheduleConfig())
    s = cfg.schedule
    if not s.is_default:
        if STRATEGIES.get(cfg.pruning.strategy).structured:
            raise ConfigError(f"schedule.kind: {s.kind}{' at init' if s.at_init else ''} prunes "
                              "single weights over time; structured strategies "
                              f"({STRATEGIES.shown(cfg.pruning.strategy)}) run one-shot")
        epochs = {"rewind": cfg.dense.recipe.epochs,
                  "begin": (cfg.dense.recipe if s.at_init else cfg.finetune).epochs}
        epochs["end"] = epochs["begin"]
        for name, limit in epochs.items():  # steps in epochs are checked here; in steps, by preflight
            value = getattr(s, name)
            if value is None or not value.endswith("ep") or getattr(ScheduleConfig(), name) == value:
                continue
            count = int(value[:-2])
            if count > limit or (name == "rewind" and count >= limit):
                phase = "dense training" if name == "rewind" or s.at_init else "fine-tuning"
                raise ConfigError(f"schedule.{name}: {value} is {'at or ' if name == 'rewind' else ''}"
                                  f"past the end of {phase} ({limit} epochs)")
        if (s.kind == "lottery" or s.at_init) and cfg.dense.source != "train":
            raise ConfigError(f"dense.source: schedule {s.kind}"
                              f"{' at init' if s.at_init else ''} starts from the initialization "
                              "of a trained dense model: it needs dense.source: train")
    if cfg.dense.source == "train" and cfg.dense.recipe.epochs < 1:
        raise ConfigError("dense.recipe.epochs: expected an integer >= 1 to train the dense model, "
                          f"got {cfg.dense.recipe.epochs}")


CONTROL = PruningConfig(strategy=NO_STRATEGY, compression=1.0)  # the pruning of every control run


def load_config(path: str | os.PathLike, overrides: Iterable[str] = (),
                plugins: Iterable[str] = ()) -> Config:
    """Read a YAML config (safe_load), apply `key=value` overrides, import its plugins, build it."""
    file = Path(path)
    raw = read_yaml(file, "config file", ConfigError)
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config file {str(file)!r}: expected a mapping of fields at the top, "
                          f"got {type(raw).__name__}")
    return config_from_dict(apply_overrides(raw, overrides), base_dir=file.parent, plugins=plugins)


def apply_overrides(raw: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of `raw` with each `dotted.key=value` set (the value parsed as YAML)."""
    out = copy.deepcopy(dict(raw))
    for item in overrides:
        key, sep, text = str(item).partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE with a dotted key, "
                              "e.g. finetune.lr=0.01")
        try:
            value = parse_yaml(text) if text.strip() else None
        except YAMLRefused as exc:
            raise ConfigError(f"--set {key}: {yaml_problem(exc)}") from None
        except yaml.YAMLError:
            value = text
        set_dotted(out, key, value)
    return out


def config_from_dict(raw: Mapping[str, Any], *, base_dir: str | os.PathLike | None = None,
                     plugins: Iterable[str] = ()) -> Config:
    """Build a Config from plain data (YAML/JSON); errors name the field.

    Its `plugins` (and `plugins` given here, e.g. from --plugin) are imported first, so that the
    names they register resolve; relative plugin files are taken from `base_dir`.
    """
    if isinstance(raw, Mapping) and ("plugins" in raw or plugins):
        listed = raw.get("plugins") or []
        if isinstance(listed, str):
            listed = [listed]
        if not isinstance(listed, (list, tuple)):
            raise ConfigError(f"plugins: expected a list of modules or .py files, got {listed!r}")
        # --plugin paths are the user's, relative to the current folder; listed ones to the file's
        names = resolve_plugins([*resolve_plugins(plugins), *resolve_plugins(listed, base_dir)])
        raw = {**raw, "plugins": list(names)}
    else:
        names = ()
    load_plugins(names)
    return build(Config, raw)


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """The config as plain data, names canonical, tuples as lists."""
    return to_plain(cfg)


def run_id(cfg: Config) -> str:
    """The run's id (see Config.run_id)."""
    return cfg.run_id


def dense_id(cfg: Config) -> str:
    """The dense model's id (see Config.dense_id)."""
    return cfg.dense_id


def dense_config(cfg: Config) -> dict[str, Any]:
    """The part of the config that defines the dense model (as stored in its 'dense' row)."""
    tree = to_plain(cfg)
    return {key: tree[key] for key in (*DENSE_SECTIONS, "device")}


__all__ = ["Config", "LatencyConfig", "ScheduleConfig", "SCHEDULE_KINDS", "CONTROLS", "DataConfig", "ModelConfig", "RecipeConfig", "DenseConfig", "PruningConfig",
           "CONTROL", "UNHASHED", "load_config", "apply_overrides", "config_from_dict",
           "config_to_dict", "run_id", "dense_id", "dense_config"]
