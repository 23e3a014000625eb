"""Report rendering time for a quickstart-sized store, against baselines measured in the same run.

    python benchmarks/bench_report.py [--store DIR] [--rounds 5]

Without --store, a synthetic store shaped like the quickstart's is written to a temporary folder
(digits / convnet_digits, 4 strategies x 5 compressions x 3 seeds plus 3 unpruned controls = 63
runs, 4 fine-tuning epochs each, a 4-layer layers.csv per run); pass a real quickstart folder
(`shrinkbench quickstart` writes shrinkbench-out/quickstart) to time that instead.

In one process, interleaved over rounds (medians):
- `load()` of the store: the bare read every report starts from (baseline);
- `write_report` with the figures turned off (`_plots` replaced by a no-op): tables and statistics;
- `write_report`, the whole HTML report.
In fresh interpreters (what a user waits for, imports included):
- `python -c "import shrinkbench.results as r; r.load(STORE)"` (baseline);
- `python -m shrinkbench report STORE --out ...` (target: at most 5 s on 2 cores).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from shrinkbench.report import report as report_module
from shrinkbench.report import write_report
from shrinkbench.results import load
from shrinkbench.results.files import run_dir, write_csv
from shrinkbench.results.store import Store

STRATEGIES = {"random": 0.09, "global_magnitude": 0.01, "layer_magnitude": 0.03, "global_gradient": 0.02}
COMPRESSIONS = (1, 2, 4, 8, 16, 32)
SEEDS = (0, 1, 2)
LAYERS = {"conv1": 144, "conv2": 4608, "fc1": 16384, "fc2": 650}  # name -> parameters
FINETUNE = {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 0.0, "epochs": 4,
            "batch_size": 64}


def synthetic_store(out: Path) -> Path:
    """A quickstart-shaped store: metrics, fine-tuning epochs and layer tables, no training."""
    rng = np.random.default_rng(0)
    total = sum(LAYERS.values())
    with Store(out) as store:
        for seed in SEEDS:
            for compression in COMPRESSIONS:
                for strategy, slope in STRATEGIES.items():
                    if compression == 1 and strategy != "random":
                        continue  # one control per seed, shared by every strategy
                    name = "none" if compression == 1 else strategy
                    run_id = f"{name}-{compression}-{seed}"
                    config = {"data": {"name": "digits"}, "model": {"name": "convnet_digits"},
                              "pruning": {"strategy": name, "compression": float(compression)},
                              "finetune": FINETUNE, "dense": {"recipe": {"epochs": 20, "lr": 0.05}},
                              "seed": seed, "threads": 1}
                    store.register(run_id, "prune", config)
                    store.start(run_id)
                    drop = slope * np.log2(compression) ** 2
                    post = float(np.clip(0.99 - drop + rng.normal(0, 0.005), 0.1, 1.0))
                    pre = float(np.clip(0.99 - 3 * drop + rng.normal(0, 0.01), 0.1, 1.0))
                    for epoch in range(1, 5):
                        acc = pre + (post - pre) * (1 - 0.5 ** epoch)
                        store.add_epoch(run_id, "finetune", epoch, {"lr": 0.01, "train_acc1": acc,
                                                                    "val_acc1": acc, "val_acc5": 1.0,
                                                                    "val_loss": 0.3})
                    nonzero = total / compression
                    store.finish(run_id, {
                        "dense_test_acc1": 0.99, "dense_test_acc5": 1.0, "pre_test_acc1": pre,
                        "pre_test_acc5": 1.0, "post_test_acc1": post, "post_test_acc5": 1.0,
                        "pre_val_acc1": pre, "post_val_acc1": post, "params_total": total,
                        "params_nonzero": nonzero, "compression_ratio": compression,
                        "macs_dense": 1e6, "macs_sparse": 1e6 / compression ** 0.8,
                        "speedup": compression ** 0.8, "env": {"python": sys.version.split()[0]}})
                    write_csv(run_dir(out, run_id) / "layers.csv", [
                        {"name": n, "kind": "Conv2d", "shape": "[1]", "params": p,
                         "nonzero": int(p / compression), "density": 1 / compression,
                         "macs_dense": p, "macs_sparse": p / compression} for n, p in LAYERS.items()])
    return out


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _report_without_figures(store: Path, out: Path) -> None:
    original = report_module._plots
    report_module._plots = lambda *args, **kwargs: None  # type: ignore[assignment]
    try:
        write_report(store, out)
    finally:
        report_module._plots = original


def _fresh(code: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *code], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=None, help="a results folder (default: synthetic)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store = args.store or synthetic_store(tmp / "store")
        runs = len(load(store))
        write_report(store, tmp / "warm.html")  # first-use imports (matplotlib, scipy) out of the timings
        timings: dict[str, list[float]] = {k: [] for k in ("load", "nofig", "full", "cold_load", "cold_report")}
        for _ in range(args.rounds):
            timings["load"].append(_timed(lambda: load(store)))
            timings["nofig"].append(_timed(lambda: _report_without_figures(store, tmp / "nofig.html")))
            timings["full"].append(_timed(lambda: write_report(store, tmp / "full.html")))
            timings["cold_load"].append(_fresh(["-c", f"import shrinkbench.results as r; r.load({str(store)!r})"]))
            timings["cold_report"].append(_fresh(["-m", "shrinkbench", "report", str(store),
                                                  "--out", str(tmp / "cold.html")]))
        med = {k: statistics.median(v) for k, v in timings.items()}
        size = (tmp / "full.html").stat().st_size
    print(f"store: {store if args.store else 'synthetic, quickstart-shaped'} ({runs} runs); "
          f"{args.rounds} rounds, medians")
    print(f"  load()                                 {med['load'] * 1e3:8.1f} ms   (baseline)")
    print(f"  write_report, figures off              {med['nofig'] * 1e3:8.1f} ms   "
          f"{med['nofig'] / med['load']:6.1f}x load")
    print(f"  write_report, HTML with figures        {med['full'] * 1e3:8.1f} ms   "
          f"{med['full'] / med['load']:6.1f}x load, {med['full'] / med['nofig']:.2f}x figures off; "
          f"{size / 1e3:.0f} kB")
    print(f"  fresh interpreter: import + load()     {med['cold_load']:8.2f} s    (baseline)")
    print(f"  fresh interpreter: shrinkbench report  {med['cold_report']:8.2f} s    "
          f"{med['cold_report'] / med['cold_load']:6.2f}x; target <= 5 s: "
          f"{'met' if med['cold_report'] <= 5 else 'NOT met'} (worst round {max(timings['cold_report']):.2f} s)")


if __name__ == "__main__":
    main()
