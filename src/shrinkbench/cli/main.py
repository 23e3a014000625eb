"""The `shrinkbench` command: subcommands, one-line user errors, exit codes."""

from __future__ import annotations

import argparse
import importlib
import os
import re
import signal
import sys
import threading
import warnings
from typing import Callable, Sequence

from ..errors import ShrinkBenchError

# Each module defines `register(subparsers)` adding its subcommands; a subcommand's parser sets
# `handler=<callable(args) -> int>` through set_defaults. Modules are imported lazily so that
# `shrinkbench --help` stays fast and a missing optional dependency only affects its own command.
COMMAND_MODULES = (
    "shrinkbench.cli.run_cmd",
    "shrinkbench.cli.sweep_cmd",
    "shrinkbench.cli.report_cmd",
    "shrinkbench.cli.export_cmd",
    "shrinkbench.cli.data_cmd",
)

EXIT_USER_ERROR = 2
MAX_ERROR_CHARS = 500  # an error line longer than this is cut (a value or a path can be huge)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def one_line(message: str, limit: int = MAX_ERROR_CHARS) -> str:
    """`message` as one readable line: whitespace runs and terminal escapes gone, cut to `limit`."""
    text = " ".join(_ANSI.sub("", message).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"shrinkbench: error: {one_line(message)}\n")
        raise SystemExit(EXIT_USER_ERROR)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand attached."""
    parser = _Parser(
        prog="shrinkbench",
        description="Standardized, reproducible evaluation of neural-network pruning.",
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"shrinkbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("shrinkbench.cli"):
                continue  # command module not present in this build
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, dispatch, turn ShrinkBenchError into one line on stderr and exit 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)  # `kill` stops as cleanly as Ctrl-C
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _warning_line
            code = handler(args)
    except ShrinkBenchError as exc:
        sys.stderr.write(f"shrinkbench: error: {one_line(str(exc))}\n")
        return getattr(exc, "exit_code", EXIT_USER_ERROR)
    except KeyboardInterrupt:
        sys.stderr.write("shrinkbench: interrupted; run the same command again to resume\n")
        return 130
    except BrokenPipeError:
        # The reader of our output went away (`shrinkbench status DIR | head`): stop quietly, and
        # point stdout at /dev/null so that flushing it at exit raises nothing more.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return int(code or 0)


def _warning_line(message: Warning | str, category: type, filename: str, lineno: int,
                  file: object = None, line: str | None = None) -> None:
    """A warning as one line on stderr, without the source location."""
    sys.stderr.write(f"shrinkbench: warning: {one_line(str(message))}\n")


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
