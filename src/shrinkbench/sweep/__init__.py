"""Sweeps: a grid of experiments from a spec, dense models before the runs that prune them, on
local, process-pool or Ray executors, with the results store written by the driver alone."""

from __future__ import annotations

from .axes import Axes, ZipGroup, parse_axes
from .executors import EXECUTORS, Executor, LocalExecutor, ProcessExecutor, make_executor
from .jobs import Job, Outcome, run_job
from .plan import Plan, Run, Todo, build_plan, classify
from .ray_executor import RayExecutor
from .runner import DryRun, SweepResult, dry_run, plan_sweep, run_plan, run_sweep, sweep_status
from .scheduler import Scheduler, Stats
from .spec import SweepSpec, expand, load_spec, spec_from_dict

__all__ = [
    "Axes", "ZipGroup", "parse_axes",
    "EXECUTORS", "Executor", "LocalExecutor", "ProcessExecutor", "RayExecutor", "make_executor",
    "Job", "Outcome", "run_job",
    "Plan", "Run", "Todo", "build_plan", "classify",
    "DryRun", "SweepResult", "dry_run", "plan_sweep", "run_plan", "run_sweep", "sweep_status",
    "Scheduler", "Stats",
    "SweepSpec", "expand", "load_spec", "spec_from_dict",
]
