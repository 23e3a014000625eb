"""End to end on real MNIST: LeNet-300-100 trained dense, pruned 12x and fine-tuned (slow)."""

from __future__ import annotations

import os

import pytest

from shrinkbench.experiment import config_from_dict, dense_id
from shrinkbench.sweep import run_experiment
from shrinkbench.results import load

MNIST = os.environ.get("SHRINKBENCH_TEST_MNIST")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not MNIST, reason="SHRINKBENCH_TEST_MNIST (folder holding mnist/*.gz) is not set"),
]


def lenet(strategy: str, compression: float, finetune_epochs: int) -> dict:
    return {
        "data": {"name": "mnist", "data_dir": MNIST, "val_size": 5000},
        "model": {"name": "lenet300"},
        "dense": {"recipe": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "schedule": "cosine",
                             "epochs": 3, "batch_size": 64}},
        "pruning": {"strategy": strategy, "compression": compression},
        "finetune": {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "schedule": "cosine",
                     "epochs": finetune_epochs, "batch_size": 64},
        "device": "cpu",
        "seed": 0,
    }


def test_lenet300_on_mnist(tmp_path):
    tuned = run_experiment(config_from_dict(lenet("GlobalMagWeight", 12, 2)), tmp_path, progress=False)
    assert tuned["dense_test_acc1"] >= 0.975
    assert tuned["compression_ratio"] == pytest.approx(12, rel=1e-4)
    assert tuned["post_test_acc1"] >= 0.975

    magnitude = run_experiment(config_from_dict(lenet("GlobalMagWeight", 32, 0)), tmp_path, progress=False)
    random = run_experiment(config_from_dict(lenet("RandomPruning", 32, 0)), tmp_path, progress=False)
    assert magnitude["pre_test_acc1"] > 0.5 and random["pre_test_acc1"] < magnitude["pre_test_acc1"] - 0.2
    assert magnitude["post_test_acc1"] == magnitude["pre_test_acc1"]  # no fine-tuning epochs

    frame = load(tmp_path)
    assert len(frame) == 3 and set(frame["strategy"]) == {"GlobalMagWeight", "RandomPruning"}
    dense = load(tmp_path, kind="dense")
    assert list(dense["run_id"]) == [dense_id(config_from_dict(lenet("RandomPruning", 32, 0)))]


def test_lenet5_channel_pruning_on_mnist(tmp_path):
    """LeNet-5 pruned to half its MACs by channel L1 norm, its channels removed, the slim model
    fine-tuned (a reduced budget: 1 dense epoch, 1 fine-tuning epoch)."""
    cfg = {
        "data": {"name": "mnist", "data_dir": MNIST, "val_size": 5000},
        "model": {"name": "lenet5"},
        "dense": {"recipe": {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "epochs": 1, "batch_size": 64}},
        "pruning": {"strategy": "LayerChannelL1", "compression": 2, "target": "speedup"},
        "finetune": {"optimizer": "sgd", "lr": 0.001, "momentum": 0.9, "epochs": 1, "batch_size": 64},
        "device": "cpu",
    }
    m = run_experiment(config_from_dict(cfg), tmp_path, progress=False)
    assert m["dense_test_acc1"] >= 0.97
    assert 2.0 <= m["speedup"] < 2.2 and m["structured"] == 1.0
    assert m["params_nonzero"] < m["params_total"] / 2
    assert m["post_test_acc1"] >= 0.97
    assert m["latency_ms"] > 0 and m["latency_dense_ms"] > 0
