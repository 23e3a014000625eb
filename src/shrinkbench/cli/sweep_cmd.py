"""`shrinkbench sweep` (run a grid of experiments) and `shrinkbench status` (what an output folder holds)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .argtypes import add_threads, amount, positive_int, with_threads
from ..errors import ConfigError

EXECUTOR_CHOICES = ("local", "process", "ray")


def register(subparsers: Any) -> None:
    """Add the `sweep` and `status` subcommands."""
    p = subparsers.add_parser(
        "sweep",
        help="run a grid of experiments from a sweep spec",
        description="Expand a sweep spec (a base config plus grid and zip axes) and run every run not yet "
        "done in --out: dense models first, each trained once, then the pruned runs that start from "
        "them. Exit status: 0 when every run is done, 1 when some failed, 130 when interrupted.",
    )
    p.add_argument("spec", help="the sweep spec (YAML)")
    p.add_argument("--out", required=True, help="output folder (results.sqlite and run folders)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field of the base config (repeatable), e.g. --set data.data_dir=/data")
    p.add_argument("--executor", choices=EXECUTOR_CHOICES, default="local",
                   help="local: in this process, one run after another; process: a pool of worker "
                   "processes; ray: Ray tasks on a local instance or a cluster (default: local)")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="runs at a time (process: default one per core; ray: default cluster CPUs / "
                   "--cpus-per-run)")
    p.add_argument("--ray-address", default=None,
                   help="attach to this Ray cluster (e.g. ray://head:10001 or auto) instead of starting a local one")
    p.add_argument("--cpus-per-run", type=amount(0, strict=True), default=1.0,
                   help="ray: CPUs each run requests (default 1)")
    p.add_argument("--gpus-per-run", type=amount(0, strict=False), default=0.0,
                   help="ray: GPUs each run requests, fractions allowed, e.g. 0.25 (default 0)")
    p.add_argument("--plugin", dest="plugins", action="append", default=[], metavar="MODULE|FILE.py",
                   help="import this module or file first, here and in every worker: it registers "
                   "strategies, models or data sets (repeatable; also `plugins:` in the spec or config)")
    add_threads(p, "; with ray, request as many with --cpus-per-run")
    p.add_argument("--dry-run", action="store_true", help="print the expanded runs and which are done; run nothing")
    p.add_argument("--retry-failed", action="store_true", help="run again the runs that failed before")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (the per-run lines stay)")
    p.set_defaults(handler=run_sweep_command)

    s = subparsers.add_parser(
        "status",
        help="how many runs of an output folder are done, running, failed or pending",
        description="Counts of the runs in an output folder by status, and the failures' one-line reasons.",
    )
    s.add_argument("out", metavar="DIR", help="output folder of a sweep or run")
    s.add_argument("--traceback", metavar="RUN_ID", default=None,
                   help="print the recorded error and traceback of one run")
    s.set_defaults(handler=status_command)


def run_sweep_command(args: argparse.Namespace) -> int:
    """Handler of `shrinkbench sweep`."""
    from ..sweep import dry_run, load_spec, plan_sweep, run_plan

    spec = load_spec(args.spec, with_threads(args.overrides, args.threads), plugins=args.plugins)
    if args.threads is not None and "threads" in spec.axes.keys():
        raise ConfigError(f"--threads {args.threads}: the spec {args.spec} sweeps threads itself; "
                          "drop --threads or the threads axis")
    plan = plan_sweep(spec)
    if args.dry_run:
        for line in dry_run(plan, args.out, retry_failed=args.retry_failed).lines():
            print(line)
        return 0
    options = {}
    if args.executor == "ray":
        options = {"ray_address": args.ray_address, "cpus_per_run": args.cpus_per_run,
                   "gpus_per_run": args.gpus_per_run}
    # data and model problems are one-line errors before anything is written; on ray only the
    # workers may have the data, so there they show as failed runs
    result = run_plan(plan, args.out, executor=args.executor, workers=args.workers,
                      retry_failed=args.retry_failed, progress=not args.no_progress,
                      preflight=args.executor != "ray", **options)
    print(result.summary())
    sys.stdout.flush()
    return result.exit_code


def status_command(args: argparse.Namespace) -> int:
    """Handler of `shrinkbench status`."""
    from ..sweep import sweep_status
    from ..sweep.runner import run_traceback

    if args.traceback:
        print(run_traceback(args.out, args.traceback))
        return 0
    for line in sweep_status(args.out):
        print(line)
    return 0
