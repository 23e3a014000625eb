"""What an executor runs: a Job (one dense model or one pruned run) and the Outcome it sends back."""

from __future__ import annotations

import os
import time
import traceback as tb
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import torch

from ..common import DENSE_DIR, EPOCHS_FILE, RUNS_DIR
from ..experiment.config import Config, config_to_dict, dense_config
from ..experiment.dense import dense_metrics, ensure_dense, read_epochs
from ..experiment.plugins import check_registered, load_plugins
from ..experiment.runner import execute
from ..results.files import atomic_write_bytes, run_dir

EpochRecord = tuple[str, int, dict]  # (phase, epoch, metrics)


@dataclass(frozen=True)
class Job:
    """One unit of work; it pickles to a worker process or a Ray worker.

    `config` is the run's Config (any picklable value for other task functions).
    """

    id: str
    kind: str  # "dense" | "prune"
    config: Any
    needs: str | None = None  # the dense id a pruned run starts from, when the plan trains it
    force: bool = False  # redo a finished run
    progress: bool = False  # per-epoch progress bars (a one-run plan on a terminal)

    @property
    def folder(self) -> str:
        """The job's folder relative to the output folder (runs/<id> or dense/<id>)."""
        return f"{DENSE_DIR if self.kind == 'dense' else RUNS_DIR}/{self.id}"

    def record(self) -> dict:
        """The config as the store keeps it: the whole run, or what defines a dense model."""
        if not isinstance(self.config, Config):
            return self.config
        return dense_config(self.config) if self.kind == "dense" else config_to_dict(self.config)


@dataclass
class Outcome:
    """The result of a Job: metrics and epochs when it worked, error and traceback when it raised."""

    id: str
    ok: bool
    metrics: dict = field(default_factory=dict)
    epochs: list[EpochRecord] = field(default_factory=list)
    error: str = ""
    traceback: str = ""
    seconds: float = 0.0
    interrupted: bool = False  # stopped before it finished (a worker died): resumable, not failed
    files: dict[str, bytes] = field(default_factory=dict)  # artifacts relative to the output folder


class TaskFn(Protocol):
    """Runs a job inside `out_dir`, reporting epochs through `on_epoch`; returns the metrics."""

    def __call__(self, job: Job, out_dir: str, on_epoch: Callable[[str, int, dict], None]) -> dict: ...


def error_line(exc: BaseException) -> str:
    """A one-line description of an exception: its type and the first line of its message."""
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def run_job(task_fn: TaskFn, job: Job, out_dir: str) -> Outcome:
    """Run `job` with `task_fn` (its plugins imported first), turning any exception into a failed
    Outcome (never raises Exception)."""
    epochs: list[EpochRecord] = []

    def on_epoch(phase: str, epoch: int, metrics: dict) -> None:
        epochs.append((str(phase), int(epoch), dict(metrics)))

    start = time.perf_counter()
    try:
        if isinstance(job.config, Config):
            load_plugins(job.config.plugins)
            check_registered(job.config)
        metrics = task_fn(job, out_dir, on_epoch)
    except Exception as exc:  # a failing run is data for the sweep, not a crash of it
        return Outcome(
            job.id, False, epochs=epochs, error=error_line(exc), traceback=tb.format_exc(),
            seconds=time.perf_counter() - start,
        )
    return Outcome(job.id, True, dict(metrics or {}), epochs, seconds=time.perf_counter() - start)


def set_threads(threads: int) -> None:
    """Limit this process's math libraries to `threads` threads (before torch is imported, when possible)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only settable once, before any parallel work
        pass


SKIP_SUFFIXES = (".lock", ".tmp")


def read_tree(root: str | os.PathLike, rel: str) -> dict[str, bytes]:
    """Files under `root/rel` as {path relative to root: bytes} (lock and temporary files left out)."""
    base = Path(root)
    folder = base / rel
    out: dict[str, bytes] = {}
    if not folder.is_dir():
        return out
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.name.endswith(SKIP_SUFFIXES) and not path.name.startswith("."):
            out[path.relative_to(base).as_posix()] = path.read_bytes()
    return out


def write_tree(root: str | os.PathLike, files: dict[str, bytes]) -> None:
    """Write {relative path: bytes} under `root`, each file atomically; paths may not leave `root`."""
    base = Path(root).resolve()
    for rel, data in files.items():
        target = (base / rel).resolve()
        if base not in target.parents:
            raise ValueError(f"artifact path {rel!r} leaves the output folder")
        atomic_write_bytes(target, data)


def experiment_task(job: Job, out_dir: str, on_epoch: Callable[[str, int, dict], None]) -> dict:
    """The real task: train a dense model (kind 'dense') or run one pruning experiment (kind 'prune').

    Epochs are read back from the folder's epochs.csv, which holds every epoch even when the job
    resumed from a checkpoint of an interrupted attempt (live hooks would only see the new ones).
    """
    cfg: Config = job.config
    if job.kind == "dense":
        folder = ensure_dense(cfg, out_dir, progress=job.progress).parent
        metrics, phase = dense_metrics(cfg, out_dir) or {}, "dense"
    else:
        metrics = execute(cfg, out_dir, progress=job.progress, force=job.force)
        folder, phase = run_dir(out_dir, cfg.run_id, create=False), "finetune"
    for row in read_epochs(folder / EPOCHS_FILE):
        on_epoch(phase, row["epoch"], row)
    return metrics
