"""Fixtures of the report tests: a synthetic results store and survey tables in published form."""

from __future__ import annotations

from pathlib import Path

import pytest

from report_synthetic import build_store


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with 3 strategies x 4 compressions x 2 seeds of LeNet-300-100 and 2 failed runs."""
    return build_store(tmp_path_factory.mktemp("results") / "out", seeds=(0, 1), compressions=(1, 2, 4, 8))
