"""Helpers of the CLI tests: call the command in-process, write a config file."""

from __future__ import annotations

from pathlib import Path

import yaml

from shrinkbench.cli.main import main


def call(argv, capsys) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of `shrinkbench argv`."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse usage errors and --help
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def write_config(folder: Path, tree: dict, name: str = "cfg.yaml") -> Path:
    """`tree` as a YAML config file in `folder`."""
    path = folder / name
    path.write_text(yaml.safe_dump(tree))
    return path
