"""Every test runs in a fresh, empty current folder, so that nothing a user did in the clone (such
as `shrinkbench quickstart`, which writes ./shrinkbench-out) changes a result, and nothing a test
writes by default lands in the clone."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _fresh_cwd(tmp_path_factory, monkeypatch):
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
