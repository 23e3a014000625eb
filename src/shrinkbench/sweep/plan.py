"""The sweep plan: unique runs, the dense models they share, and what is left to do given the store."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..results.files import DENSE_DIR
from .jobs import Job

DENSE_MODEL_FILE = "model.pt"


@dataclass(frozen=True)
class Run:
    """One pruned run of the sweep: its id, the dense model it starts from, its config as plain data
    (read-only: runs of one sweep share the sections they do not vary)."""

    run_id: str
    dense_id: str | None  # None when the dense model is a checkpoint file, not trained by the sweep
    config: dict
    point: Mapping[str, Any] = field(default_factory=dict)  # the swept keys and their values
    dense_config: dict | None = None  # what defines its dense model (default: the whole config)

    def job(self) -> Job:
        """The job that runs it."""
        return Job(self.run_id, "prune", self.config, self.dense_id)


@dataclass
class Plan:
    """Unique runs in sweep order and, per dense id, the config that trains it (its first run's)."""

    runs: list[Run]
    dense: dict[str, dict]
    duplicates: int = 0  # points whose config equals an earlier point's

    def dense_job(self, dense_id: str) -> Job:
        """The job that trains a dense model."""
        return Job(dense_id, "dense", self.dense[dense_id])


def build_plan(runs: Iterable[Run]) -> Plan:
    """Drop repeated run ids (keeping the first) and collect the dense models to train."""
    unique: dict[str, Run] = {}
    dense: dict[str, dict] = {}
    total = 0
    for run in runs:
        total += 1
        if run.run_id in unique:
            continue
        unique[run.run_id] = run
        if run.dense_id is not None and run.dense_id not in dense:
            dense[run.dense_id] = run.dense_config or run.config
    return Plan(list(unique.values()), dense, total - len(unique))


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


def is_stale(row: Mapping[str, Any]) -> bool:
    """A 'running' row whose driver is gone (dead pid, or another host): an interrupted run."""
    if row.get("host") != socket.gethostname():
        return True
    return not pid_alive(int(row.get("pid") or 0)) or int(row.get("pid") or 0) == os.getpid()


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
    return bool(row and row["status"] == "done") and (Path(out_dir) / DENSE_DIR / dense_id / DENSE_MODEL_FILE).is_file()


def classify(plan: Plan, rows: Mapping[str, Mapping[str, Any]], out_dir: str | os.PathLike, *, retry_failed: bool = False) -> Todo:
    """What to run given the store rows by id: done runs are skipped, failed ones unless retried."""
    todo = Todo([])
    prune: list[Job] = []
    for run in plan.runs:
        row = rows.get(run.run_id)
        status = row["status"] if row else None
        if status == "done":
            todo.done.append(run.run_id)
            continue
        if status == "failed" and not retry_failed:
            todo.failed.append(run.run_id)
            continue
        if status == "running":
            if not is_stale(row):
                todo.elsewhere.append(run.run_id)
                continue
            todo.resumed.append(run.run_id)
        else:
            todo.new.append(run.run_id)
        prune.append(run.job())
    needed = dict.fromkeys(job.needs for job in prune if job.needs is not None)
    dense: list[Job] = []
    for dense_id in needed:
        row = rows.get(dense_id)
        if not dense_ready(out_dir, dense_id, row):
            dense.append(plan.dense_job(dense_id))  # training is under a lock: never done twice
    todo.jobs = dense + prune
    return todo
