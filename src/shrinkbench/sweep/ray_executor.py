"""The `ray` executor: each job is a Ray task on a local instance or a cluster (`--ray-address`).

A task runs in a temporary folder on its worker, seeded with the files it needs (the dense model it
starts from, the checkpoint of an interrupted earlier attempt), and returns its outcome with the
files it wrote; the driver copies them atomically into the output folder and records the outcome in
the store, so the store only ever has one writer, however many machines run the jobs.
"""

from __future__ import annotations

import math
import tempfile
from typing import Any

from ..errors import ConfigError
from .executors import EXECUTORS, Executor
from .jobs import Job, Outcome, TaskFn, error_line, experiment_task, read_tree, run_job, set_threads, write_tree

SYSTEM_RETRIES = 2  # Ray reruns a task whose worker died; exceptions inside a run are outcomes, not retried


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "executor 'ray' needs the ray package: pip install 'shrinkbench[ray]'"
        ) from None
    return ray


def ray_run(task_fn: TaskFn, job: Job, inputs: dict[str, bytes], dense: dict[str, bytes] | None, threads: int) -> Outcome:
    """Body of the Ray task: run `job` in a fresh temporary folder and return its outcome and files."""
    set_threads(threads)
    with tempfile.TemporaryDirectory(prefix="shrinkbench-") as tmp:
        write_tree(tmp, dense or {})
        write_tree(tmp, inputs)
        outcome = run_job(task_fn, job, tmp)
        outcome.files = read_tree(tmp, job.folder)
    return outcome


@EXECUTORS.register("ray")
class RayExecutor(Executor):
    """Ray tasks with per-run resource requests (CPUs, fractional GPUs); the driver writes everything."""

    def __init__(
        self,
        out_dir: str,
        *,
        workers: int | None = None,
        task_fn: TaskFn = experiment_task,
        ray_address: str | None = None,
        cpus_per_run: float = 1.0,
        gpus_per_run: float = 0.0,
        **_: Any,
    ) -> None:
        super().__init__(out_dir, workers=workers, task_fn=task_fn)
        if cpus_per_run <= 0:
            raise ConfigError(f"--cpus-per-run must be positive, got {cpus_per_run}")
        if gpus_per_run < 0:
            raise ConfigError(f"--gpus-per-run must be zero or positive, got {gpus_per_run}")
        self.ray = ray = _import_ray()
        self._owns = False
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
            if ray_address:
                ray.init(address=ray_address, **options)
            else:
                cpus = math.ceil((workers or 0) * cpus_per_run) or None
                ray.init(num_cpus=cpus, **options)
            self._owns = True
        cluster_cpus = ray.cluster_resources().get("CPU", 1.0)
        self.capacity = workers or max(1, int(cluster_cpus // cpus_per_run))
        self.threads = max(1, int(cpus_per_run))
        self._task = ray.remote(ray_run).options(
            num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=SYSTEM_RETRIES
        )
        self._refs: dict[Any, Job] = {}
        self._dense: dict[str, Any] = {}

    def _dense_files(self, dense_id: str) -> Any:
        """The dense model's files, put into the object store once and shared by every run using it."""
        if dense_id not in self._dense:
            self._dense[dense_id] = self.ray.put(read_tree(self.out_dir, Job(dense_id, "dense", {}).folder))
        return self._dense[dense_id]

    def submit(self, job: Job) -> None:
        inputs = read_tree(self.out_dir, job.folder)  # resume from what an earlier attempt left
        dense = self._dense_files(job.needs) if job.needs else None
        self._refs[self._task.remote(self.task_fn, job, inputs, dense, self.threads)] = job

    def poll(self, timeout: float | None = None) -> list[Outcome]:
        if not self._refs:
            return []
        ray = self.ray
        ready, _ = ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        if ready:
            ready, _ = ray.wait(list(self._refs), num_returns=len(self._refs), timeout=0)
        outcomes = []
        for ref in ready:
            job = self._refs.pop(ref)
            try:
                outcome = ray.get(ref)
            except Exception as exc:  # the worker died more often than the retries allow
                outcomes.append(Outcome(job.id, False, error=error_line(exc)))
                continue
            write_tree(self.out_dir, outcome.files)
            outcome.files = {}
            outcomes.append(outcome)
        return outcomes

    def cancel(self) -> list[str]:
        ids = [job.id for job in self._refs.values()]
        for ref in self._refs:
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # already finished or gone
                pass
        self._refs.clear()
        return ids

    def close(self) -> None:
        self._dense.clear()
        if self._owns and self.ray.is_initialized():
            self.ray.shutdown()
