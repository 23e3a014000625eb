"""Helpers of the sweep tests: picklable toy tasks standing in for experiments, a tiny real spec."""

from __future__ import annotations

from shrinkbench.common import is_measured

import os
import time
from pathlib import Path

import yaml

from shrinkbench.results.store import Store
from shrinkbench.sweep import Job


def toy_task(job: Job, out_dir: str, on_epoch) -> dict:
    """Dense jobs write a model file; pruned runs need it, write a result and report two epochs.

    Config fields: x (the value), fail (raise), sleep (seconds), spin (CPU-bound iterations).
    """
    folder = Path(out_dir) / job.folder
    folder.mkdir(parents=True, exist_ok=True)
    cfg = job.config
    time.sleep(cfg.get("sleep", 0.0))
    if job.kind == "dense":
        if cfg.get("fail_dense"):
            raise ValueError(f"dense {cfg['x']} broke")
        marker = folder / "trained_by"
        with open(marker, "a") as handle:  # appended: a dense model trained twice shows two lines
            handle.write(f"{os.getpid()}\n")
        (folder / "model.pt").write_text(str(cfg["base"]))
        return {"dense_value": cfg["base"]}
    if job.needs is not None:
        model = Path(out_dir) / "dense" / job.needs / "model.pt"
        if not model.is_file():
            raise RuntimeError(f"dense model {job.needs} missing when run {job.id} started")
        base = int(model.read_text())
    else:
        base = 0
    if cfg.get("fail"):
        raise ValueError(f"run x={cfg['x']} is broken\nsecond line")
    total = 0
    for i in range(int(cfg.get("spin", 0))):
        total += i * i % 7
    for epoch in range(2):
        on_epoch("finetune", epoch, {"loss": 1.0 / (epoch + 1) + cfg["x"]})
    value = base + cfg["x"] ** 2
    (folder / "result.txt").write_text(str(value))
    return {"value": value, "spin": total}


BASE = {
    "data": {"name": "digits"},
    "model": {"name": "mlp_digits"},
    "dense": {"recipe": {"epochs": 1}},
    "finetune": {"epochs": 1},
    "device": "cpu",
}
GRID = {"pruning.strategy": ["RandomPruning", "GlobalMagWeight"], "pruning.compression": [1, 4], "seed": [0]}


def write_spec(folder: Path, grid: dict = GRID, base: dict = BASE, name: str = "spec.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump({"base": base, "grid": grid}))
    return path


def metrics_by_id(out: Path) -> dict[str, dict]:
    with Store(out) as store:
        return {row["id"]: row["metrics"] for row in store.runs()}


def assert_same_metrics(a: dict[str, dict], b: dict[str, dict]) -> None:
    """Equal metrics, bit for bit (timings and environment aside): every run is pinned to its
    config's thread count, whatever the executor."""
    assert a.keys() == b.keys()
    for run_id in a:
        ma, mb = a[run_id], b[run_id]
        keys = {k for k in ma if not is_measured(k)}
        assert keys == {k for k in mb if not is_measured(k)}
        for key in keys:
            assert ma[key] == mb[key], (run_id, key, ma[key], mb[key])


def dying_task(job: Job, out_dir: str, on_epoch) -> dict:
    """Like toy_task, but the worker process running run x=1 dies (as if killed or out of memory)."""
    if job.kind == "prune" and job.config.get("x") == 1:
        os._exit(9)
    return toy_task(job, out_dir, on_epoch)
