"""Sweep specs: a base config plus axes (a grid crossed with zip groups), expanded to built Configs.

Each point is the base Config with the point's values set. A point's changed sections are built
(and checked) once per distinct value and shared by every point that uses them, so a sweep of
10,000 runs expands in well under a second; the ids come with each Config.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..common import set_dotted
from ..errors import ConfigError, SweepError
from ..experiment.config import Config, apply_overrides, config_from_dict, load_config
from ..experiment.plugins import load_plugins, resolve_plugins
from ..experiment.validate import construct
from ..results.files import read_yaml
from .axes import Axes, parse_axes
from .plan import Run

SPEC_KEYS = ("base", "grid", "zip", "name", "plugins")


@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep: the base Config, the axes varied over it, and the runs of every point."""

    base: Config
    axes: Axes
    runs: tuple[Run, ...] = field(repr=False)
    source: str = "<inline>"
    name: str | None = None

    def __len__(self) -> int:
        return len(self.axes)


def _freeze(values: Mapping[str, Any]) -> Any:
    """A hashable key of a section's assignment (exact types kept: 1 and 1.0 and True differ)."""
    try:
        key = tuple((k, type(v), v) for k, v in sorted(values.items()))
        hash(key)
        return key
    except TypeError:  # lists or mappings among the values
        return json.dumps(values, sort_keys=True, default=repr)


def _replace(section: Any, values: Mapping[str, Any], path: str) -> Any:
    """A copy of a config section with dotted `values` set (nested sections and option dicts too)."""
    fields = {f.name: f for f in dataclasses.fields(section)}
    grouped: dict[str, dict[str, Any]] = {}
    changes: dict[str, Any] = {}
    for key, value in values.items():
        name, _, rest = key.partition(".")
        if name not in fields:
            where = f"{path}.{name}" if path else name
            raise ConfigError(f"{where}: unknown key; valid keys: {', '.join(fields)}")
        if rest:
            grouped.setdefault(name, {})[rest] = value
        else:
            changes[name] = value
    for name, sub in grouped.items():
        current = changes.get(name, getattr(section, name))
        where = f"{path}.{name}" if path else name
        if dataclasses.is_dataclass(current):
            changes[name] = _replace(current, sub, where)
        elif isinstance(current, dict):
            tree = json.loads(json.dumps(current))
            for key, value in sub.items():
                set_dotted(tree, key, value)
            changes[name] = tree
        else:
            raise ConfigError(f"{where}: is not a section, cannot set {where}.{next(iter(sub))}")
    kwargs = {f: getattr(section, f) for f in fields}
    kwargs.update(changes)
    return construct(type(section), path, kwargs)


def point_config(base: Config, values: Mapping[str, Any], cache: dict | None = None) -> Config:
    """`base` with the dotted `values` set; sections built once per distinct change (`cache`)."""
    cache = {} if cache is None else cache
    grouped: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for key, value in values.items():
        name, _, rest = key.partition(".")
        if rest:
            grouped.setdefault(name, {})[rest] = value
        else:
            top[name] = value
    for name, sub in grouped.items():
        section = getattr(base, name, None)
        if not dataclasses.is_dataclass(section):
            _replace(base, {f"{name}.{k}": v for k, v in sub.items()}, "")  # raises, naming the key
        memo = (name, _freeze(sub))
        if memo not in cache:
            cache[memo] = _replace(section, sub, name)
        top[name] = cache[memo]
    return _replace(base, top, "") if top else base


def _culprit(axes: Axes, point: Mapping[str, Any], exc: ConfigError) -> str:
    """Which axis value made a point invalid, as the spec names it."""
    path = str(exc).split(":", 1)[0]
    for key, _ in axes.grid:
        if path == key or path.startswith(key + ".") or key.startswith(path + "."):
            return f"grid key {key!r} value {point[key]!r}"
    for group in axes.zips:
        if any(path == k or path.startswith(k + ".") or k.startswith(path + ".") for k in group.keys):
            row = next(i for i, r in enumerate(group.rows) if all(point[k] == v for k, v in zip(group.keys, r)))
            return f"zip row {row} ({', '.join(group.keys)})"
    return "point " + ", ".join(f"{k}={v!r}" for k, v in point.items())


def expand_axes(base: Config, axes: Axes) -> tuple[Run, ...]:
    """The run of every point, in sweep order (repeated configs kept; build_plan drops them)."""
    cache: dict = {}
    runs = []
    for point in axes.points():
        try:
            cfg = point_config(base, point, cache)
        except ConfigError as exc:
            hint = ""
            if "needs a structured (channel) strategy" in str(exc):
                hint = ("; to mix channel and single-weight strategies, pair each strategy with its "
                        "target in a `zip:` axis (docs/sweeps.md)")
            raise SweepError(f"sweep {_culprit(axes, point, exc)}: {exc}{hint}") from None
        trained = cfg.dense.source == "train"
        runs.append(Run(cfg.run_id, cfg.dense_id if trained else None, cfg, point))
    return tuple(runs)


def _resolve_base(raw: Any, base_dir: Path, overrides: Iterable[str], plugins: tuple[str, ...]) -> Config:
    if raw is None:
        raw = {}
    if isinstance(raw, (str, os.PathLike)):
        path = Path(raw)
        if not path.is_absolute():
            path = base_dir / path
        if path.is_dir():
            raise SweepError(f"sweep 'base': config file {str(path)!r} is a directory, not a file")
        if not path.is_file():
            raise SweepError(f"sweep 'base': config file {str(path)!r} does not exist")
        return load_config(path, overrides, plugins=plugins)
    if isinstance(raw, Mapping):
        return config_from_dict(apply_overrides(raw, overrides), base_dir=base_dir, plugins=plugins)
    raise SweepError(f"sweep 'base' must be a config file path or a mapping, got {type(raw).__name__}")


def spec_from_dict(raw: Any, *, base_dir: str | os.PathLike = ".", source: str = "<inline>",
                   overrides: Iterable[str] = (), plugins: Iterable[str] = ()) -> SweepSpec:
    """Parse and expand a spec mapping; a relative `base` path or plugin file is taken from
    `base_dir`; `overrides` (`key=value`, as `--set`) apply to the base. Errors name the key."""
    if not isinstance(raw, Mapping):
        raise SweepError(f"sweep spec {source}: expected a mapping with keys {', '.join(SPEC_KEYS)}")
    for key in raw:
        if key not in SPEC_KEYS:
            raise SweepError(f"sweep spec {source}: unknown key {key!r}; valid keys: {', '.join(SPEC_KEYS)}")
    axes = parse_axes(raw.get("grid"), raw.get("zip"))
    name = raw.get("name")
    if name is not None and not isinstance(name, str):
        raise SweepError(f"sweep spec {source}: 'name' must be a string, got {name!r}")
    listed = raw.get("plugins") or []
    if isinstance(listed, str):
        listed = [listed]
    if not isinstance(listed, list):
        raise SweepError(f"sweep spec {source}: 'plugins' must be a list of modules or .py files")
    try:
        names = resolve_plugins([*resolve_plugins(plugins), *resolve_plugins(listed, base_dir)])
        load_plugins(names)
        base = _resolve_base(raw.get("base"), Path(base_dir), overrides, names)
    except ConfigError as exc:
        raise SweepError(f"sweep 'base' in {source}: {exc}") from None
    return SweepSpec(base, axes, expand_axes(base, axes), source, name)


def load_spec(path: str | os.PathLike, overrides: Iterable[str] = (),
              plugins: Iterable[str] = ()) -> SweepSpec:
    """Read a YAML sweep spec (safe_load); `overrides` (`key=value`) apply to its base config."""
    file = Path(path)
    raw = read_yaml(file, "sweep spec", SweepError)
    return spec_from_dict(raw or {}, base_dir=file.parent, source=repr(str(file)),
                          overrides=overrides, plugins=plugins)


def expand(spec: SweepSpec) -> list[Run]:
    """The runs of every point of a spec, in sweep order."""
    return list(spec.runs)
