"""A small name -> object registry with aliases, used for strategies, models, data sets and executors."""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterable, TypeVar

from .errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps canonical names (and aliases) to registered objects."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, *, aliases: Iterable[str] = ()) -> Callable[[T], T]:
        """Decorator registering an object under `name` and its `aliases`."""

        def decorator(obj: T) -> T:
            self.add(name, obj, aliases=aliases)
            return obj

        return decorator

    def add(self, name: str, obj: T, *, aliases: Iterable[str] = ()) -> None:
        """Register `obj` under `name` and `aliases`; a taken name is an error."""
        for key in (name, *aliases):
            if key in self._items or key in self._aliases:
                raise ValueError(f"{self.kind} name {key!r} is already registered")
        self._items[name] = obj
        for alias in aliases:
            self._aliases[alias] = name

    def canonical(self, name: str) -> str:
        """The canonical name for `name` or one of its aliases."""
        if name in self._items:
            return name
        if name in self._aliases:
            return self._aliases[name]
        lowered = {k.lower(): k for k in (*self._items, *self._aliases)}
        if isinstance(name, str) and name.lower() in lowered:
            return self.canonical(lowered[name.lower()])
        choices = ", ".join(sorted(self.shown(n) for n in self.names()))
        close = difflib.get_close_matches(str(name), [*self._items, *self._aliases], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UnknownNameError(f"unknown {self.kind} {name!r}{hint}; choose from: {choices}")

    def get(self, name: str) -> T:
        """The object registered under `name` (or an alias); unknown names list the valid ones."""
        return self._items[self.canonical(name)]

    def names(self) -> list[str]:
        """Canonical names, sorted."""
        return sorted(self._items)

    def aliases(self) -> dict[str, str]:
        """Alias -> canonical name."""
        return dict(self._aliases)

    def shown(self, name: str) -> str:
        """The name to show a user: a CamelCase alias when there is one (the ShrinkBench names of
        strategies, e.g. GlobalMagWeight), else the canonical name."""
        for alias in self.aliases_of(name):
            if alias[:1].isupper() and "_" not in alias and "-" not in alias:
                return alias
        return name

    def aliases_of(self, name: str) -> list[str]:
        """The aliases of a canonical name."""
        return sorted(a for a, c in self._aliases.items() if c == name)

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._aliases

    def __len__(self) -> int:
        return len(self._items)
