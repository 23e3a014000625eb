"""Running a sweep end to end: plan against the store, schedule, summarize; dry runs and status."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..results.store import DB_NAME, STATUSES, Store
from .executors import make_executor
from .jobs import Job, TaskFn, experiment_task
from .plan import Plan, Todo, build_plan, classify, is_stale
from .progress import Progress, describe
from .spec import SweepSpec, expand

ORDER = ("done", "running", "failed", "pending")  # how counts are shown
MAX_LISTED = 20  # failures listed in a summary


@dataclass
class SweepResult:
    """The state of a sweep's pruned runs after running it, and what this invocation did."""

    total: int
    counts: dict[str, int]
    failures: list[tuple[str, str]]  # (job description with id, one-line error)
    ran: int = 0  # pruned runs finished (done or failed) by this invocation
    trained: int = 0  # dense models finished by this invocation
    interrupted: bool = False

    @property
    def exit_code(self) -> int:
        """130 when interrupted, 0 when every run is done, 1 otherwise (failures, runs left)."""
        if self.interrupted:
            return 130
        return 0 if self.counts.get("done", 0) == self.total else 1

    def summary(self) -> str:
        """A few lines for the end of a sweep."""
        counts = ", ".join(f"{self.counts.get(s, 0)} {s}" for s in ORDER)
        head = f"sweep {'interrupted' if self.interrupted else 'finished'}: {self.total} runs: {counts}"
        lines = [f"{head} (this time: {self.ran} runs, {self.trained} dense models)"]
        lines += [f"  failed: {what}: {error}" for what, error in self.failures[:MAX_LISTED]]
        if len(self.failures) > MAX_LISTED:
            lines.append(f"  ... and {len(self.failures) - MAX_LISTED} more failures (shrinkbench status DIR)")
        return "\n".join(lines)


def plan_sweep(spec: SweepSpec) -> Plan:
    """Expand a spec and drop repeated runs."""
    return build_plan(expand(spec))


def preflight_runs(configs: Iterable[dict]) -> None:
    """Check what a run would otherwise find out late, once per distinct (data, model, dense source,
    device): that the data files are there and the model fits them. Raises the ShrinkBenchError.
    A compression the model cannot reach is left to its run (it fails, the sweep goes on)."""
    import json

    from ..experiment import config_from_dict, preflight

    seen: set[str] = set()
    for config in configs:
        key = json.dumps([config["data"], config["model"], config["dense"]["source"], config["device"]], sort_keys=True)
        if key not in seen:
            seen.add(key)
            preflight(config_from_dict({**config, "pruning": {**config["pruning"], "compression": 1.0}}))


def _rows(out_dir: Path, create: bool) -> tuple[Store | None, dict[str, dict]]:
    if not create and not (out_dir / DB_NAME).is_file():
        return None, {}
    store = Store(out_dir, create=create)
    return store, {row["id"]: row for row in store.runs()}


def _register(store: Store, jobs: Iterable[Job], rows: dict[str, dict]) -> None:
    for job in jobs:
        if job.id not in rows:
            store.register(job.id, job.kind, job.config)


def _result(plan: Plan, store: Store, ran: int = 0, trained: int = 0, interrupted: bool = False) -> SweepResult:
    rows = {row["id"]: row for row in store.runs()}
    counts = dict.fromkeys(STATUSES, 0)
    failures = []
    jobs = [plan.dense_job(d) for d in plan.dense] + [run.job() for run in plan.runs]
    for job in jobs:
        row = rows.get(job.id)
        status = row["status"] if row else "pending"
        if job.kind == "prune":
            counts[status] += 1
        if status == "failed":
            failures.append((f"{job.id} {describe(job)}", row.get("error") or ""))
    return SweepResult(len(plan.runs), counts, failures, ran, trained, interrupted)


def run_sweep(spec: SweepSpec, out_dir: str | os.PathLike, **options: Any) -> SweepResult:
    """Run every run of the spec not yet done in `out_dir` (options as for run_plan; preflight
    defaults to on, except with the ray executor)."""
    options.setdefault("preflight", options.get("executor", "local") != "ray")
    return run_plan(plan_sweep(spec), out_dir, **options)


def run_plan(
    plan: Plan,
    out_dir: str | os.PathLike,
    *,
    executor: str = "local",
    workers: int | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    lines: bool = True,
    task_fn: TaskFn = experiment_task,
    preflight: bool = False,
    **executor_options: Any,
) -> SweepResult:
    """Run the plan's jobs not yet done in `out_dir` on the chosen executor; a failing run is recorded,
    not raised. With `preflight`, data and model problems of the runs to do raise before anything
    is written (see preflight_runs; leave it off when only remote workers have the data)."""
    from .scheduler import Scheduler

    out = Path(out_dir).resolve()
    if preflight:
        rows = _rows(out, create=False)[1]
        todo = classify(plan, rows, out, retry_failed=retry_failed)
        preflight_runs(job.config for job in todo.prune_jobs)
    store, rows = _rows(out, create=True)
    assert store is not None
    with store:
        todo = classify(plan, rows, out, retry_failed=retry_failed)
        _register(store, todo.jobs, rows)
        if not todo.jobs:
            return _result(plan, store)
        kinds = {job.id: job.kind for job in todo.jobs}
        bar = Progress(len(todo.jobs), bar=progress, lines=lines)
        try:
            with make_executor(executor, str(out), workers=workers, task_fn=task_fn, **executor_options) as ex:
                stats = Scheduler(ex, store, bar).run(todo.jobs)
        finally:
            bar.close()
        finished = [kinds[i] for i in stats.done] + [kinds[i] for i, _ in stats.failed]
        return _result(plan, store, finished.count("prune"), finished.count("dense"), stats.interrupted)


@dataclass
class DryRun:
    """What a sweep would do: each unique run with its current status."""

    plan: Plan
    todo: Todo
    status: dict[str, str] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """A header and one line per run: id, status, dense id and the swept values."""
        todo, plan = self.todo, self.plan
        dense_jobs = sum(job.kind == "dense" for job in todo.jobs)
        head = (
            f"{len(plan.runs)} runs ({plan.duplicates} repeated points dropped), {len(plan.dense)} dense "
            f"models: {len(todo.done)} done, {len(todo.failed)} failed (kept; --retry-failed reruns), "
            f"{len(todo.elsewhere)} running elsewhere, {len(todo.prune_jobs)} to run, "
            f"{dense_jobs} dense models to train"
        )
        out = [head]
        for run in plan.runs:
            shown = " ".join(f"{k}={v}" for k, v in run.point.items())
            out.append(f"{run.run_id}  {self.status.get(run.run_id, 'new'):<8} dense {run.dense_id or '-'}  {shown}")
        return out


def dry_run(plan: Plan, out_dir: str | os.PathLike, *, retry_failed: bool = False) -> DryRun:
    """The plan and what is already done in `out_dir`, writing nothing."""
    out = Path(out_dir).resolve()
    store, rows = _rows(out, create=False)
    if store is not None:
        store.close()
    todo = classify(plan, rows, out, retry_failed=retry_failed)
    status = {}
    for run in plan.runs:
        row = rows.get(run.run_id)
        if row is not None:
            status[run.run_id] = "stale" if row["status"] == "running" and is_stale(row) else row["status"]
    return DryRun(plan, todo, status)


def sweep_status(out_dir: str | os.PathLike) -> list[str]:
    """Lines describing an output folder: run counts by status and the failures' one-line reasons."""
    with Store(out_dir, create=False) as store:
        rows = store.runs()
    lines = []
    for kind, label in (("prune", "runs"), ("dense", "dense models")):
        mine = [row for row in rows if row["kind"] == kind]
        counts = dict.fromkeys(STATUSES, 0)
        stale = 0
        for row in mine:
            counts[row["status"]] += 1
            stale += row["status"] == "running" and is_stale(row)
        text = ", ".join(f"{counts[s]} {s}" for s in ORDER)
        extra = f" ({stale} interrupted: rerun the sweep to resume)" if stale else ""
        lines.append(f"{label}: {len(mine)}: {text}{extra}")
    for row in rows:
        if row["status"] == "failed":
            job = Job(row["id"], row["kind"], row["config"])
            lines.append(f"failed {row['id']} {describe(job)}: {row.get('error') or ''}")
    return lines
