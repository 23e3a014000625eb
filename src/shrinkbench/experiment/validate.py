"""Config checking: each section's fields are coerced, range-checked and name-resolved once, when it is built."""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import types
import typing
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Callable, Mapping

from ..data import DATASETS, dataset_info
from ..errors import ConfigError, UnknownNameError
from ..models import MODELS, model_info
from ..pruning import ALLOCATIONS, STRATEGIES
from ..registry import Registry
from .optim import OPTIMIZERS, SCHEDULES

T = typing.TypeVar("T")

CHECKS: Registry[Callable[[Any], str | None]] = Registry("check")
NAMES: Registry[Callable[[str], str]] = Registry("name kind")

# The dotted path of the section being built, so that its errors name the field in full
# (a RecipeConfig is both `dense.recipe` and `finetune`).
_PREFIX: ContextVar[str] = ContextVar("config_prefix", default="")

_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
INT_LIMIT = 2**63  # integers must fit a signed 64-bit integer (torch, NumPy, SQLite)
NO_STRATEGY = "none"  # the strategy of the unpruned control (compression 1): nothing is scored


def _range(test: Callable[[Any], bool], words: str) -> Callable[[Any], str | None]:
    return lambda v: None if test(v) else words


CHECKS.add("positive", _range(lambda v: v > 0, "a positive number"))
CHECKS.add("nonnegative", _range(lambda v: v >= 0, "a number >= 0"))
CHECKS.add("at_least_one", _range(lambda v: v >= 1, "a number >= 1"))
CHECKS.add("unit_open", _range(lambda v: 0 <= v < 1, "a number in [0, 1)"))
CHECKS.add("unit_closed", _range(lambda v: 0 < v <= 1, "a number in (0, 1]"))
CHECKS.add("val_size", _range(lambda v: v >= 0 if isinstance(v, int) else 0 <= v < 1,
                              "an integer >= 0 or a fraction in [0, 1)"))
CHECKS.add("target", _range(lambda v: v in ("compression", "speedup", "channels"),
                           "one of: compression, speedup, channels"))
CHECKS.add("unit_interior", _range(lambda v: 0 < v < 1, "a number in (0, 1)"))
CHECKS.add("schedule_kind", _range(lambda v: v in ("oneshot", "iterative", "gradual", "lottery"),
                                   "one of: oneshot, iterative, gradual, lottery"))
CHECKS.add("control", _range(lambda v: v in ("none", "reinit", "random", "shuffle"),
                             "one of: none, reinit, random, shuffle"))
CHECKS.add("step", _range(lambda v: not isinstance(v, bool) and re.fullmatch(r"\d+ *(ep|it)?", str(v).strip()) is not None,
                          "a step such as 0, 3ep (epochs) or 500it (optimizer steps)"))
CHECKS.add("precision", _range(lambda v: v in ("fp32", "bf16"), "one of: fp32, bf16"))
CHECKS.add("device", _range(lambda v: v in ("auto", "cpu", "mps") or re.fullmatch(r"cuda(:\d+)?", v),
                            "one of: auto, cpu, cuda, cuda:N, mps"))


class Refusal(str):
    """What a check returns to refuse a value with this whole sentence (not "expected ...")."""


@CHECKS.register("dense_source")
def _dense_source(value: str) -> str | None:
    if value == "train" or Path(value).is_file():
        return None
    if Path(value).is_dir():
        return Refusal(f"{value!r} is a directory; expected 'train' or a checkpoint file")
    return "'train' or an existing checkpoint file"

CHECKS.add("plugin", _range(lambda v: bool(v.strip()), "a module name or a .py file"))


@NAMES.register("strategy")
def _strategy(name: str) -> str:
    return NO_STRATEGY if name.lower() == NO_STRATEGY else STRATEGIES.canonical(name)


NAMES.add("model", lambda name: model_info(name).name)
NAMES.add("dataset", lambda name: dataset_info(name).name)
NAMES.add("optimizer", OPTIMIZERS.canonical)
NAMES.add("schedule", SCHEDULES.canonical)
NAMES.add("allocation", ALLOCATIONS.canonical)


def _show(value: Any) -> str:
    if isinstance(value, int) and abs(value) >= 10**60:  # str() of a huge int is slow, or refused
        return f"an integer of {math.floor(math.log10(abs(value))) + 1} digits"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", type(None): "nothing"}.get(type(value), _show(value))


class FrozenDict(dict):
    """A mapping of config options that cannot be changed in place (a Config is immutable: change
    it with dataclasses.replace, which checks the new value)."""

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("config options are read-only; build a new config with dataclasses.replace")

    __setitem__ = __delitem__ = __ior__ = _refuse  # type: ignore[assignment]
    clear = pop = popitem = setdefault = update = _refuse  # type: ignore[assignment]

    def __reduce__(self) -> tuple:
        return (FrozenDict, (dict(self),))


def fail(path: str, expected: str, value: Any) -> ConfigError:
    """The one-line error of a field: `path: expected ..., got ...`."""
    return ConfigError(f"{path}: expected {expected}, got {_kind(value)}")


def _sane_int(path: str, value: int) -> int:
    if not -INT_LIMIT < value < INT_LIMIT:
        raise fail(path, "an integer between -2**63 and 2**63 (exclusive)", value)
    return value


def plain_value(path: str, value: Any) -> Any:
    """Plain YAML data (for free-form options): scalars, lists and string-keyed mappings."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return _sane_int(path, value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise fail(path, "a finite number", value)
        return value
    if isinstance(value, (list, tuple)):
        return [plain_value(f"{path}[{i}]", v) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for key, v in value.items():
            if not isinstance(key, str):
                raise ConfigError(f"{path}: keys must be strings, got {_show(key)}")
            out[key] = plain_value(f"{path}.{key}", v)
        return FrozenDict(out)
    raise fail(path, "plain data (numbers, strings, lists, mappings)", value)


def _coerce(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None and len(args) < len(typing.get_args(tp)):
            return None
        exact = [a for a in args if type(value) is a]  # int | float keeps an int an int
        return _coerce((exact or args)[0], value, path)
    if origin is tuple:
        item = typing.get_args(tp)[0]
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise fail(path, "a list", value)
        return tuple(_coerce(item, v, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise fail(path, "a mapping", value)
        return plain_value(path, value)
    if tp is bool:
        if not isinstance(value, bool):
            raise fail(path, "true or false", value)
        return value
    if tp is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(path, "an integer", value)
        return _sane_int(path, value)
    if tp is float:
        if isinstance(value, str) and _FLOAT.match(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-3 as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail(path, "a number", value)
        if isinstance(value, int) and not -INT_LIMIT < value < INT_LIMIT:
            raise fail(path, "a finite number (at most 2**63 in size)", value)
        if not math.isfinite(value):
            raise fail(path, "a finite number", value)
        return float(value)
    if tp is str:
        if not isinstance(value, str) or not value:
            raise fail(path, "a non-empty string", value)
        return value
    raise TypeError(f"unsupported config field type {tp!r} at {path}")  # a bug in the schema


def _check(meta: Mapping[str, Any], value: Any, path: str) -> Any:
    if value is None:
        return value
    check = meta.get("check")
    if check:
        for item in value if isinstance(value, tuple) else (value,):
            expected = CHECKS.get(check)(item)
            if isinstance(expected, Refusal):
                raise ConfigError(f"{path}: {expected}")
            if expected:
                raise fail(path, expected, item)
    kind = meta.get("names")
    if kind:
        try:
            value = NAMES.get(kind)(value)
        except UnknownNameError as exc:
            raise UnknownNameError(f"{path}: {exc}") from None
    return value


@functools.lru_cache(maxsize=None)
def _schema(cls: type) -> tuple[tuple[dataclasses.Field, Any], ...]:
    hints = typing.get_type_hints(cls)
    return tuple((f, hints[f.name]) for f in dataclasses.fields(cls))


@functools.lru_cache(maxsize=None)
def _plan(cls: type) -> tuple[tuple[dataclasses.Field, Any, bool], ...]:
    return tuple((f, hint, dataclasses.is_dataclass(hint)) for f, hint in _schema(cls))


@functools.lru_cache(maxsize=None)
def section_fields(cls: type) -> frozenset[str]:
    """The fields of a config class that are sections themselves."""
    return frozenset(f.name for f, _, section in _plan(cls) if section)


# Checked scalar values by (section type, field, value type, value): a field's check is a pure
# function of its value (registries only grow), so a sweep's many configs check each value once.
_CHECKED: dict[tuple, Any] = {}
_MISSING = object()


def check_section(obj: Any) -> None:
    """Coerce, check and resolve every field of a config section in place (called by __post_init__)."""
    prefix = _PREFIX.get()
    cls = type(obj)
    for f, hint, section in _plan(cls):
        value = getattr(obj, f.name)
        if section:
            if not isinstance(value, hint):
                path = f"{prefix}.{f.name}" if prefix else f.name
                object.__setattr__(obj, f.name, build(hint, value, path, _default(f)))
            continue
        try:
            key = (cls, f.name, type(value), value)
            checked = _CHECKED.get(key, _MISSING)
        except TypeError:  # unhashable (a mapping of options): checked every time
            key, checked = None, _MISSING
        if checked is _MISSING:
            path = f"{prefix}.{f.name}" if prefix else f.name
            checked = _check(f.metadata, _coerce(hint, value, path), path)
            if key is not None:
                _CHECKED[key] = checked
        object.__setattr__(obj, f.name, checked)


def current_prefix() -> str:
    """The dotted path of the section being built ('' at the top or outside a build)."""
    return _PREFIX.get()


def field_path(name: str) -> str:
    """The full dotted name of a field of the section being built."""
    prefix = _PREFIX.get()
    return f"{prefix}.{name}" if prefix else name


def construct(cls: type[T], path: str, kwargs: Mapping[str, Any]) -> T:
    """`cls(**kwargs)` with errors naming fields under `path`."""
    token = _PREFIX.set(path)
    try:
        return cls(**kwargs)
    finally:
        _PREFIX.reset(token)


def build(cls: type[T], raw: Any, path: str = "", base: Any = None) -> T:
    """A section of type `cls` from a mapping; unknown keys and bad values raise ConfigError.

    Fields missing from `raw` keep their value in `base` (default: the field defaults, so a partial
    section such as {finetune: {lr: 0.1}} keeps the rest of the default fine-tuning recipe).
    """
    if isinstance(raw, cls):
        return raw
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise fail(path or "config", "a mapping of fields", raw)
    schema = _schema(cls)
    names = [f.name for f, _ in schema]
    for key in raw:
        if key not in names:
            raise ConfigError(f"{path + '.' if path else ''}{key}: unknown key; valid keys: "
                              f"{', '.join(names)}")
    kwargs = {}
    for f, hint in schema:
        sub = f"{path}.{f.name}" if path else f.name
        if f.name in raw:
            value = raw[f.name]
            if dataclasses.is_dataclass(hint):
                value = build(hint, value, sub, getattr(base, f.name) if base is not None
                              else _default(f))
            kwargs[f.name] = value
        elif base is not None:
            kwargs[f.name] = getattr(base, f.name)
    return construct(cls, path, kwargs)


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def check_options(path: str, given: Mapping[str, Any], valid: list[str], owner: str) -> None:
    """Refuse an option `owner` does not take, naming it and the valid ones."""
    for key in given:
        if key not in valid:
            raise ConfigError(f"{path}.{key}: {owner!r} has no such option; valid options: "
                              f"{', '.join(valid) or 'none'}")


@functools.lru_cache(maxsize=None)
def _model_options(entry: Any) -> list[str]:
    return sorted(entry.options())


@functools.lru_cache(maxsize=None)
def _strategy_options(strategy: Any) -> tuple[list[str], list[str]]:
    return strategy.option_names(), strategy.required_options()


def model_options(name: str) -> list[str]:
    """The keyword options of a zoo model's constructor."""
    return _model_options(MODELS.get(name))


def data_options(name: str) -> list[str]:
    """The keyword options of a data set."""
    return sorted(DATASETS.get(name).options)


def strategy_options(name: str) -> tuple[list[str], list[str]]:
    """(every option, the required ones) of a strategy's score function."""
    return _strategy_options(STRATEGIES.get(name))


def without_defaults(options: Mapping[str, Any], defaults: Mapping[str, Any]) -> FrozenDict:
    """`options` less those equal to their default (an int given for a float default counts as that
    float), so that a run with `power: 1` and one that leaves the default 1.0 are the same run."""
    out = {}
    for key, value in options.items():
        default = defaults.get(key, _MISSING)
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if default is not _MISSING and type(value) is type(default) and value == default:
            continue
        out[key] = value
    return FrozenDict(out)


def strategy_defaults(name: str) -> dict[str, Any]:
    """The options of a strategy that have defaults, with them."""
    return STRATEGIES.get(name).option_defaults()


def to_plain(obj: Any) -> Any:
    """Plain data of a config section (tuples as lists, mappings copied)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f, _ in _schema(type(obj))}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: to_plain(v) for k, v in obj.items()}
    return obj


def strategy_shown(name: str) -> str:
    """The one name a user sees for a strategy: its ShrinkBench name (GlobalMagWeight), a plugin's
    CamelCase alias when it registered one, else its registered name; `Unpruned` for the control."""
    from ..pruning import STRATEGIES

    if name == NO_STRATEGY:
        return "Unpruned"
    return STRATEGIES.shown(STRATEGIES.canonical(name)) if name in STRATEGIES else name
