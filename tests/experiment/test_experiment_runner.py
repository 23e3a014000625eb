"""One run end to end on digits: what it records, determinism, caching, resume after kill -9."""

from __future__ import annotations

from shrinkbench.common import is_measured

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from shrinkbench.errors import RunError
from shrinkbench.experiment import config_from_dict, dense_id, ensure_dense, execute, run_id
from shrinkbench.experiment import dense as dense_module
from shrinkbench.experiment import loops, runner
from shrinkbench.results.files import dense_dir, run_dir
from shrinkbench.results.frame import METRIC_KEYS
from shrinkbench.results.store import Store
from shrinkbench.sweep import run_experiment

ROOT = Path(__file__).resolve().parents[2]


def numbers(metrics: dict) -> dict:
    """The metrics that must repeat exactly: all but timings and the environment."""
    return {k: v for k, v in metrics.items() if not is_measured(k)}


def state(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def test_a_run_records_everything(tmp_path, tiny):
    cfg = config_from_dict(tiny)
    rng_before = torch.get_rng_state()
    metrics = run_experiment(cfg, tmp_path, progress=False)
    assert torch.equal(torch.get_rng_state(), rng_before)  # global RNG left alone
    assert set(METRIC_KEYS) <= set(metrics) and metrics["env"]["torch"] == torch.__version__
    total = metrics["params_total"]
    assert total == 38282  # convnet_digits
    assert metrics["params_nonzero"] == math.floor(total / 4)
    assert metrics["compression_ratio"] == pytest.approx(4, abs=4 * 4 / total)
    assert metrics["macs_sparse"] < metrics["macs_dense"] and metrics["speedup"] > 1
    for stage in ("dense", "pre", "post"):
        for split in ("val", "test"):
            assert 0 <= metrics[f"{stage}_{split}_acc1"] <= metrics[f"{stage}_{split}_acc5"] <= 1
    assert metrics["dense_test_acc1"] > 0.8 and metrics["post_test_acc1"] > 0.8

    folder = run_dir(tmp_path, run_id(cfg), create=False)
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [
        "config.yaml", "epochs.csv", "layers.csv", "metrics.json", "model.pt"]
    assert json.loads((folder / "metrics.json").read_text()) == metrics
    epochs = (folder / "epochs.csv").read_text().splitlines()
    assert len(epochs) == 3 and epochs[0].startswith("epoch,lr,train_loss,train_acc1,time_s,val_acc1")
    weights = state(folder / "model.pt")
    nonzero = sum(int(t.count_nonzero()) for k, t in weights.items() if not k.endswith("_mask"))
    assert nonzero <= metrics["params_nonzero"]
    assert any(k.endswith("_mask") for k in weights)

    with Store(tmp_path) as store:
        row = store.get(run_id(cfg))
        assert row["status"] == "done" and row["kind"] == "prune" and row["metrics"] == metrics
        assert row["config"]["pruning"]["strategy"] == "global_magnitude"
        dense = store.get(dense_id(cfg))
        assert dense["status"] == "done" and dense["kind"] == "dense"
        assert dense["metrics"]["dense_test_acc1"] == metrics["dense_test_acc1"]
        assert [r["epoch"] for r in store.epochs(run_id(cfg), "finetune")] == [1, 2]
        assert [r["epoch"] for r in store.epochs(dense_id(cfg), "dense")] == [1, 2, 3]


def test_same_config_same_numbers_and_compression_one_is_the_control(tmp_path, tiny):
    cfg = config_from_dict(tiny)
    a = execute(cfg, tmp_path / "a")
    b = execute(cfg, tmp_path / "b")
    assert numbers(a) == numbers(b)
    wa = state(run_dir(tmp_path / "a", run_id(cfg)) / "model.pt")
    wb = state(run_dir(tmp_path / "b", run_id(cfg)) / "model.pt")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)

    tiny["pruning"]["compression"] = 1
    control = execute(config_from_dict(tiny), tmp_path / "a")
    assert control["params_nonzero"] == control["params_total"] and control["speedup"] == 1
    assert control["pre_test_acc1"] == control["dense_test_acc1"]
    rows = (run_dir(tmp_path / "a", run_id(config_from_dict(tiny))) / "epochs.csv").read_text()
    assert len(rows.splitlines()) == 1 + tiny["finetune"]["epochs"]  # same budget as pruned runs
    assert len(list((tmp_path / "a" / "dense").iterdir())) == 1  # one dense model for both


def test_finished_run_is_not_redone_unless_forced(tmp_path, tiny, monkeypatch):
    cfg = config_from_dict(tiny)
    first = run_experiment(cfg, tmp_path, progress=False)
    calls = []
    real = runner._run
    monkeypatch.setattr(runner, "_run", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert run_experiment(cfg, tmp_path, progress=False) == first and calls == []
    seen = []
    assert execute(cfg, tmp_path, on_epoch=lambda *e: seen.append(e[:2])) == first
    assert calls == [] and seen == [("finetune", 1), ("finetune", 2)]
    again = run_experiment(cfg, tmp_path, force=True, progress=False)
    assert calls == [1] and numbers(again) == numbers(first)


def test_a_failing_run_is_recorded_as_failed(tmp_path, tiny, monkeypatch):
    cfg = config_from_dict(tiny)

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(runner, "_prune", broken)
    with pytest.raises(RunError, match=f"^run {run_id(cfg)} failed: RuntimeError: boom"):
        run_experiment(cfg, tmp_path, progress=False)
    with Store(tmp_path) as store:
        row = store.get(run_id(cfg))
        assert row["status"] == "failed" and row["error"] == "RuntimeError: boom"
        assert "broken" in row["traceback"]
        assert store.status(dense_id(cfg)) == "done"


def test_dense_model_trained_once_under_concurrency(tmp_path, tiny, monkeypatch):
    cfg = config_from_dict(tiny)
    calls = []
    real = dense_module._train

    def counted(*args, **kwargs):
        calls.append(1)
        time.sleep(0.2)  # hold the lock long enough for the other thread to wait on it
        return real(*args, **kwargs)

    monkeypatch.setattr(dense_module, "_train", counted)
    paths = []
    threads = [threading.Thread(target=lambda: paths.append(ensure_dense(cfg, tmp_path))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [1] and len(set(paths)) == 1 and paths[0].is_file()
    assert paths[0] == dense_dir(tmp_path, dense_id(cfg)) / "model.pt"


def test_given_dense_checkpoint_is_used(tmp_path, tiny):
    trained = ensure_dense(config_from_dict(tiny), tmp_path / "a")
    tiny["dense"] = {"source": str(trained)}
    cfg = config_from_dict(tiny)
    metrics = run_experiment(cfg, tmp_path / "b", progress=False)
    assert not (tmp_path / "b" / "dense").exists()
    reference = json.loads((trained.parent / "metrics.json").read_text())
    assert metrics["dense_test_acc1"] == pytest.approx(reference["dense_test_acc1"])


def test_bf16_and_channels_last_run(tmp_path, tiny):
    tiny.update(precision="bf16", channels_last=True)
    metrics = execute(config_from_dict(tiny), tmp_path)
    assert metrics["params_nonzero"] == math.floor(metrics["params_total"] / 4)
    assert metrics["post_test_acc1"] > 0.5


KILLED_RUN = """
import json, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from shrinkbench.experiment import config_from_dict, ensure_dense, execute
cfg, out, marker, phase = config_from_dict(json.loads(sys.argv[1])), sys.argv[2], Path(sys.argv[3]), sys.argv[4]
def hook(phase, epoch, row):
    marker.write_text(str(epoch))
    time.sleep(0.5)
if phase == "dense":
    ensure_dense(cfg, out, on_epoch=hook)
else:
    execute(cfg, out, on_epoch=hook)
"""


def kill_at_epoch_2(tiny: dict, out: Path, marker: Path, phase: str) -> None:
    """Run in a subprocess and SIGKILL it while epoch 2 is being recorded (epoch 1 checkpointed)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, json.dumps(tiny), str(out), str(marker), phase],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while not (marker.is_file() and marker.read_text() >= "2"):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "training never reached epoch 2"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()


def test_resume_after_kill_9_equals_an_uninterrupted_run(tmp_path, tiny, monkeypatch):
    tiny["finetune"]["epochs"] = 4
    cfg = config_from_dict(tiny)
    out = tmp_path / "killed"
    ensure_dense(cfg, out)
    kill_at_epoch_2(tiny, out, tmp_path / "epoch", "finetune")
    folder = run_dir(out, run_id(cfg), create=False)
    assert (folder / "checkpoint.pt").is_file() and not (folder / "metrics.json").exists()
    assert state(folder / "checkpoint.pt")["epoch"] >= 1

    trained = []
    real = loops.train_epoch
    monkeypatch.setattr(loops, "train_epoch", lambda *a, **k: trained.append(1) or real(*a, **k))
    resumed = execute(cfg, out)
    assert 0 < len(trained) < 4  # picked up from the checkpoint, not from scratch
    assert not (folder / "checkpoint.pt").exists()
    reference = execute(cfg, tmp_path / "straight")
    assert numbers(resumed) == numbers(reference)
    ra = state(folder / "model.pt")
    rb = state(run_dir(tmp_path / "straight", run_id(cfg)) / "model.pt")
    assert all(torch.equal(ra[k], rb[k]) for k in rb)
    rows = (folder / "epochs.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3", "4"]


def test_dense_training_resumes_after_kill_9(tmp_path, tiny, monkeypatch):
    tiny["dense"]["recipe"]["epochs"] = 4
    cfg = config_from_dict(tiny)
    out = tmp_path / "killed"
    kill_at_epoch_2(tiny, out, tmp_path / "epoch", "dense")
    folder = dense_dir(out, dense_id(cfg), create=False)
    assert state(folder / "checkpoint.pt")["epoch"] >= 1 and not (folder / "metrics.json").exists()

    trained = []
    real = loops.train_epoch
    monkeypatch.setattr(loops, "train_epoch", lambda *a, **k: trained.append(1) or real(*a, **k))
    seen = []
    path = ensure_dense(cfg, out, on_epoch=lambda phase, epoch, row: seen.append(epoch))
    assert 0 < len(trained) < 4 and seen == [1, 2, 3, 4]
    reference = ensure_dense(cfg, tmp_path / "straight")
    assert numbers(dense_module.dense_metrics(cfg, out)) == numbers(dense_module.dense_metrics(cfg, tmp_path / "straight"))
    ra, rb = state(path), state(reference)
    assert ra.keys() == rb.keys() and all(torch.equal(ra[k], rb[k]) for k in rb)


def test_a_run_whose_masks_did_not_hold_fails_loudly(tmp_path, tiny, monkeypatch):
    from shrinkbench.errors import PruningError

    class NoHold:
        def remove(self) -> None:
            pass

    monkeypatch.setattr(loops, "hold", lambda optimizer, model: NoHold())  # masks not re-applied
    with pytest.raises(PruningError, match="pruned entries are not zero at the end of the run"):
        execute(config_from_dict(tiny), tmp_path)
    assert not (run_dir(tmp_path, run_id(config_from_dict(tiny)), create=False) / "metrics.json").exists()
