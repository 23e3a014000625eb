"""Executors: where jobs run. `local` in this process, `process` in a pool of worker processes.

Every executor sends outcomes back to the driver, which alone writes the results store (see
scheduler.py): one writer, whatever the executor, so no two processes ever race on a run's row.
Run folders are written by whoever runs the job (local, process) or copied back by the driver (ray).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections import Counter, deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ..errors import ConfigError
from ..registry import Registry
from .jobs import Job, Outcome, TaskFn, error_line, experiment_task, run_job, set_threads

EXECUTORS: Registry[type["Executor"]] = Registry("executor")

MAX_ATTEMPTS = 2  # a job whose worker process dies is tried once more in a fresh pool


def available_cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Executor:
    """Runs jobs and hands back their outcomes; at most `capacity` jobs should be in flight."""

    capacity: int = 1

    def __init__(self, out_dir: str, *, workers: int | None = None, task_fn: TaskFn = experiment_task) -> None:
        if workers is not None and workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {workers}")
        self.out_dir = str(out_dir)
        self.task_fn = task_fn

    def submit(self, job: Job) -> None:
        """Start (or queue) a job."""
        raise NotImplementedError

    def poll(self, timeout: float | None = None) -> list[Outcome]:
        """Outcomes of the jobs that finished, waiting up to `timeout` seconds for the first one."""
        raise NotImplementedError

    def cancel(self) -> list[str]:
        """Stop all work now; the ids of the jobs that were in flight."""
        raise NotImplementedError

    def close(self) -> None:
        """Release workers after all outcomes were collected."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@EXECUTORS.register("local")
class LocalExecutor(Executor):
    """In this process, one job after another."""

    capacity = 1

    def __init__(self, out_dir: str, *, workers: int | None = None, task_fn: TaskFn = experiment_task, **_: Any) -> None:
        super().__init__(out_dir, workers=workers, task_fn=task_fn)
        self._queue: deque[Job] = deque()
        self.running: Job | None = None

    def submit(self, job: Job) -> None:
        self._queue.append(job)

    def poll(self, timeout: float | None = None) -> list[Outcome]:
        if not self._queue:
            return []
        self.running = self._queue.popleft()
        outcome = run_job(self.task_fn, self.running, self.out_dir)
        self.running = None
        return [outcome]

    def cancel(self) -> list[str]:
        ids = ([self.running.id] if self.running else []) + [job.id for job in self._queue]
        self._queue.clear()
        self.running = None
        return ids


def _init_worker(threads: int, driver: int) -> None:
    set_threads(threads)
    threading.Thread(target=_exit_with_driver, args=(driver,), daemon=True).start()


def _exit_with_driver(driver: int) -> None:
    """Leave when the driver is gone (e.g. killed with -9): a worker must not outlive its sweep."""
    while True:
        time.sleep(1.0)
        if os.getppid() != driver:
            os._exit(1)


@EXECUTORS.register("process")
class ProcessExecutor(Executor):
    """A pool of spawned worker processes, one job each, cores shared out so none is oversubscribed
    (`threads` per worker, default cores // workers)."""

    def __init__(self, out_dir: str, *, workers: int | None = None, task_fn: TaskFn = experiment_task,
                 threads: int | None = None, **_: Any) -> None:
        super().__init__(out_dir, workers=workers, task_fn=task_fn)
        cores = available_cores()
        self.capacity = workers or cores
        self.threads = threads or max(1, cores // self.capacity)
        self._futures: dict[Future, Job] = {}
        self._attempts: Counter[str] = Counter()
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.capacity,
            mp_context=multiprocessing.get_context("spawn"),  # fork is unsafe once torch has threads
            initializer=_init_worker,
            initargs=(self.threads, os.getpid()),
        )

    def submit(self, job: Job) -> None:
        self._attempts[job.id] += 1
        self._futures[self._pool.submit(run_job, self.task_fn, job, self.out_dir)] = job

    def poll(self, timeout: float | None = None) -> list[Outcome]:
        if not self._futures:
            return []
        done, _ = wait(list(self._futures), timeout=timeout, return_when=FIRST_COMPLETED)
        outcomes, lost = [], []
        for future in done:
            job = self._futures.pop(future)
            try:
                outcomes.append(future.result())
            except BrokenProcessPool:
                lost.append(job)
            except Exception as exc:  # e.g. a result that cannot be pickled
                outcomes.append(Outcome(job.id, False, error=error_line(exc)))
        if lost:
            outcomes.extend(self._recover(lost))
        return outcomes

    def _recover(self, lost: list[Job]) -> list[Outcome]:
        """A worker died (killed, out of memory): the pool is unusable; retry its jobs in a new one."""
        lost += list(self._futures.values())
        self._futures.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = self._new_pool()
        failed = []
        for job in lost:
            if self._attempts[job.id] < MAX_ATTEMPTS:
                self.submit(job)
            else:
                message = f"worker process died while running it ({MAX_ATTEMPTS} attempts)"
                failed.append(Outcome(job.id, False, error=message, interrupted=True))
        return failed

    def cancel(self) -> list[str]:
        ids = [job.id for job in self._futures.values()]
        processes = list(getattr(self._pool, "_processes", {}).values())  # no public handle on 3.11
        self._pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(timeout=5)
        self._futures.clear()
        return ids

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
