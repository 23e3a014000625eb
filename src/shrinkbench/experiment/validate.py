"""A generic walker that builds config dataclasses from plain data, checking types, ranges and names."""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Callable, Mapping

from ..errors import ConfigError, UnknownNameError
from ..registry import Registry

T = typing.TypeVar("T")

CHECKS: Registry[Callable[[Any], str | None]] = Registry("check")
NAMES: Registry[Callable[[str], str]] = Registry("name kind")

_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _range(test: Callable[[Any], bool], words: str) -> Callable[[Any], str | None]:
    return lambda v: None if test(v) else words


CHECKS.add("positive", _range(lambda v: v > 0, "a positive number"))
CHECKS.add("nonnegative", _range(lambda v: v >= 0, "a number >= 0"))
CHECKS.add("at_least_one", _range(lambda v: v >= 1, "a number >= 1"))
CHECKS.add("unit_open", _range(lambda v: 0 <= v < 1, "a number in [0, 1)"))
CHECKS.add("unit_closed", _range(lambda v: 0 < v <= 1, "a number in (0, 1]"))
CHECKS.add("val_size", _range(lambda v: v >= 0 if isinstance(v, int) else 0 <= v < 1,
                              "an integer >= 0 or a fraction in [0, 1)"))
CHECKS.add("precision", _range(lambda v: v in ("fp32", "bf16"), "one of: fp32, bf16"))


@CHECKS.register("device")
def _check_device(value: str) -> str | None:
    if value in ("auto", "cpu"):
        return None
    match = re.fullmatch(r"cuda(:\d+)?", value)
    if match:
        import torch

        if not torch.cuda.is_available():
            return "a usable device (CUDA is not available here; use auto or cpu)"
        if match.group(1) and int(match.group(1)[1:]) >= torch.cuda.device_count():
            return f"a CUDA device index below {torch.cuda.device_count()}"
        return None
    if value == "mps":
        import torch

        ok = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
        return None if ok else "a usable device (MPS is not available here)"
    return "one of: auto, cpu, cuda, cuda:N, mps"


@CHECKS.register("dense_source")
def _check_dense_source(value: str) -> str | None:
    if value == "train" or Path(value).is_file():
        return None
    return "'train' or an existing checkpoint file"


@CHECKS.register("data_dir")
def _check_data_dir(value: str) -> str | None:
    return None  # existence depends on `download`: checked in _cross_checks


@NAMES.register("strategy")
def _strategy(name: str) -> str:
    from ..pruning import STRATEGIES

    return STRATEGIES.canonical(name)


@NAMES.register("model")
def _model(name: str) -> str:
    from ..models import model_info

    return model_info(name).name


@NAMES.register("dataset")
def _dataset(name: str) -> str:
    from ..data import dataset_info

    return dataset_info(name).name


@NAMES.register("optimizer")
def _optimizer(name: str) -> str:
    from .optim import OPTIMIZERS

    return OPTIMIZERS.canonical(name)


@NAMES.register("schedule")
def _schedule(name: str) -> str:
    from .optim import SCHEDULES

    return SCHEDULES.canonical(name)


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", type(None): "nothing"}.get(type(value), _show(value))


def _fail(path: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(f"{path}: expected {expected}, got {_kind(value)}")


def _plain_value(path: str, value: Any) -> Any:
    """Plain YAML data (for free-form options): scalars, lists and string-keyed mappings."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _fail(path, "a finite number", value)
        return value
    if isinstance(value, (list, tuple)):
        return [_plain_value(f"{path}[{i}]", v) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for key, v in value.items():
            if not isinstance(key, str):
                raise ConfigError(f"{path}: keys must be strings, got {_show(key)}")
            out[key] = _plain_value(f"{path}.{key}", v)
        return out
    raise _fail(path, "plain data (numbers, strings, lists, mappings)", value)


def _coerce(tp: Any, value: Any, path: str, base: Any = None) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None and len(args) < len(typing.get_args(tp)):
            return None
        exact = [a for a in args if type(value) is a]  # int | float keeps an int an int
        return _coerce((exact or args)[0], value, path)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, path, base)
    if origin is tuple:
        item = typing.get_args(tp)[0]
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise _fail(path, "a list", value)
        return tuple(_coerce(item, v, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise _fail(path, "a mapping", value)
        return _plain_value(path, value)
    if tp is bool:
        if not isinstance(value, bool):
            raise _fail(path, "true or false", value)
        return value
    if tp is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(path, "an integer", value)
        return value
    if tp is float:
        if isinstance(value, str) and _FLOAT.match(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-3 as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(path, "a number", value)
        if not math.isfinite(value):
            raise _fail(path, "a finite number", value)
        return float(value)
    if tp is str:
        if not isinstance(value, str) or not value:
            raise _fail(path, "a non-empty string", value)
        return value
    if tp is Any:
        return _plain_value(path, value)
    raise TypeError(f"unsupported config field type {tp!r} at {path}")  # a bug in the schema


def _check(meta: Mapping[str, Any], value: Any, path: str) -> Any:
    if value is None:
        return value
    check = meta.get("check")
    if check:
        for item in value if isinstance(value, tuple) else (value,):
            expected = CHECKS.get(check)(item)
            if expected:
                raise _fail(path, expected, item)
    kind = meta.get("names")
    if kind:
        try:
            value = NAMES.get(kind)(value)
        except UnknownNameError as exc:
            raise UnknownNameError(f"{path}: {exc}") from None
    return value


def _default(f: dataclasses.Field, base: Any) -> Any:
    if base is not None:
        return getattr(base, f.name)
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def build(cls: type[T], raw: Any, path: str = "", base: Any = None) -> T:
    """An instance of dataclass `cls` from a mapping; unknown keys and bad values raise ConfigError.

    Fields missing from `raw` keep their value in `base` (default: the field defaults, so a partial
    section such as {finetune: {lr: 0.1}} keeps the rest of the default fine-tuning recipe).
    """
    where = path or "config"
    if dataclasses.is_dataclass(raw) and not isinstance(raw, type):
        raw = to_plain(raw, canonical=False)
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise _fail(where, "a mapping of fields", raw)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            valid = ", ".join(fields)
            raise ConfigError(f"{path + '.' if path else ''}{key}: unknown key; valid keys: {valid}")
    kwargs = {}
    for name, f in fields.items():
        if name not in raw:
            if base is not None:
                kwargs[name] = getattr(base, name)
            continue
        sub = f"{path}.{name}" if path else name
        value = _coerce(hints[name], raw[name], sub, _default(f, base))
        kwargs[name] = _check(f.metadata, value, sub)
    obj = cls(**kwargs)
    if not path:
        _cross_checks(obj)
    return obj


def _cross_checks(cfg: Any) -> None:
    """Rules that span fields of the top-level Config."""
    for section in ("dense.recipe", "finetune"):
        recipe = cfg.dense.recipe if section == "dense.recipe" else cfg.finetune
        if recipe.nesterov and (recipe.optimizer != "sgd" or recipe.momentum <= 0):
            raise ConfigError(f"{section}.nesterov: needs optimizer sgd with momentum > 0, got "
                              f"{recipe.optimizer} with momentum {recipe.momentum}")
        if recipe.schedule == "multistep" and not recipe.milestones:
            raise ConfigError(f"{section}.milestones: the multistep schedule needs at least one "
                              "milestone")
    if cfg.dense.source == "train" and cfg.dense.recipe.epochs < 1:
        raise ConfigError("dense.recipe.epochs: expected an integer >= 1 to train the dense model, "
                          f"got {cfg.dense.recipe.epochs}")
    _check_options("model.options", cfg.model.options, _model_options(cfg.model.name), cfg.model.name)
    _check_options("data.options", cfg.data.options, _data_options(cfg.data.name), cfg.data.name)
    data_dir = cfg.data.data_dir
    if data_dir is not None and not cfg.data.download and not Path(data_dir).is_dir():
        raise ConfigError(f"data.data_dir: folder {data_dir!r} does not exist (set data.download "
                          "to fetch the data set)")


def _model_options(name: str) -> list[str]:
    from ..models import MODELS

    return sorted(MODELS.get(name).options())


def _data_options(name: str) -> list[str]:
    from ..data import DATASETS

    return sorted(DATASETS.get(name).options)


def _check_options(path: str, given: Mapping[str, Any], valid: list[str], owner: str) -> None:
    for key in given:
        if key not in valid:
            raise ConfigError(f"{path}.{key}: {owner!r} has no such option; valid options: "
                              f"{', '.join(valid) or 'none'}")


def to_plain(obj: Any, canonical: bool = True) -> Any:
    """Plain data of a config dataclass (tuples as lists); canonical resolves names through registries."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in dataclasses.fields(obj):
            value = to_plain(getattr(obj, f.name), canonical)
            kind = f.metadata.get("names")
            if canonical and kind and isinstance(value, str):
                value = NAMES.get(kind)(value)
            out[f.name] = value
        return out
    if isinstance(obj, (list, tuple)):
        return [to_plain(v, canonical) for v in obj]
    if isinstance(obj, Mapping):
        return {k: to_plain(v, canonical) for k, v in obj.items()}
    return obj


def validate(cfg: Any) -> Any:
    """A checked, canonical copy of a Config built in code (e.g. with dataclasses.replace)."""
    return build(type(cfg), to_plain(cfg, canonical=False))
