"""Sweep axes: a grid of dotted config keys crossed with optional zip groups, and their points."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

from ..errors import SweepError


# Keys that are the same for a whole sweep, and why.
FIXED_KEYS = {
    "plugins": "plugins are imported once for the whole sweep, in the driver and every worker; list "
               "them in the spec's or the base config's `plugins:`, or pass --plugin",
}


@dataclass(frozen=True)
class ZipGroup:
    """Keys varied together: row i sets every key to its i-th value."""

    keys: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]


@dataclass(frozen=True)
class Axes:
    """Zip groups (outermost, in order) crossed with grid keys (the last key varies fastest)."""

    grid: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    zips: tuple[ZipGroup, ...] = ()

    def keys(self) -> list[str]:
        """Every varied key: zip keys first, then grid keys."""
        return [k for group in self.zips for k in group.keys] + [k for k, _ in self.grid]

    def __len__(self) -> int:
        n = 1
        for group in self.zips:
            n *= len(group.rows)
        for _, values in self.grid:
            n *= len(values)
        return n

    def points(self) -> Iterator[dict[str, Any]]:
        """Each point of the sweep as {dotted key: value}, in a fixed order."""
        factors: list[list[tuple[tuple[str, Any], ...]]] = []
        for group in self.zips:
            factors.append([tuple(zip(group.keys, row)) for row in group.rows])
        for key, values in self.grid:
            factors.append([((key, value),) for value in values])
        for combo in itertools.product(*factors):
            yield {key: value for part in combo for key, value in part}


def _values(where: str, key: Any, values: Any) -> tuple[Any, ...]:
    if not isinstance(key, str) or not key or any(not part for part in key.split(".")):
        raise SweepError(f"{where} key {key!r} is not a dotted config key such as 'pruning.compression'")
    if not isinstance(values, Sequence) or isinstance(values, (str, bytes)):
        raise SweepError(f"{where} key {key!r} must map to a list of values, got {values!r}")
    if len(values) == 0:
        raise SweepError(f"{where} key {key!r} has an empty list of values")
    return tuple(values)


def parse_axes(grid: Any = None, zips: Any = None) -> Axes:
    """Axes from the spec's `grid` mapping and `zip` mapping (or list of mappings)."""
    grid = {} if grid is None else grid
    if not isinstance(grid, Mapping):
        raise SweepError(f"sweep 'grid' must be a mapping of config keys to lists, got {type(grid).__name__}")
    grid_axes = tuple((key, _values("grid", key, values)) for key, values in grid.items())

    if zips is None:
        groups_raw: list[Any] = []
    elif isinstance(zips, Mapping):
        groups_raw = [zips]
    elif isinstance(zips, list):
        groups_raw = zips
    else:
        raise SweepError(f"sweep 'zip' must be a mapping of config keys to equal-length lists, got {zips!r}")
    groups = []
    for i, raw in enumerate(groups_raw):
        where = "zip" if len(groups_raw) == 1 else f"zip[{i}]"
        if not isinstance(raw, Mapping) or not raw:
            raise SweepError(f"sweep '{where}' must be a non-empty mapping of config keys to lists")
        columns = {key: _values(where, key, values) for key, values in raw.items()}
        lengths = {key: len(values) for key, values in columns.items()}
        if len(set(lengths.values())) > 1:
            detail = ", ".join(f"{key} has {n}" for key, n in lengths.items())
            raise SweepError(f"sweep '{where}' lists must have equal lengths: {detail}")
        keys = tuple(columns)
        groups.append(ZipGroup(keys, tuple(zip(*(columns[k] for k in keys)))))

    axes = Axes(grid_axes, tuple(groups))
    seen: set[str] = set()
    for key in axes.keys():
        if key in seen:
            raise SweepError(f"sweep key {key!r} is varied twice (in grid and zip, or in two zip groups)")
        seen.add(key)
    for key in seen:
        if key in FIXED_KEYS or key.split(".")[0] in FIXED_KEYS:
            raise SweepError(f"sweep key {key!r} cannot be varied: {FIXED_KEYS[key.split('.')[0]]}")
        for other in seen:
            if other.startswith(key + "."):
                raise SweepError(f"sweep keys {key!r} and {other!r} overlap; vary one or the other")
    return axes
