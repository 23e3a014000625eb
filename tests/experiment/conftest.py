"""Shared fixtures of the experiment tests: a tiny digits config and single-threaded torch."""

from __future__ import annotations

import pytest
import tiny_config


@pytest.fixture(autouse=True)
def _one_thread(single_thread):
    """Every experiment test on one thread (see tests/conftest.py)."""


@pytest.fixture
def tiny() -> dict:
    """A plain-data config of a run that takes well under a second on digits."""
    return tiny_config.tiny()
