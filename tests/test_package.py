"""The top-level package: subpackages and the short names load on first attribute access, torch only then."""

from __future__ import annotations

import subprocess
import sys

import pytest

import shrinkbench as sb


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_import_alone_loads_no_torch() -> None:
    assert _run("import shrinkbench, sys; assert 'torch' not in sys.modules; print('ok')") == "ok"


def test_results_and_report_attributes_load_no_torch() -> None:
    code = (
        "import shrinkbench as sb, sys\n"
        "print(sb.results.load.__name__, sb.report.write_report.__name__, sb.common.DB_NAME,\n"
        "      'torch' in sys.modules)\n"
    )
    assert _run(code) == "load write_report results.sqlite False"


def test_subpackages_load_on_attribute_access() -> None:
    from shrinkbench.metrics import count_macs
    from shrinkbench.models import create
    from shrinkbench.pruning import prune
    from shrinkbench.results import load

    assert sb.metrics.count_macs is count_macs
    assert sb.models.create is create
    assert sb.results.load is load
    assert sb.pruning.prune is prune
    for name in ("report", "data", "experiment", "sweep", "common", "errors", "registry"):
        module = getattr(sb, name)
        assert module.__name__ == f"shrinkbench.{name}"


def test_short_names_and_dir() -> None:
    from shrinkbench.models import create, list_models
    from shrinkbench.pruning import list_strategies, prune, register_strategy

    assert sb.prune is prune and sb.register_strategy is register_strategy
    assert sb.list_strategies is list_strategies
    assert sb.create_model is create and sb.list_models is list_models
    listed = dir(sb)
    for name in ("prune", "create_model", "metrics", "models", "results", "report", "sweep"):
        assert name in listed


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        sb.nothing_here  # noqa: B018
    assert not hasattr(sb, "cli_not_exposed")
