"""Sweeps of real experiments (digits, a tiny MLP, one epoch): executors, dedupe, CLI, kill -9 and rerun."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from sweep_toy import BASE, GRID, assert_same_metrics, metrics_by_id, write_spec

from shrinkbench.cli.main import main
from shrinkbench.results.store import Store
from shrinkbench.sweep import build_plan, expand, load_spec, run_sweep


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """In-process runs on one thread: on a busy 2-core machine two spinning threads are many times
    slower for these tiny models (the process workers get one thread each anyway)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    """The small spec run once with the local executor: (spec path, output folder, metrics by id)."""
    root = tmp_path_factory.mktemp("local")
    spec = write_spec(root)
    result = run_sweep(load_spec(spec), root / "out", progress=False, lines=False)
    assert result.exit_code == 0 and (result.ran, result.trained) == (3, 1)
    return spec, root / "out", metrics_by_id(root / "out")


def test_local_sweep_runs_dense_once_then_the_pruned_runs(local_sweep):
    spec, out, metrics = local_sweep
    runs = expand(load_spec(spec))
    with Store(out) as store:
        assert store.counts("prune") == {"pending": 0, "running": 0, "done": 3, "failed": 0}
        dense = store.runs(kind="dense")
        assert [row["id"] for row in dense] == [runs[0].dense_id]
        assert all(r.dense_id == runs[0].dense_id for r in runs)
        for run in runs:
            row = store.get(run.run_id)
            assert row["started"] >= dense[0]["finished"]  # dense model ready before the run began
            assert [e["epoch"] for e in store.epochs(run.run_id, "finetune")] == [1]
            m = row["metrics"]
            target = run.config.pruning.compression
            assert m["compression_ratio"] == pytest.approx(target, rel=0.01)
            assert (out / "runs" / run.run_id / "model.pt").is_file()
        assert [e["epoch"] for e in store.epochs(runs[0].dense_id, "dense")] == [1]
    # compression 1 prunes nothing: both strategies' points are one control run
    unpruned = {r.run_id for r in runs if r.config.pruning.compression == 1}
    assert len(unpruned) == 1 and len(runs) == 4
    control = metrics[unpruned.pop()]
    assert control["pre_test_acc1"] == control["dense_test_acc1"] and control["speedup"] == 1


def test_rerun_and_a_wider_grid_only_run_what_is_new(local_sweep, tmp_path):
    spec, out, _ = local_sweep
    again = run_sweep(load_spec(spec), out, progress=False, lines=False)
    assert (again.ran, again.trained, again.exit_code) == (0, 0, 0)
    wider = write_spec(tmp_path, {**GRID, "pruning.compression": [1, 4, 8]})
    result = run_sweep(load_spec(wider), out, progress=False, lines=False)
    assert (result.ran, result.trained, result.total) == (2, 0, 5)
    with Store(out) as store:
        assert store.counts("prune")["done"] == 5 and len(store.runs(kind="dense")) == 1


def test_process_executor_gives_the_same_metrics(local_sweep, tmp_path):
    spec, _, metrics = local_sweep
    result = run_sweep(load_spec(spec), tmp_path, executor="process", workers=2, progress=False, lines=False)
    assert result.exit_code == 0
    assert_same_metrics(metrics, metrics_by_id(tmp_path))


def test_cli_dry_run_status_and_a_failing_run(local_sweep, tmp_path, capsys):
    spec, out, _ = local_sweep
    assert main(["sweep", str(spec), "--out", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].startswith("3 runs (1 repeated points dropped), 1 dense models: 3 done")
    assert sum(" done " in line for line in text.splitlines()[1:]) == 3
    fresh = tmp_path / "fresh"
    assert main(["sweep", str(spec), "--out", str(fresh), "--dry-run"]) == 0
    assert sum(" new " in line for line in capsys.readouterr().out.splitlines()) == 3
    assert not fresh.exists()  # a dry run writes nothing

    # compression 1e9 cannot be reached: that run fails, the others finish, exit status 1
    bad = write_spec(tmp_path, {**GRID, "pruning.compression": [4, 1.0e9]}, name="bad.yaml")
    assert main(["sweep", str(bad), "--out", str(tmp_path / "o"), "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "2 done, 0 running, 2 failed, 0 pending" in captured.out
    assert captured.out.count("failed: ") == 2 and "CompressionError" in captured.out
    assert captured.err.count("FAILED ") == 2 and captured.err.count("done ") == 3  # 2 runs + dense
    assert main(["status", str(tmp_path / "o")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "runs: 4: 2 done, 0 running, 2 failed, 0 pending"
    assert lines[1] == "dense models: 1: 1 done, 0 running, 0 failed, 0 pending"
    assert len(lines) == 4 and all("CompressionError" in line for line in lines[2:])


def test_cli_reports_spec_errors_in_one_line(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({"base": BASE, "grid": {"pruning.strategyy": ["random"]}}))
    assert main(["sweep", str(spec), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pruning.strategyy" in err


@pytest.mark.slow
def test_kill_9_then_rerun_completes_every_run_exactly_once(tmp_path):
    grid = {"pruning.strategy": ["RandomPruning", "GlobalMagWeight"], "pruning.compression": [2, 4, 8, 16], "seed": [0]}
    spec = write_spec(tmp_path, grid, {**BASE, "finetune": {"epochs": 2}})
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "shrinkbench", "sweep", str(spec), "--out", str(out),
           "--executor", "process", "--workers", "2", "--no-progress"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done = 0
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "results.sqlite").is_file():
                with Store(out, create=False) as store:
                    done = store.counts("prune")["done"]
                if done >= 2:
                    break
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert 2 <= done < 8, "the sweep must be killed part way through"
    status = subprocess.run([sys.executable, "-m", "shrinkbench", "status", str(out)],
                            capture_output=True, text=True, check=True).stdout
    assert "interrupted (rerun the same command to resume)" in status.splitlines()[0]

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert rerun.returncode == 0, rerun.stderr
    assert "8 done, 0 running, 0 failed, 0 pending" in rerun.stdout
    expected = build_plan(expand(load_spec(spec)))
    with Store(out) as store:
        rows = store.runs()
        assert sorted(row["id"] for row in rows if row["kind"] == "prune") == sorted(r.run_id for r in expected.runs)
        assert [row["id"] for row in rows if row["kind"] == "dense"] == list(expected.dense)
        assert all(row["status"] == "done" for row in rows)
        for run in expected.runs:
            assert [e["epoch"] for e in store.epochs(run.run_id)] == [1, 2]
            folder = out / "runs" / run.run_id
            assert (folder / "metrics.json").is_file() and not (folder / "checkpoint.pt").exists()


def test_missing_data_is_one_error_before_anything_is_written(tmp_path, capsys):
    base = {**BASE, "data": {"name": "mnist", "data_dir": str(tmp_path)}}  # an empty folder
    spec = write_spec(tmp_path, base=base, name="mnist.yaml")
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mnist" in err
    assert not out.exists()


def test_structured_strategies_and_targets_sweep_like_the_others(tmp_path):
    grid = {"pruning.strategy": ["LayerChannelL1", "GlobalChannelTaylor", "GlobalMagWeight"],
            "pruning.compression": [1, 2], "pruning.target": ["compression"], "seed": [0]}
    spec = write_spec(tmp_path, grid=grid)
    extra = write_spec(tmp_path, name="speed.yaml", grid={
        "pruning.strategy": ["LayerChannelL1"], "pruning.compression": [2],
        "pruning.target": ["speedup", "channels"], "seed": [0]})
    result = run_sweep(load_spec(spec), tmp_path / "out", progress=False, lines=False)
    assert result.exit_code == 0 and result.ran == 4  # 3 strategies at x2, one shared control
    result = run_sweep(load_spec(extra), tmp_path / "out", progress=False, lines=False)
    assert result.exit_code == 0 and result.ran == 2
    # the same numbers from worker processes (latencies, being measurements, aside)
    result = run_sweep(load_spec(spec), tmp_path / "process", executor="process", workers=2,
                       progress=False, lines=False)
    assert result.exit_code == 0
    here = metrics_by_id(tmp_path / "out")
    assert_same_metrics({k: v for k, v in here.items() if k in metrics_by_id(tmp_path / "process")},
                        metrics_by_id(tmp_path / "process"))
    from shrinkbench.results import load

    frame = load(tmp_path / "out")
    rows = {(r.strategy, r.compression): r for r in frame.itertuples()}
    assert len(rows) == len(frame) == 6  # a target other than compression is its own curve
    assert rows[("LayerChannelL1", 2.0)].compression_ratio >= 2
    assert rows[("LayerChannelL1 (speedup)", 2.0)].speedup >= 2
    assert rows[("LayerChannelL1 (channels)", 2.0)].channels_kept_fraction <= 0.5
    assert rows[("GlobalMagWeight", 2.0)].structured == 0
    assert rows[("GlobalChannelTaylor", 2.0)].structured == 1
    assert all(r.speedup_measured > 0 for r in frame.itertuples())
