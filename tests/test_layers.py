"""The import-linter contracts of pyproject.toml (the layering table of docs/internals.md) hold."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter")

if sys.version_info >= (3, 11):
    import tomllib
else:
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "pyproject.toml"
CONTRACTS = [c["id"] for c in tomllib.loads(CONFIG.read_text())["tool"]["importlinter"]["contracts"]]

LINT = (
    "import sys\n"
    "from importlinter.cli import lint_imports\n"
    "sys.exit(lint_imports(config_filename=sys.argv[1], limit_to_contracts=(sys.argv[2],), no_cache=True))\n"
)


def test_contracts_cover_the_table() -> None:
    assert {"layers", "leaves", "no-torch-analysis"} <= set(CONTRACTS)


@pytest.mark.parametrize("contract", CONTRACTS)
def test_contract_is_kept(contract: str) -> None:
    path = [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path), "COLUMNS": "160", "NO_COLOR": "1"}
    done = subprocess.run([sys.executable, "-c", LINT, str(CONFIG), contract], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    report = done.stdout[done.stdout.find("Contracts"):] or done.stdout
    assert done.returncode == 0, report + done.stderr
    assert " KEPT" in done.stdout and " BROKEN" not in done.stdout
