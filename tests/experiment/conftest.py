"""Shared fixtures of the experiment tests: a tiny digits config and single-threaded torch."""

from __future__ import annotations

import pytest
import torch

TINY = {
    "data": {"name": "digits"},
    "model": {"name": "convnet_digits"},
    "dense": {"recipe": {"epochs": 3, "lr": 0.05, "batch_size": 64}},
    "pruning": {"strategy": "GlobalMagWeight", "compression": 4},
    "finetune": {"epochs": 2, "lr": 0.01, "batch_size": 64},
    "device": "cpu",
}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run faster on one thread, and a loaded machine makes two threads crawl."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny() -> dict:
    """A plain-data config of a run that takes well under a second on digits."""
    import copy

    return copy.deepcopy(TINY)
