"""Plans of runs (one for `run`, a grid for `sweep`, a shipped spec for `quickstart`), dense models
before the runs that prune them, on local, process-pool or Ray executors, with the results store
written by the scheduler alone."""

from __future__ import annotations

from .axes import Axes, ZipGroup, parse_axes
from .executors import EXECUTORS, Executor, LocalExecutor, ProcessExecutor
from .jobs import Job, Outcome, run_job
from .plan import Plan, Run, Todo, build_plan, classify, plan_configs, shown_status
from .ray_executor import RayExecutor
from .runner import (DryRun, SweepResult, dry_run, make_executor, plan_sweep, run_experiment,
                     run_plan, run_sweep, sweep_status)
from .scheduler import Scheduler, Stats
from .spec import SweepSpec, expand, load_spec, point_config, spec_from_dict

__all__ = [
    "Axes", "ZipGroup", "parse_axes",
    "EXECUTORS", "Executor", "LocalExecutor", "ProcessExecutor", "RayExecutor", "make_executor",
    "Job", "Outcome", "run_job",
    "Plan", "Run", "Todo", "build_plan", "classify", "plan_configs", "shown_status",
    "DryRun", "SweepResult", "dry_run", "plan_sweep", "run_experiment", "run_plan", "run_sweep", "sweep_status",
    "Scheduler", "Stats",
    "SweepSpec", "expand", "load_spec", "point_config", "spec_from_dict",
]
