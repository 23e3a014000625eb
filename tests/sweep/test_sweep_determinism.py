"""Same run id, same numbers: real MNIST runs through `run`, the local and the process executor.

Budget (so that it fits CI): LeNet-300-100 and LeNet-5 on 8,000 training images (validation 5,000,
test 10,000), one dense epoch and one fine-tuning epoch each, batch 256, 8x global magnitude pruning,
one intra-op thread per run (the config's `threads`); every execution trains its own dense models.
"""

from __future__ import annotations

from shrinkbench.common import is_measured

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from shrinkbench.experiment import config_from_dict

MNIST = os.environ.get("SHRINKBENCH_TEST_MNIST")
ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not MNIST, reason="SHRINKBENCH_TEST_MNIST (folder holding mnist/*.gz) is not set"),
]

MODELS = ("lenet300", "lenet5")


def base() -> dict:
    recipe = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "epochs": 1, "batch_size": 256}
    return {
        "data": {"name": "mnist", "data_dir": MNIST, "val_size": 5000, "options": {"train_size": 8000}},
        "model": {"name": "lenet300"},
        "dense": {"recipe": recipe},
        "pruning": {"strategy": "GlobalMagWeight", "compression": 8},
        "finetune": {**recipe, "lr": 0.01},
        "device": "cpu",
        "threads": 1,
    }


def shrinkbench(args: list[str], threads: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    done = subprocess.run([sys.executable, "-m", "shrinkbench", *args], env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]


def numbers(folder: Path) -> dict:
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["env"]["torch_threads"] == 1  # pinned by the config, whatever the process had
    return {k: v for k, v in metrics.items() if not is_measured(k)}


def test_run_local_and_process_executors_give_identical_numbers(tmp_path):
    config = tmp_path / "mnist.yaml"
    config.write_text(yaml.safe_dump(base()))
    spec = tmp_path / "sweep.yaml"
    spec.write_text(yaml.safe_dump({"base": "mnist.yaml", "grid": {"model.name": list(MODELS)}}))
    outs = {name: tmp_path / name for name in ("run", "local", "process")}
    for model in MODELS:
        shrinkbench(["run", str(config), "--out", str(outs["run"]), "--set", f"model.name={model}",
                     "--no-progress"], threads="2")
    shrinkbench(["sweep", str(spec), "--out", str(outs["local"]), "--no-progress"], threads="3")
    shrinkbench(["sweep", str(spec), "--out", str(outs["process"]), "--executor", "process",
                 "--workers", "2", "--no-progress"], threads="1")

    for model in MODELS:
        cfg = config_from_dict({**base(), "model": {"name": model}})
        folders = {name: out / "runs" / cfg.run_id for name, out in outs.items()}
        reference = numbers(folders["run"])
        assert reference["params_nonzero"] == reference["params_total"] // 8
        assert reference["post_test_acc1"] > 0.85
        for name in ("local", "process"):
            assert numbers(folders[name]) == reference, (model, name)
        weights = {name: torch.load(f / "model.pt", weights_only=True) for name, f in folders.items()}
        for name in ("local", "process"):
            assert all(torch.equal(weights[name][k], weights["run"][k]) for k in weights["run"]), (model, name)
        dense = {name: json.loads((out / "dense" / cfg.dense_id / "metrics.json").read_text())
                 for name, out in outs.items()}
        assert dense["local"]["dense_test_loss"] == dense["process"]["dense_test_loss"] == dense["run"]["dense_test_loss"]
