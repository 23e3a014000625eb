"""Scheduling and executors with toy tasks: dependency order, failures, interruption, the store."""

from __future__ import annotations

from pathlib import Path

import pytest
from sweep_toy import dying_task, toy_task

from shrinkbench.results.store import Store
from shrinkbench.sweep import Job, LocalExecutor, Plan, ProcessExecutor, Run, Scheduler, run_plan
from shrinkbench.sweep.plan import build_plan


def toy_plan(n_dense: int = 2, per_dense: int = 3, fail: tuple[int, ...] = (), sleep: float = 0.0) -> Plan:
    runs = []
    for d in range(n_dense):
        for j in range(per_dense):
            x = d * per_dense + j
            cfg = {"x": x, "base": 100 * d, "fail": x in fail, "sleep": sleep}
            runs.append(Run(f"r{x}", f"d{d}", cfg, {"x": x}))
    return build_plan(runs)


def expected(plan: Plan) -> dict[str, int]:
    return {run.run_id: run.config["base"] + run.config["x"] ** 2 for run in plan.runs}


def check_store(out: Path, plan: Plan, failed: tuple[str, ...] = ()) -> None:
    with Store(out) as store:
        rows = {row["id"]: row for row in store.runs()}
        assert len(rows) == len(plan.runs) + len(plan.dense)
        for run_id, value in expected(plan).items():
            row = rows[run_id]
            if run_id in failed:
                assert row["status"] == "failed"
                continue
            assert row["status"] == "done", row
            assert row["metrics"]["value"] == value
            assert [e["epoch"] for e in store.epochs(run_id)] == [0, 1]
            assert (out / "runs" / run_id / "result.txt").read_text() == str(value)
        for dense_id in plan.dense:
            assert rows[dense_id]["status"] == "done"
            assert rows[dense_id]["kind"] == "dense"
            assert (out / "dense" / dense_id / "trained_by").read_text().count("\n") == 1


@pytest.mark.parametrize("executor, workers", [("local", None), ("process", 2)])
def test_every_run_done_once_with_dense_models_first(tmp_path, executor, workers):
    plan = toy_plan()
    result = run_plan(plan, tmp_path, executor=executor, workers=workers, task_fn=toy_task, progress=False, lines=False)
    assert result.exit_code == 0
    assert result.counts["done"] == 6 and (result.ran, result.trained) == (6, 2)
    check_store(tmp_path, plan)


def test_a_failing_run_is_recorded_and_the_sweep_goes_on(tmp_path, capsys):
    plan = toy_plan(fail=(1, 4))
    result = run_plan(plan, tmp_path, task_fn=toy_task, progress=False)
    assert result.exit_code == 1
    assert result.counts == {"pending": 0, "running": 0, "done": 4, "failed": 2}
    assert [error for _, error in result.failures] == ["ValueError: run x=1 is broken"] * 1 + [
        "ValueError: run x=4 is broken"
    ]
    check_store(tmp_path, plan, failed=("r1", "r4"))
    with Store(tmp_path) as store:
        row = store.get("r1")
        assert row["error"] == "ValueError: run x=1 is broken"
        assert "Traceback" in row["traceback"] and "second line" in row["traceback"]
    err = capsys.readouterr().err
    assert "FAILED r1" in err and "done r0" in err
    assert "failed: r1" in result.summary()


def test_rerun_skips_done_and_retry_failed_reruns_failures(tmp_path):
    plan = toy_plan(fail=(2,))
    run_plan(plan, tmp_path, task_fn=toy_task, progress=False, lines=False)
    again = run_plan(plan, tmp_path, task_fn=toy_task, progress=False, lines=False)
    assert again.ran == 0 and again.counts["failed"] == 1 and again.exit_code == 1
    fixed = build_plan(
        Run(r.run_id, r.dense_id, {**r.config, "fail": False}, r.point) for r in plan.runs
    )
    retried = run_plan(fixed, tmp_path, task_fn=toy_task, retry_failed=True, progress=False, lines=False)
    assert retried.ran == 1 and retried.exit_code == 0
    check_store(tmp_path, plan)


def test_failed_dense_model_fails_its_runs_without_running_them(tmp_path):
    runs = [Run(f"r{x}", "d0", {"x": x, "base": 0, "fail_dense": True}) for x in range(2)]
    runs.append(Run("r9", "d1", {"x": 9, "base": 5}))
    plan = build_plan(runs)
    result = run_plan(plan, tmp_path, task_fn=toy_task, progress=False, lines=False)
    assert result.counts["failed"] == 2 and result.counts["done"] == 1
    with Store(tmp_path) as store:
        assert store.get("d0")["error"] == "ValueError: dense 0 broke"
        assert store.get("r0")["error"] == "dense model d0 failed: ValueError: dense 0 broke"
        assert store.get("r9")["metrics"]["value"] == 86
    assert not (tmp_path / "runs" / "r0").exists()


def interrupting_task(job: Job, out_dir: str, on_epoch) -> dict:
    if job.config.get("x") == 2:
        raise KeyboardInterrupt
    return toy_task(job, out_dir, on_epoch)


def test_interrupt_puts_the_running_job_back_to_pending(tmp_path):
    plan = toy_plan(n_dense=1, per_dense=5)
    result = run_plan(plan, tmp_path, task_fn=interrupting_task, progress=False, lines=False)
    assert result.interrupted and result.exit_code == 130
    with Store(tmp_path) as store:
        status = {row["id"]: row["status"] for row in store.runs()}
    assert status == {"d0": "done", "r0": "done", "r1": "done", "r2": "pending", "r3": "pending", "r4": "pending"}
    rerun = run_plan(plan, tmp_path, task_fn=toy_task, progress=False, lines=False)
    assert rerun.ran == 3 and rerun.exit_code == 0
    check_store(tmp_path, plan)


def test_stale_running_row_is_resumed_but_a_live_one_is_left_alone(tmp_path):
    plan = toy_plan(n_dense=1, per_dense=2)
    with Store(tmp_path) as store:
        for run in plan.runs:
            store.register(run.run_id, "prune", run.config)
        store.start("r0", pid=2**22 + 12345)  # no such process: a killed driver
        store.start("r1", pid=1)  # alive (init): another driver still working on it
    result = run_plan(plan, tmp_path, task_fn=toy_task, progress=False, lines=False)
    assert (result.ran, result.trained) == (1, 1)  # r0 and its dense model
    assert result.counts == {"pending": 0, "running": 1, "done": 1, "failed": 0}
    assert result.exit_code == 1


def test_scheduler_never_exceeds_capacity_and_orders_dense_first(tmp_path):
    order: list[str] = []

    class Recording(LocalExecutor):
        def submit(self, job: Job) -> None:
            order.append(job.id)
            super().submit(job)

    plan = toy_plan(n_dense=2, per_dense=2)
    jobs = [plan.dense_job(d) for d in plan.dense] + [run.job() for run in plan.runs]
    with Store(tmp_path) as store:
        for job in jobs:
            store.register(job.id, job.kind, job.config)
        stats = Scheduler(Recording(str(tmp_path), task_fn=toy_task), store).run(list(reversed(jobs)))
    assert order[:2] == ["d1", "d0"] and set(order[2:]) == {"r0", "r1", "r2", "r3"}
    assert sorted(stats.done) == sorted(job.id for job in jobs)


def test_process_executor_shares_cores_among_workers(tmp_path):
    ex = ProcessExecutor(str(tmp_path), workers=2, task_fn=toy_task)
    try:
        from shrinkbench.sweep.executors import available_cores

        assert ex.capacity == 2 and ex.threads == max(1, available_cores() // 2)
    finally:
        ex.close()


def test_a_running_row_whose_pid_was_reused_is_interrupted_and_resumed(tmp_path):
    import sqlite3
    import subprocess
    import time

    from shrinkbench.sweep.plan import is_stale, shown_status
    from shrinkbench.sweep.runner import sweep_status

    plan = toy_plan(n_dense=1, per_dense=1)
    sleeper = subprocess.Popen(["sleep", "60"])  # a live process that did not start the run
    try:
        with Store(tmp_path) as store:
            store.register("r0", "prune", plan.runs[0].config)
            store.start("r0", pid=sleeper.pid)
        db = sqlite3.connect(tmp_path / "results.sqlite")
        db.execute("UPDATE runs SET started = ? WHERE id = 'r0'", (time.time() - 3600,))  # an hour ago
        db.commit()
        db.close()
        with Store(tmp_path) as store:
            row = store.get("r0")
        assert row["status"] == "running" and is_stale(row) and shown_status(row) == "interrupted"
        assert "1 interrupted (rerun the same command to resume)" in sweep_status(tmp_path)[0]
        result = run_plan(plan, tmp_path, task_fn=toy_task, progress=False, lines=False)
        assert result.ran == 1 and result.exit_code == 0
    finally:
        sleeper.kill()
        sleeper.wait()


def test_ctrl_c_shows_interrupted_everywhere(tmp_path):
    from shrinkbench.sweep import dry_run
    from shrinkbench.sweep.plan import shown_status
    from shrinkbench.sweep.runner import run_status, sweep_status

    plan = toy_plan(n_dense=1, per_dense=5)
    result = run_plan(plan, tmp_path, task_fn=interrupting_task, progress=False, lines=False)
    assert result.counts["interrupted"] == 1 and "1 interrupted" in result.summary()
    with Store(tmp_path) as store:
        row = store.get("r2")
    assert row["status"] == "pending" and row["error"] == "interrupted" and shown_status(row) == "interrupted"
    assert run_status(tmp_path, "r2") == "interrupted" and run_status(tmp_path, "r3") == "pending"
    assert "1 interrupted" in sweep_status(tmp_path)[0]
    lines = dry_run(plan, tmp_path).lines()
    assert "1 interrupted (resumed)" in lines[0] and any(l.startswith("r2  interrupted") for l in lines)


def test_a_worker_that_keeps_dying_leaves_its_run_interrupted(tmp_path):
    plan = toy_plan(n_dense=1, per_dense=2)
    result = run_plan(plan, tmp_path, executor="process", workers=1, task_fn=dying_task, progress=False,
                      lines=False)
    with Store(tmp_path) as store:
        row = store.get("r1")
    assert row["status"] == "pending" and "worker process died" in row["error"]
    assert result.counts.get("interrupted") == 1 and result.counts["done"] == 1 and result.exit_code == 1
