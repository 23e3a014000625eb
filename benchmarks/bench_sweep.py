"""Sweep speed: expansion of 10,000 runs, parallel efficiency of the process and ray executors,
and the per-run overhead of ray (and process) over local for tiny runs.

    python benchmarks/bench_sweep.py [--epochs 400] [--tiny 16] [--skip-ray]

Every figure is measured against its baseline in the same run:
- expansion: reading a spec into its runs (each point's Config built from the base with the changed
  sections built once per distinct value, ids carried by the Configs) against building every point
  from scratch with `config_from_dict` on its plain data and taking its ids (timed on a sample).
- efficiency: 12 CPU-bound pruned runs (digits, a small MLP, many fine-tuning epochs; the dense
  model trained beforehand and copied into every output folder), each `shrinkbench sweep` timed end
  to end in a fresh interpreter: `local`, one run after another on one thread (timed before and
  after the others, averaged), against `process`/`ray` with 2 workers of one thread each.
  Efficiency = local time / (2 x executor time), end to end (imports, spawning workers, ray.init
  included) and over the runs alone (store timestamps: first run handed out to last finished).
  The machine's own parallelism for this kind of work (the same single-threaded training loop in
  two processes against one) is measured first: it bounds the efficiencies, which are also given
  as a fraction of it.
- overhead: tiny runs (one fine-tuning epoch) with warm workers, (executor - local) / runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from shrinkbench.common import set_dotted
from shrinkbench.experiment.config import config_from_dict
from shrinkbench.sweep import build_plan, expand, run_plan, spec_from_dict

BASE = {"data": {"name": "digits"}, "model": {"name": "mlp_digits"}, "dense": {"recipe": {"epochs": 1}},
        "device": "cpu"}
BIG_GRID = {
    "pruning.strategy": ["RandomPruning", "GlobalMagWeight", "LayerMagWeight", "GlobalMagGrad"],
    "pruning.compression": [2.0 ** i for i in range(10)],
    "seed": list(range(25)),
    "finetune.lr": [0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 5e-4, 2e-4, 1e-4],
}


def bench_expansion() -> None:
    import copy

    t0 = time.perf_counter()
    spec = spec_from_dict({"base": BASE, "grid": BIG_GRID})
    t1 = time.perf_counter()
    runs = expand(spec)
    plan = build_plan(runs)
    t2 = time.perf_counter()
    sample = runs[:: len(runs) // 200][:200]
    s0 = time.perf_counter()
    for run in sample:
        raw = copy.deepcopy(BASE)
        for key, value in run.point.items():
            set_dotted(raw, key, value)
        cfg = config_from_dict(raw)
        assert (cfg.run_id, cfg.dense_id) == (run.run_id, run.dense_id)
    per_run_exact = (time.perf_counter() - s0) / len(sample)
    total = t2 - t0
    print(f"expansion: {len(runs)} runs ({len(plan.runs)} unique, {len(plan.dense)} dense models): "
          f"read and expand {t1 - t0:.3f} s + plan {t2 - t1:.3f} s = {total:.3f} s "
          f"({total / len(runs) * 1e6:.0f} us/run)")
    print(f"  baseline, building every point from scratch: {per_run_exact * 1e6:.0f} us/run "
          f"-> {per_run_exact * len(runs):.1f} s for {len(runs)} runs; speedup x{per_run_exact * len(runs) / total:.1f}")


def _prepared(root: Path, spec_raw: dict) -> tuple[object, Path]:
    """A plan and an output folder holding its dense model already trained (so only pruned runs are
    timed): the dense model comes from a run outside the grid (compression 1.25, same dense id)."""
    plan = build_plan(expand(spec_from_dict(spec_raw)))
    seed_dir = root / "seed"
    warm = {"base": spec_raw["base"], "grid": {"pruning.compression": [1.25]}}
    run_plan(build_plan(expand(spec_from_dict(warm))), seed_dir, progress=False, lines=False)
    return plan, seed_dir


def _timed(plan, seed_dir: Path, out: Path, executor: str, workers: int | None, **options) -> float:
    shutil.copytree(seed_dir, out)
    start = time.perf_counter()
    result = run_plan(plan, out, executor=executor, workers=workers, progress=False, lines=False, **options)
    elapsed = time.perf_counter() - start
    assert result.exit_code == 0, result.summary()
    return elapsed


def _train_steps(steps: int) -> float:
    """Seconds of `steps` single-threaded SGD steps of a digits-sized MLP: the runs' kind of work."""
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 64),
                                torch.nn.ReLU(), torch.nn.Linear(64, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(64, 64, generator=gen), torch.randint(0, 10, (64,), generator=gen)
    start = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return time.perf_counter() - start


def bench_machine(steps: int = 20_000) -> float:
    """The machine's own parallelism for the runs' kind of work right now: the same single-threaded
    training loop in 2 processes at once against 1 (2.00 on two independent idle cores; two
    hyperthreads of one core share its floating-point units and give less). Returns the speedup."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        pool.map(_train_steps, [10, 10], chunksize=1)  # workers started and warm
        t0 = time.perf_counter()
        pool.map(_train_steps, [steps])
        one = time.perf_counter() - t0
        t0 = time.perf_counter()
        pool.map(_train_steps, [steps, steps], chunksize=1)
        two = time.perf_counter() - t0
        t0 = time.perf_counter()
        pool.map(_train_steps, [steps])
        one = (one + time.perf_counter() - t0) / 2
    ceiling = 2 * one / two
    print(f"machine: the same single-threaded training loop in 2 processes vs 1: speedup x{ceiling:.2f} "
          f"(2.00 on two idle physical cores); the executors cannot beat it")
    return ceiling


def _span(out: Path, since: float) -> float:
    """Seconds from the first pruned run handed to a worker to the last one finished (store times),
    over the runs started after `since` (the seed folder's own run is older): the sweep's work
    without the interpreter's and the executor's one-time start-up."""
    from shrinkbench.results.store import Store

    with Store(out, create=False) as store:
        rows = [r for r in store.runs(kind="prune") if r["status"] == "done" and r["started"] >= since]
    return max(r["finished"] for r in rows) - min(r["started"] for r in rows)


def _cli(spec: Path, seed_dir: Path, out: Path, executor: str) -> tuple[float, float]:
    """(wall time of `shrinkbench sweep` in a fresh interpreter, span of its runs), one torch thread
    per run."""
    shutil.copytree(seed_dir, out)
    cmd = [sys.executable, "-m", "shrinkbench", "sweep", str(spec), "--out", str(out),
           "--executor", executor, "--no-progress"] + (["--workers", "2"] if executor != "local" else [])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    since, start = time.time(), time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{executor} sweep failed:\n{done.stdout}\n{done.stderr[-2000:]}")
    return elapsed, _span(out, since)


def bench_efficiency(root: Path, epochs: int, with_ray: bool, ceiling: float) -> None:
    raw = {"base": {**BASE, "finetune": {"epochs": epochs}},
           "grid": {"pruning.strategy": ["RandomPruning", "GlobalMagWeight", "LayerMagWeight"],
                    "pruning.compression": [2, 4, 8, 16]}}
    plan, seed_dir = _prepared(root / "cpu", raw)
    spec = root / "cpu" / "spec.yaml"
    spec.write_text(yaml.safe_dump(raw))
    n = len(plan.runs)
    before = _cli(spec, seed_dir, root / "cpu" / "local-before", "local")
    timings = {name: _cli(spec, seed_dir, root / "cpu" / name, name)
               for name in ["process"] + (["ray"] if with_ray else [])}
    after = _cli(spec, seed_dir, root / "cpu" / "local-after", "local")  # the machine's load drifts
    serial = (before[0] + after[0]) / 2
    serial_span = (before[1] + after[1]) / 2
    print(f"efficiency: {n} CPU-bound runs of {epochs} epochs, {os.cpu_count()} cores, "
          "`shrinkbench sweep` end to end (fresh interpreter, start-up included)")
    print(f"  local (1 thread, one after another): {before[0]:.1f} s before, {after[0]:.1f} s after, "
          f"mean {serial:.1f} s ({serial / n:.2f} s/run); runs alone {serial_span:.1f} s")
    print("  efficiency = local / (2 x executor); end to end, and over the runs alone (first run "
          "handed out to last finished: without ray.init and interpreter start-up)")
    for name, (elapsed, span) in timings.items():
        print(f"  {name:<7} 2 workers: {elapsed:.1f} s end to end, efficiency {serial / (2 * elapsed):.2f}; "
              f"runs alone {span:.1f} s, efficiency {serial_span / (2 * span):.2f} (target >= 0.80); "
              f"of the machine's x{ceiling:.2f}: {serial / elapsed / ceiling:.2f} end to end, "
              f"{serial_span / span / ceiling:.2f} runs alone")


def bench_overhead(root: Path, tiny: int, with_ray: bool) -> None:
    raw = {"base": {**BASE, "finetune": {"epochs": 1}},
           "grid": {"pruning.compression": [1.5 + i for i in range(tiny)]}}
    plan, seed_dir = _prepared(root / "tiny", raw)
    n = len(plan.runs)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    _timed(plan, seed_dir, root / "tiny" / "warm-local", "local", None)
    local = _timed(plan, seed_dir, root / "tiny" / "local", "local", None)
    torch.set_num_threads(threads)
    print(f"overhead: {n} tiny runs (1 epoch), 1 worker, warm")
    print(f"  local: {local:.2f} s ({local / n * 1e3:.0f} ms/run)")
    if with_ray:
        import ray

        t0 = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        print(f"  ray start-up (ray.init, local instance): {time.perf_counter() - t0:.1f} s")
        _timed(plan, seed_dir, root / "tiny" / "warm-ray", "ray", 1)
        elapsed = _timed(plan, seed_dir, root / "tiny" / "ray", "ray", 1)
        print(f"  ray:   {elapsed:.2f} s ({elapsed / n * 1e3:.0f} ms/run), overhead over local "
              f"{(elapsed - local) / n * 1e3:.0f} ms/run")
        ray.shutdown()
    elapsed = _timed(plan, seed_dir, root / "tiny" / "process", "process", 1, threads=1)
    print(f"  process (includes spawning its worker): {elapsed:.2f} s, overhead over local "
          f"{(elapsed - local) / n * 1e3:.0f} ms/run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=400, help="fine-tuning epochs of the CPU-bound runs")
    parser.add_argument("--tiny", type=int, default=16, help="number of tiny runs for the overhead")
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--expansion-only", action="store_true", help="only the sweep expansion")
    args = parser.parse_args()
    with_ray = not args.skip_ray
    bench_expansion()
    if args.expansion_only:
        return
    ceiling = bench_machine()
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        bench_efficiency(Path(tmp), args.epochs, with_ray, ceiling)
        bench_overhead(Path(tmp), args.tiny, with_ray)


if __name__ == "__main__":
    main()
