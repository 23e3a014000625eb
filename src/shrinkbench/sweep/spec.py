"""Sweep specs: a base config plus axes (a grid crossed with zip groups), expanded to validated runs."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..errors import ConfigError, SweepError
from .axes import Axes, ZipGroup, parse_axes
from .ids import verify_ids
from .plan import Run

SPEC_KEYS = ("base", "grid", "zip", "name")


@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep: the base config as plain data (defaults filled in) and the axes varied over it."""

    base: dict
    axes: Axes
    canonical: Axes  # the axes with each value as the validated config holds it
    source: str = "<inline>"
    name: str | None = None

    def __len__(self) -> int:
        return len(self.axes)


def _set(tree: dict, dotted: str, value: Any) -> None:
    """Set `a.b.c` in nested dicts, creating missing sections."""
    *parents, leaf = dotted.split(".")
    for key in parents:
        child = tree.get(key)
        if not isinstance(child, dict):
            child = tree[key] = {}
        tree = child
    tree[leaf] = value


def _get(tree: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        tree = tree[key]
    return tree


def _copy_sections(tree: dict, keys: list[str]) -> dict:
    """A copy of `tree` deep enough that setting `keys` leaves `tree` untouched (shares the rest)."""
    out = dict(tree)
    for key in keys:
        node, src = out, tree
        for part in key.split(".")[:-1]:
            sub = src.get(part) if isinstance(src, dict) else None
            if not isinstance(sub, dict):
                break
            if node.get(part) is sub:
                node[part] = dict(sub)
            node, src = node[part], sub
    return out


def _resolve_base(raw: Any, base_dir: Path, overrides: Iterable[str] = ()) -> dict:
    from ..experiment.config import apply_overrides, config_from_dict, config_to_dict, load_config

    if raw is None:
        raw = {}
    if isinstance(raw, (str, os.PathLike)):
        path = Path(raw)
        if not path.is_absolute():
            path = base_dir / path
        if not path.is_file():
            raise SweepError(f"sweep 'base': config file {str(path)!r} does not exist")
        return config_to_dict(load_config(path, overrides))
    if isinstance(raw, Mapping):
        return config_to_dict(config_from_dict(apply_overrides(raw, overrides)))
    raise SweepError(f"sweep 'base' must be a config file path or a mapping, got {type(raw).__name__}")


def spec_from_dict(raw: Any, *, base_dir: str | os.PathLike = ".", source: str = "<inline>",
                   overrides: Iterable[str] = ()) -> SweepSpec:
    """Parse a spec mapping; a relative `base` path is taken from `base_dir`; `overrides`
    (`key=value`, as `--set`) apply to the base. Errors name the key."""
    if not isinstance(raw, Mapping):
        raise SweepError(f"sweep spec {source}: expected a mapping with keys {', '.join(SPEC_KEYS)}")
    for key in raw:
        if key not in SPEC_KEYS:
            raise SweepError(f"sweep spec {source}: unknown key {key!r}; valid keys: {', '.join(SPEC_KEYS)}")
    axes = parse_axes(raw.get("grid"), raw.get("zip"))
    name = raw.get("name")
    if name is not None and not isinstance(name, str):
        raise SweepError(f"sweep spec {source}: 'name' must be a string, got {name!r}")
    try:
        base = _resolve_base(raw.get("base"), Path(base_dir), overrides)
    except ConfigError as exc:
        raise SweepError(f"sweep 'base' in {source}: {exc}") from None
    return SweepSpec(base, axes, _canonical_axes(base, axes), source, name)


def load_spec(path: str | os.PathLike, overrides: Iterable[str] = ()) -> SweepSpec:
    """Read a YAML sweep spec (safe_load); `overrides` (`key=value`) apply to its base config."""
    from ..results.files import read_yaml

    file = Path(path)
    raw = read_yaml(file, "sweep spec", SweepError)
    return spec_from_dict(raw or {}, base_dir=file.parent, source=repr(str(file)), overrides=overrides)


def _canonical_axes(base: dict, axes: Axes) -> Axes:
    """Validate every axis value (and zip row) once against the base; the same axes with each value
    as the validated config holds it (names canonical, numbers coerced). Errors name key and value."""
    from ..experiment.config import config_from_dict, config_to_dict

    def canonical(assignment: dict[str, Any], where: str) -> tuple[Any, ...]:
        tree = _copy_sections(base, list(assignment))
        for key, value in assignment.items():
            _set(tree, key, value)
        try:
            plain = config_to_dict(config_from_dict(tree))
        except ConfigError as exc:
            raise SweepError(f"sweep {where}: {exc}") from None
        return tuple(_get(plain, key) for key in assignment)

    grid = tuple(
        (key, tuple(canonical({key: v}, f"grid key {key!r} value {v!r}")[0] for v in values))
        for key, values in axes.grid
    )
    zips = tuple(
        ZipGroup(group.keys, tuple(
            canonical(dict(zip(group.keys, row)), f"zip row {i} ({', '.join(group.keys)})")
            for i, row in enumerate(group.rows)
        ))
        for group in axes.zips
    )
    return Axes(grid, zips)


def expand(spec: SweepSpec) -> list[Run]:
    """The runs of every point, in sweep order (repeated configs are kept; build_plan drops them).

    Each axis value was validated once against the base (when the spec was parsed); a point's
    config is the base with the canonical values set, and its ids are hashed from that plain data
    (see ids.py), which is what makes 10,000 runs expand in well under a second.
    """
    from ..experiment.dense import DENSE_SECTIONS
    from ..experiment.ids import ids_from_plain

    keys = spec.canonical.keys()
    dense_keys = [key for key in keys if key.split(".")[0] in DENSE_SECTIONS]
    dense_cache: dict[tuple, tuple[str | None, dict]] = {}
    runs = []
    for shown, point in zip(spec.axes.points(), spec.canonical.points()):
        tree = _copy_sections(spec.base, keys)
        for key, value in point.items():
            _set(tree, key, copy.deepcopy(value) if isinstance(value, (dict, list)) else value)
        rid, did = ids_from_plain(tree)
        dense_key = tuple(repr(point[key]) for key in dense_keys)
        if dense_key not in dense_cache:
            trained = tree["dense"]["source"] == "train"
            dense_cache[dense_key] = (did if trained else None, {k: tree[k] for k in DENSE_SECTIONS})
        did, dense_cfg = dense_cache[dense_key]
        runs.append(Run(rid, did, tree, shown, dense_cfg))
    verify_ids(runs)
    return runs
