"""Schedules on real MNIST with LeNet-300-100, at reduced budgets that fit CI (slow, about a minute).

- Lottery tickets (Frankle & Carbin 2019): iterative magnitude pruning, survivors rewound to their
  initialization; here 50% of each hidden layer per round and 25% of the output layer (so that 4
  rounds reach 7% of the weights), one epoch per round. Over 3 seeds the ticket's mean test
  accuracy is at least its re-initialized control's, the direction the paper reports.
- SNIP at 98% sparsity at initialization beats random pruning at initialization at the same
  sparsity (two epochs of sparse training).
- Gradual pruning from scratch and one-shot pruning reach the same compression in the same epochs.
docs/schedules.md records the figures at larger budgets.
"""

from __future__ import annotations

import os
import statistics

import pytest

from shrinkbench.experiment import config_from_dict
from shrinkbench.experiment.runner import execute

MNIST = os.environ.get("SHRINKBENCH_TEST_MNIST")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not MNIST, reason="SHRINKBENCH_TEST_MNIST (folder holding mnist/*.gz) is not set"),
]

WEIGHTS, BIASES = 266_200, 410  # LeNet-300-100


def compression_for(weights_left: float) -> float:
    """The compression (all parameters / nonzero) with this fraction of the weights left."""
    return (WEIGHTS + BIASES) / (round(weights_left * WEIGHTS) + BIASES)


def lenet(**sections) -> dict:
    tree = {
        "data": {"name": "mnist", "data_dir": MNIST, "val_size": 5000},
        "model": {"name": "lenet300"},
        "dense": {"recipe": {"optimizer": "sgd", "lr": 0.1, "momentum": 0.0, "epochs": 1,
                             "batch_size": 128}},
        "finetune": {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "epochs": 1, "batch_size": 128},
        "latency": {"enabled": False},
        "device": "cpu",
    }
    for name, value in sections.items():
        tree[name] = {**tree.get(name, {}), **value} if isinstance(value, dict) else value
    return tree


def test_lottery_ticket_beats_its_reinitialized_control(tmp_path):
    tickets, controls = [], []
    for seed in range(3):
        for control, into in (("none", tickets), ("reinit", controls)):
            cfg = config_from_dict(lenet(
                seed=seed,
                pruning={"strategy": "LayerMagWeight", "include_classifier": True,
                         "classifier_rate": 0.5, "compression": compression_for(0.07)},
                schedule={"kind": "lottery", "rate": 0.5, "control": control}))
            into.append(execute(cfg, tmp_path))
    for ticket in tickets:
        assert len(ticket["round_compression"]) == 4  # 50%, 25%, 12.5%, then 7%
        assert ticket["compression_ratio"] == pytest.approx(compression_for(0.07), rel=1e-4)
    ticket_acc = statistics.mean(t["post_test_acc1"] for t in tickets)
    control_acc = statistics.mean(c["post_test_acc1"] for c in controls)
    assert ticket_acc >= control_acc, (ticket_acc, control_acc)
    assert ticket_acc > 0.9


def test_snip_beats_random_at_initialization(tmp_path):
    results = {}
    for strategy in ("SNIP", "RandomPruning"):
        cfg = config_from_dict(lenet(
            pruning={"strategy": strategy, "include_classifier": True,
                     "compression": compression_for(0.02)},
            schedule={"kind": "oneshot", "at_init": True}, dense={"recipe": {"epochs": 2}}))
        results[strategy] = execute(cfg, tmp_path)
    assert results["SNIP"]["path_step"] == [0] and results["SNIP"]["train_epochs"] == 3.0
    assert results["SNIP"]["post_test_acc1"] > results["RandomPruning"]["post_test_acc1"]


def test_gradual_from_scratch_and_oneshot_at_equal_epochs(tmp_path):
    target = compression_for(0.10)
    oneshot = execute(config_from_dict(lenet(pruning={"compression": target})), tmp_path)
    gradual = execute(config_from_dict(lenet(
        pruning={"compression": target}, schedule={"kind": "gradual", "at_init": True, "frequency": 50})),
        tmp_path)
    assert oneshot["train_epochs"] == gradual["train_epochs"] == 2.0
    assert oneshot["compression_ratio"] == pytest.approx(gradual["compression_ratio"], rel=1e-12)
    assert gradual["train_macs"] < oneshot["train_macs"]  # it trained sparser for most steps
    assert len(gradual["path_step"]) > 5 and gradual["post_test_acc1"] > 0.9
