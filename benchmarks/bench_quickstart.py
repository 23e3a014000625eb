"""The whole `shrinkbench quickstart` as a user waits for it, against the work it has to do.

    python benchmarks/bench_quickstart.py [--rounds 2]

Each round runs, in fresh interpreters and a fresh temporary folder:
- `shrinkbench quickstart` (63 runs, 3 dense models, tables, the HTML report): wall time;
  target at most 30 s on 2 cores;
- the same command again (every run found, the report not redrawn): wall time;
- `shrinkbench report` of that folder alone: wall time; target at most 5 s.
Baselines from the same round: the training work itself (the sum of every run's and dense model's
recorded `time_total_s`, read from the store) and a bare interpreter start (`python -c "import
torch"`). The overhead of the tool is the wall time minus the work.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(argv: list[str], cwd: Path) -> float:
    """Wall seconds of one command (its output discarded); a failure stops the benchmark."""
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return seconds


def work_seconds(out: Path) -> tuple[float, int]:
    """Seconds of training and evaluation the store records (pruned runs and dense models)."""
    from shrinkbench.results import load

    runs = load(out)
    dense = load(out, kind="dense")
    total = float(runs["time_total_s"].sum()) + float(dense["time_total_s"].sum())
    return total, len(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    cli = [sys.executable, "-m", "shrinkbench.cli.main"]
    rows: dict[str, list[float]] = {k: [] for k in ("start", "quickstart", "work", "rerun", "report")}
    runs = 0
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            rows["start"].append(timed([sys.executable, "-c", "import torch"], folder))
            rows["quickstart"].append(timed([*cli, "quickstart", "--no-progress"], folder))
            out = folder / "shrinkbench-out" / "quickstart"
            work, runs = work_seconds(out)
            rows["work"].append(work)
            rows["rerun"].append(timed([*cli, "quickstart", "--no-progress"], folder))
            rows["report"].append(timed([*cli, "report", str(out), "--out", str(folder / "r.html")],
                                        folder))
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"shrinkbench quickstart, {runs} runs, {args.rounds} rounds (medians; fresh interpreters)")
    print(f"  interpreter start + import torch      {med['start']:6.2f} s   (baseline)")
    print(f"  training and evaluation (the work)     {med['work']:6.2f} s   (baseline, from the store)")
    print(f"  quickstart, first run                  {med['quickstart']:6.2f} s   "
          f"{med['quickstart'] / med['work']:.2f}x the work; overhead {med['quickstart'] - med['work']:.1f} s; "
          f"target <= 30 s: {'met' if max(rows['quickstart']) <= 30 else 'NOT met'} "
          f"(worst {max(rows['quickstart']):.2f} s)")
    print(f"  quickstart again (all runs found)      {med['rerun']:6.2f} s")
    print(f"  report alone                           {med['report']:6.2f} s   "
          f"target <= 5 s: {'met' if max(rows['report']) <= 5 else 'NOT met'}")


if __name__ == "__main__":
    main()
