"""`shrinkbench quickstart`: the shipped spec on the embedded digits set, the plan runner, the report."""

from __future__ import annotations

import argparse
import os
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from .argtypes import add_threads, with_threads

DEFAULT_OUT = os.path.join("shrinkbench-out", "quickstart")
SPEC = "quickstart.yaml"  # in the package's specs/ folder (examples/sweeps/quickstart.yaml links it)


def register(subparsers: Any, default_out: str) -> None:
    """Add the `quickstart` subcommand."""
    p = subparsers.add_parser(
        "quickstart", help="the main job on digits: 4 strategies x 6 compressions x 3 seeds, then "
        "summary tables and a report (about 26 s on 2 CPU cores)",
        description="Run the shipped sweep examples/sweeps/quickstart.yaml on the embedded digits "
        "data set: RandomPruning, GlobalMagWeight, LayerMagWeight and GlobalMagGrad at compressions "
        "1-32 with 3 seeds (63 runs: compression 1 is one unpruned control per seed); about 26 s on "
        "2 CPU cores. Finished runs are found, not redone. Prints the accuracy tables and writes a "
        "self-contained HTML report.")
    p.add_argument("--out", default=default_out, metavar="DIR", help=f"output folder (default: {default_out})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (the per-run lines stay "
                   "when the output is not a terminal)")
    add_threads(p, " (other values are other runs, with other numbers than the README's)")
    p.set_defaults(handler=cmd_quickstart)


def spec_path() -> Path:
    """The shipped quickstart spec."""
    return Path(str(resources.files("shrinkbench") / "specs" / SPEC))


def summary_table(frame: pd.DataFrame, metric: str, label: str) -> str:
    """Strategies x compressions: mean over seeds of `metric` (as %); the x1 column is the shared
    unpruned control, the same run in every row."""
    from ..results.names import display_name

    pruned = frame[frame["compression"] > 1]
    control = frame[frame["compression"] == 1]
    strategies = list(dict.fromkeys(pruned["strategy"]))
    compressions = sorted(set(frame["compression"]))
    seeds = frame["seed"].nunique()
    names = [display_name(s) for s in strategies]
    width = max(len(s) for s in names + ["strategy"])
    head = f"{'strategy':<{width}}" + "".join(f"{f'x{c:g}':>9}" for c in compressions)
    lines = [f"{label} (%; mean of {seeds} seeds; x1 = the unpruned control)", head, "-" * len(head)]
    for strategy, name in zip(strategies, names):
        cells = []
        for c in compressions:
            rows = control if c == 1 else pruned[(pruned["strategy"] == strategy) & (pruned["compression"] == c)]
            values = pd.to_numeric(rows[metric], errors="coerce").dropna()
            cells.append(f"{values.mean():>9.2f}" if len(values) else f"{'-':>9}")
        lines.append(f"{name:<{width}}" + "".join(cells))
    dense = pd.to_numeric(frame["dense_test_top1_pct"], errors="coerce").dropna()
    if len(dense):
        lines.append(f"dense model test top-1: {dense.groupby(frame['seed']).first().mean():.2f}%")
    return "\n".join(lines)


def run_quickstart(out_dir: str | os.PathLike = DEFAULT_OUT, *, spec: str | os.PathLike | None = None,
                   progress: bool = True, threads: int | None = None) -> Any:
    """Run (or find finished) every run of the quickstart spec into one store; the SweepResult."""
    from ..sweep import load_spec, plan_sweep, run_plan

    plan = plan_sweep(load_spec(spec or spec_path(), with_threads([], threads)))
    quiet = not sys.stderr.isatty()
    return run_plan(plan, out_dir, progress=progress, lines=quiet, preflight=True)


def cmd_quickstart(args: argparse.Namespace) -> int:
    """Run the quickstart, print its tables, write the report (redrawn only when runs changed)."""
    from ..report import write_report
    from ..results import load

    began = time.perf_counter()
    result = run_quickstart(args.out, progress=not args.no_progress, threads=args.threads)
    if result.interrupted:
        raise KeyboardInterrupt
    if result.found:
        print(f"{result.found} of {result.total} runs were already done in {args.out}; "
              f"{result.ran} run now")
    frame = load(args.out)
    print(summary_table(frame, "pre_test_top1_pct", "test top-1 after pruning"))
    print()
    print(summary_table(frame, "post_test_top1_pct", "test top-1 after fine-tuning"))
    report = Path(args.out) / "report.html"
    if result.ran or result.trained or not report.is_file():
        report = write_report(args.out)
    print(f"report: {report}")
    print(f"results: {args.out} ({result.total} runs; `shrinkbench results {args.out}`; "
          f"{time.perf_counter() - began:.0f} s)")
    return result.exit_code
