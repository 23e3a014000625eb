"""Every test runs in a fresh, empty current folder, so that nothing a user did in the clone (such
as `shrinkbench quickstart`, which writes ./shrinkbench-out) changes a result, and nothing a test
writes by default lands in the clone."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _fresh_cwd(tmp_path_factory, monkeypatch):
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture
def single_thread():
    """Torch on one intra-op thread inside the test: tiny models run faster so, and a loaded
    machine makes two threads crawl."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
