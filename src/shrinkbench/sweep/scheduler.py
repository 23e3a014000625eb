"""The scheduler: submits jobs to an executor in dependency order and records outcomes in the store.

It is the only code that writes the store, for `run`, `sweep` and `quickstart` alike: it registers
the jobs, marks a job running when it submits it, and done, failed or interrupted when its outcome
comes back (epochs first, then the final row, so a done row always has its epochs). A pruned run is
submitted only once the dense model it starts from is ready; when that dense model fails, its runs
are recorded as failed without running.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .executors import Executor
from .jobs import Job, Outcome
from .progress import Progress

POLL_S = 0.5


@dataclass
class Stats:
    """What one scheduler run did."""

    done: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (id, one-line error)
    cancelled: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)  # interrupted by a dying worker: resumable
    interrupted: bool = False


class Scheduler:
    """Runs jobs on an executor, dense models before the pruned runs that need them."""

    def __init__(self, executor: Executor, store: Any, progress: Progress | None = None) -> None:
        self.executor = executor
        self.store = store
        self.progress = progress
        self.stats = Stats()

    def register(self, jobs: list[Job], rows: dict[str, dict]) -> None:
        """Add the jobs the store does not know yet, as pending; a forced run's old epochs go."""
        for job in jobs:
            if job.id not in rows:
                self.store.register(job.id, job.kind, job.record())
            elif job.force:
                self.store.delete_epochs(job.id, "finetune")

    def _record(self, job: Job, outcome: Outcome) -> None:
        if outcome.interrupted:
            self.store.interrupt(job.id, outcome.error)
            self.stats.lost.append(job.id)
        elif outcome.ok:
            for phase, epoch, metrics in outcome.epochs:
                self.store.add_epoch(job.id, phase, epoch, metrics)
            self.store.finish(job.id, outcome.metrics)
            self.stats.done.append(job.id)
        else:
            self.store.fail(job.id, outcome.error, outcome.traceback)
            self.stats.failed.append((job.id, outcome.error))
        if self.progress is not None:
            self.progress.finished(job, outcome)

    def run(self, jobs: list[Job]) -> Stats:
        """Run every job (a job needing another job of the list waits for it); returns the stats."""
        planned = {job.id for job in jobs}
        waiting: dict[str, list[Job]] = {}
        dense: deque[Job] = deque()
        prune: deque[Job] = deque()
        for job in jobs:
            if job.needs is not None and job.needs in planned:
                waiting.setdefault(job.needs, []).append(job)
            else:
                (dense if job.kind == "dense" else prune).append(job)
        in_flight: dict[str, Job] = {}
        try:
            while dense or prune or in_flight:
                while (dense or prune) and len(in_flight) < self.executor.capacity:
                    job = (dense or prune).popleft()
                    self.store.start(job.id)
                    in_flight[job.id] = job
                    self.executor.submit(job)
                for outcome in self.executor.poll(POLL_S):
                    job = in_flight.pop(outcome.id)
                    self._record(job, outcome)
                    for dependent in waiting.pop(job.id, []):
                        if outcome.interrupted:
                            continue  # stays pending: the rerun trains the dense model, then it
                        if outcome.ok:
                            prune.append(dependent)
                        else:
                            message = f"dense model {job.id} failed: {outcome.error}"
                            self._record(dependent, Outcome(dependent.id, False, error=message))
        except BaseException as exc:
            self.stats.cancelled = self.executor.cancel()
            for job_id in in_flight:
                self.store.interrupt(job_id, "interrupted")  # the rerun resumes it from its checkpoint
            if not isinstance(exc, KeyboardInterrupt):
                raise
            self.stats.interrupted = True
        return self.stats
