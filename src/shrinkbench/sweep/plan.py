"""The plan: unique runs, the dense models they share, and what is left to do given the store."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..common import DENSE_DIR, MODEL_FILE
from .jobs import Job


@dataclass(frozen=True)
class Run:
    """One pruned run: its id, the dense model it starts from, its Config (a plain mapping for
    tasks other than experiments), and the swept values that made it."""

    run_id: str
    dense_id: str | None  # None when the dense model is a checkpoint file, not trained here
    config: Any
    point: Mapping[str, Any] = field(default_factory=dict)

    def job(self, force: bool = False) -> Job:
        """The job that runs it."""
        return Job(self.run_id, "prune", self.config, self.dense_id, force=force)


@dataclass
class Plan:
    """Unique runs in order and, per dense id, the config that trains it (its first run's)."""

    runs: list[Run]
    dense: dict[str, Any]
    duplicates: int = 0  # points whose run equals an earlier point's (aliases, the shared control)

    def dense_job(self, dense_id: str) -> Job:
        """The job that trains a dense model."""
        return Job(dense_id, "dense", self.dense[dense_id])


def build_plan(runs: Iterable[Run]) -> Plan:
    """Drop repeated run ids (keeping the first) and collect the dense models to train."""
    unique: dict[str, Run] = {}
    dense: dict[str, Any] = {}
    total = 0
    for run in runs:
        total += 1
        if run.run_id in unique:
            continue
        unique[run.run_id] = run
        if run.dense_id is not None and run.dense_id not in dense:
            dense[run.dense_id] = run.config
    # lottery controls that reuse a ticket's mask run after the tickets, which then need not be
    # found twice (a control finds its ticket itself when it runs first: the same numbers)
    ordered = sorted(unique.values(), key=_after_tickets)
    return Plan(ordered, dense, total - len(unique))


def _after_tickets(run: Run) -> int:
    control = getattr(getattr(run.config, "schedule", None), "control", "none")
    return 1 if control in ("reinit", "shuffle") else 0


def plan_configs(configs: Iterable[Any]) -> Plan:
    """A plan of built Configs (one for `shrinkbench run`)."""
    return build_plan(Run(c.run_id, c.dense_id if c.dense.source == "train" else None, c)
                      for c in configs)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_start_time(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch), from /proc; None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        with open("/proc/stat", "rb") as handle:
            boot = next(float(line.split()[1]) for line in handle if line.startswith(b"btime"))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError, StopIteration):
        return None


def is_stale(row: Mapping[str, Any]) -> bool:
    """A 'running' row whose driver is gone: another host, a dead pid, or a pid since reused by a
    process that started after the run did."""
    if row.get("host") != socket.gethostname():
        return True
    pid = int(row.get("pid") or 0)
    if pid == os.getpid() or not pid_alive(pid):
        return True
    began = process_start_time(pid)
    started = row.get("started")
    return began is not None and started is not None and began > float(started) + 1.0


def shown_status(row: Mapping[str, Any] | None) -> str:
    """The status a user sees: 'interrupted' for a run that started and was stopped before it
    finished (Ctrl-C, kill -9, a crashed worker) and resumes on the next run; else the store's."""
    if row is None:
        return "new"
    status = row["status"]
    if status == "running" and is_stale(row):
        return "interrupted"
    if status == "pending" and row.get("started"):
        return "interrupted"
    return status


@dataclass
class Todo:
    """The plan against the store: jobs to run (dense first) and what is skipped, and why."""

    jobs: list[Job]
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # failed earlier, kept (no --retry-failed)
    elsewhere: list[str] = field(default_factory=list)  # 'running' under another live driver
    resumed: list[str] = field(default_factory=list)  # interrupted earlier, run again
    new: list[str] = field(default_factory=list)

    @property
    def prune_jobs(self) -> list[Job]:
        return [job for job in self.jobs if job.kind == "prune"]


def dense_ready(out_dir: str | os.PathLike, dense_id: str, row: Mapping[str, Any] | None) -> bool:
    """A dense model is ready when the store says done and its model file is there."""
    return bool(row and row["status"] == "done") and (Path(out_dir) / DENSE_DIR / dense_id / MODEL_FILE).is_file()


def classify(plan: Plan, rows: Mapping[str, Mapping[str, Any]], out_dir: str | os.PathLike, *,
             retry_failed: bool = False, force: bool = False) -> Todo:
    """What to run given the store rows by id: done runs are skipped (unless `force`), failed ones
    unless retried, interrupted ones resumed."""
    todo = Todo([])
    prune: list[Job] = []
    for run in plan.runs:
        row = rows.get(run.run_id)
        status = shown_status(row)
        if status == "done" and not force:
            todo.done.append(run.run_id)
            continue
        if status == "failed" and not (retry_failed or force):
            todo.failed.append(run.run_id)
            continue
        if status == "running":
            todo.elsewhere.append(run.run_id)
            continue
        (todo.resumed if status == "interrupted" else todo.new).append(run.run_id)
        prune.append(run.job(force=force))
    needed = dict.fromkeys(job.needs for job in prune if job.needs is not None)
    dense: list[Job] = []
    for dense_id in needed:
        if not dense_ready(out_dir, dense_id, rows.get(dense_id)):
            dense.append(plan.dense_job(dense_id))  # training is under a lock: never done twice
    todo.jobs = dense + prune
    return todo
