"""Running a plan end to end: preflight, plan against the store, schedule, summarize.

`shrinkbench run` is a one-point plan on the local executor, `sweep` a spec's plan on any executor,
`quickstart` a shipped spec on the local executor: all three go through `run_plan`, whose
scheduler is the only writer of the store.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..common import DB_NAME
from ..errors import RunError, StoreError
from ..experiment.components import check_fits, preflight
from ..experiment.config import Config
from ..experiment.plugins import check_portable
from ..results.store import Store
from ..results.names import display_name
from .executors import EXECUTORS, Executor
from .ray_executor import RayExecutor  # noqa: F401  (registers the 'ray' executor)
from .jobs import TaskFn, experiment_task
from .plan import Plan, Todo, build_plan, classify, plan_configs, shown_status
from .progress import Progress, describe
from .scheduler import Scheduler
from .spec import SweepSpec, expand

ORDER = ("done", "running", "failed", "pending")  # how counts are shown (interrupted: when any)
MAX_LISTED = 20  # failures listed in a summary
RESUME_HINT = "rerun the same command to resume"


@dataclass
class SweepResult:
    """The state of a plan's pruned runs after running it, and what this invocation did."""

    total: int
    counts: dict[str, int]
    failures: list[tuple[str, str]]  # (job description with id, one-line error)
    ran: int = 0  # pruned runs finished (done or failed) by this invocation
    trained: int = 0  # dense models finished by this invocation
    interrupted: bool = False
    found: int = 0  # pruned runs already done before this invocation

    @property
    def exit_code(self) -> int:
        """130 when interrupted, 0 when every run is done, 1 otherwise (failures, runs left)."""
        if self.interrupted:
            return 130
        return 0 if self.counts.get("done", 0) == self.total else 1

    def summary(self) -> str:
        """A few lines for the end of a sweep."""
        head = f"sweep {'interrupted' if self.interrupted else 'finished'}: {self.total} runs: {count_text(self.counts)}"
        lines = [f"{head} (this time: {self.ran} runs, {self.trained} dense models; "
                 f"{self.found} found done)"]
        lines += [f"  failed: {what}: {error}" for what, error in self.failures[:MAX_LISTED]]
        if len(self.failures) > MAX_LISTED:
            lines.append(f"  ... and {len(self.failures) - MAX_LISTED} more failures (shrinkbench status DIR)")
        return "\n".join(lines)


def count_text(counts: dict[str, int]) -> str:
    """'3 done, 0 running, 1 failed, 0 pending' (', 2 interrupted: resumable' when there are any)."""
    text = ", ".join(f"{counts.get(s, 0)} {s}" for s in ORDER)
    if counts.get("interrupted"):
        text += f", {counts['interrupted']} interrupted ({RESUME_HINT})"
    return text


def make_executor(name: str, out_dir: str, **options: Any) -> Executor:
    """An executor by registered name (local, process, ray) with its options."""
    return EXECUTORS.get(name)(out_dir, **options)


def plan_sweep(spec: SweepSpec) -> Plan:
    """Expand a spec and drop repeated runs."""
    return build_plan(expand(spec))


def preflight_plan(todo: Todo, *, compression: bool) -> None:
    """Check on this machine what a run would otherwise find out late, once per distinct (data,
    model, dense source, device): the data files are there and the model fits them; with
    `compression`, also that each requested compression can be reached. Raises the error."""
    seen: set[tuple] = set()
    for job in todo.prune_jobs:
        cfg: Config = job.config
        key = (cfg.dense_id, cfg.dense.source, cfg.device, cfg.data.data_dir, cfg.data.download,
               cfg.run_id if compression else None)
        if key not in seen:
            seen.add(key)
            preflight(cfg, compression=compression)


def _rows(out: Path) -> dict[str, dict]:
    if not (out / DB_NAME).is_file():
        return {}
    with Store(out, create=False) as store:
        return {row["id"]: row for row in store.runs()}


def _result(plan: Plan, store: Store, found: int = 0, ran: int = 0, trained: int = 0,
            interrupted: bool = False) -> SweepResult:
    rows = {row["id"]: row for row in store.runs()}
    counts = dict.fromkeys((*ORDER, "interrupted"), 0)
    failures = []
    jobs = [plan.dense_job(d) for d in plan.dense] + [run.job() for run in plan.runs]
    for job in jobs:
        row = rows.get(job.id)
        status = shown_status(row) if row else "pending"
        if job.kind == "prune":
            counts[status] += 1
        if status == "failed":
            failures.append((f"{job.id} {describe(job)}", row.get("error") or ""))
    if not counts["interrupted"]:
        del counts["interrupted"]
    return SweepResult(len(plan.runs), counts, failures, ran, trained, interrupted, found)


def run_plan(
    plan: Plan,
    out_dir: str | os.PathLike,
    *,
    executor: str = "local",
    workers: int | None = None,
    retry_failed: bool = False,
    force: bool = False,
    progress: bool = True,
    lines: bool = True,
    task_fn: TaskFn = experiment_task,
    preflight: bool = False,
    **executor_options: Any,
) -> SweepResult:
    """Run the plan's jobs not yet done in `out_dir` on the chosen executor; a failing run is
    recorded, not raised.

    With `preflight` (for executors on this machine), data, model and device problems raise before
    anything is written; a single-run plan also checks its compression then. Elsewhere (Ray) each
    job checks its own machine when it starts, and a problem shows as a failed run.
    """
    out = Path(out_dir).resolve()
    if out.exists() and not out.is_dir():
        raise StoreError(f"output folder {out} exists and is not a folder")
    todo = classify(plan, _rows(out), out, retry_failed=retry_failed, force=force)
    if task_fn is experiment_task:
        if preflight:
            preflight_plan(todo, compression=len(plan.runs) == 1)
        if executor != "local":
            for job in todo.jobs:
                check_portable(job.config)
    found = len(todo.done)
    with Store(out) as store:
        rows = {row["id"]: row for row in store.runs()}
        todo = classify(plan, rows, out, retry_failed=retry_failed, force=force)
        if not todo.jobs:
            return _result(plan, store, found)
        if len(plan.runs) == 1 and executor == "local" and progress:
            todo.jobs = [_with_progress(job) for job in todo.jobs]
        scheduler_bar = Progress(len(todo.jobs), bar=progress and len(plan.runs) > 1, lines=lines)
        kinds = {job.id: job.kind for job in todo.jobs}
        try:
            with make_executor(executor, str(out), workers=workers, task_fn=task_fn,
                               **executor_options) as ex:
                scheduler = Scheduler(ex, store, scheduler_bar)
                scheduler.register(todo.jobs, rows)
                stats = scheduler.run(todo.jobs)
        finally:
            scheduler_bar.close()
        finished = [kinds[i] for i in stats.done] + [kinds[i] for i, _ in stats.failed]
        return _result(plan, store, found, finished.count("prune"), finished.count("dense"),
                       stats.interrupted)


def run_sweep(spec: SweepSpec, out_dir: str | os.PathLike, **options: Any) -> SweepResult:
    """Run every run of the spec not yet done in `out_dir` (options as for run_plan; preflight
    defaults to on, except with the ray executor, whose workers check their own machines)."""
    options.setdefault("preflight", options.get("executor", "local") != "ray")
    return run_plan(plan_sweep(spec), out_dir, **options)


def _with_progress(job: Any) -> Any:
    return dataclasses.replace(job, progress=sys.stderr.isatty())


def run_experiment(cfg: Config, out_dir: str | os.PathLike, *, force: bool = False,
                   progress: bool = True) -> dict[str, Any]:
    """One run (and its dense model) through the plan runner, recorded in the store of `out_dir`;
    returns its metrics.

    A finished run is returned from the store, not redone, unless `force`; an interrupted one
    resumes from its checkpoint. Config, data and model problems raise before anything is written;
    a run that fails raises RunError (its traceback is in the store); Ctrl-C raises
    KeyboardInterrupt after marking the run interrupted.
    """
    result = run_plan(plan_configs([cfg]), out_dir, force=force, progress=progress, lines=False,
                      preflight=True)
    if result.interrupted:
        raise KeyboardInterrupt
    with Store(out_dir, create=False) as store:
        row = store.get(cfg.run_id)
        dense_row = store.get(cfg.dense_id) if cfg.dense.source == "train" else None
    if row is not None and row["status"] == "done":
        return row["metrics"]
    if dense_row is not None and dense_row["status"] == "failed":
        raise RunError(f"run {cfg.run_id}: its dense model {cfg.dense_id} failed: {dense_row['error']}")
    status = shown_status(row)
    if status == "running":
        raise RunError(f"run {cfg.run_id} is running in another process (pid {row.get('pid')} on "
                       f"{row.get('host')}); wait for it, or stop it and run this again")
    if status == "interrupted":
        raise RunError(f"run {cfg.run_id} was interrupted ({row.get('error') or 'stopped'}); "
                       f"{RESUME_HINT}")
    error = (row or {}).get("error") or status
    again = "" if result.ran else "; it failed in an earlier attempt, --force runs it again"
    raise RunError(f"run {cfg.run_id} failed: {error} (traceback: shrinkbench status "
                   f"{out_dir} --traceback {cfg.run_id}{again})")


@dataclass
class DryRun:
    """What a plan would do: each unique run with its current status."""

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
            f"{len(todo.elsewhere)} running elsewhere, {len(todo.resumed)} interrupted (resumed), "
            f"{len(todo.prune_jobs)} to run, {dense_jobs} dense models to train"
        )
        out = [head]
        for run in plan.runs:
            # the strategy the run has: the compression-1 point of every strategy is one control
            strategy = getattr(getattr(run.config, "pruning", None), "strategy", None)
            shown = " ".join(f"{k}={display_name(strategy or v) if k == 'pruning.strategy' else v}"
                             for k, v in run.point.items())
            out.append(f"{run.run_id}  {self.status.get(run.run_id, 'new'):<11} dense {run.dense_id or '-'}  {shown}")
        return out


def dry_run(plan: Plan, out_dir: str | os.PathLike, *, retry_failed: bool = False) -> DryRun:
    """The plan and what is already done in `out_dir`, writing nothing."""
    out = Path(out_dir).resolve()
    if out.exists() and not out.is_dir():
        raise StoreError(f"output folder {out} exists and is not a folder")
    for cfg in {c.dense_id: c for c in (run.config for run in plan.runs)
                if isinstance(c, Config)}.values():
        check_fits(cfg)  # what can be told without data or a model: a model too big for the input
    rows = _rows(out)
    todo = classify(plan, rows, out, retry_failed=retry_failed)
    status = {run.run_id: shown_status(rows[run.run_id]) for run in plan.runs if run.run_id in rows}
    return DryRun(plan, todo, status)


def sweep_status(out_dir: str | os.PathLike) -> list[str]:
    """Lines describing an output folder: run counts by status and the failures' one-line reasons."""
    with Store(out_dir, create=False) as store:
        rows = store.runs()
    lines = []
    for kind, label in (("prune", "runs"), ("dense", "dense models")):
        mine = [row for row in rows if row["kind"] == kind]
        counts: dict[str, int] = {}
        for row in mine:
            status = shown_status(row)
            counts[status] = counts.get(status, 0) + 1
        lines.append(f"{label}: {len(mine)}: {count_text(counts)}")
    for row in rows:
        if row["status"] == "failed":
            lines.append(f"failed {row['id']} {describe(row)}: {row.get('error') or ''}")
    return lines


def run_status(out_dir: str | os.PathLike, run_id: str) -> str:
    """The shown status of one run in `out_dir` ('new' when it is not there)."""
    rows = _rows(Path(out_dir))
    return shown_status(rows.get(run_id))


def run_traceback(out_dir: str | os.PathLike, run_id: str) -> str:
    """The recorded error and traceback of a run."""
    with Store(out_dir, create=False) as store:
        row = store.get(run_id)
    if row is None:
        raise StoreError(f"no run {run_id!r} in {out_dir}")
    return row.get("traceback") or row.get("error") or f"run {run_id} has no recorded error"
