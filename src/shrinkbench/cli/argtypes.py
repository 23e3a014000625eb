"""argparse value types shared by the subcommands: a bad value is one line naming what was expected."""

from __future__ import annotations

import argparse
from typing import Callable


def positive_int(text: str) -> int:
    """A whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def amount(minimum: float, strict: bool) -> Callable[[str], float]:
    """A number above `minimum` (strictly, or at least it)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not (value > minimum if strict else value >= minimum):
            bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
            raise argparse.ArgumentTypeError(f"expected a number {bound}, got {text!r}")
        return value

    return parse


THREADS_HELP = ("intra-op CPU threads of each run (default: the config's `threads`, 1). Part of the "
                "run id, since CPU results depend on it in the last bits: the same value gives the "
                "same numbers on any executor; same as --set threads=N")


def add_threads(parser: argparse.ArgumentParser, extra: str = "") -> None:
    """Add `--threads N` (a shorthand for `--set threads=N`) to a command."""
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N",
                        help=THREADS_HELP + extra)


def with_threads(overrides: list[str], threads: int | None) -> list[str]:
    """The overrides with `threads=N` last, when --threads was given (and not also as --set)."""
    if threads is None:
        return list(overrides)
    if any(o.split("=", 1)[0].strip() == "threads" for o in overrides):
        from ..errors import ConfigError

        raise ConfigError("threads: given both as --threads and as --set threads=...; give it once")
    return [*overrides, f"threads={threads}"]
