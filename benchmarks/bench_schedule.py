"""What a pruning schedule adds to the training it runs: whole runs timed against the one-shot run
with the same fine-tuning epochs.

Each case is a run of LeNet-300-100 on MNIST (or scikit-learn's digits with `--data digits`) whose
dense model is trained once before timing. The one-shot run (prune the dense model, fine-tune E
epochs) is the baseline; the gradual run prunes the same dense model every `--frequency` steps
during the same E epochs; the iterative run spreads E epochs over `--rounds` rounds (the same
epochs, more pruning steps and one test evaluation per round). Runs are repeated interleaved
(`--repeats`), forced each time, and the medians compared. The target: at most 5% more time.

    python benchmarks/bench_schedule.py --data-dir ~/data          # MNIST, 4 epochs, 2 threads
    python benchmarks/bench_schedule.py --data digits --epochs 8
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from shrinkbench.experiment import config_from_dict
from shrinkbench.experiment.dense import ensure_dense
from shrinkbench.experiment.runner import execute


def config(args: argparse.Namespace, schedule: dict) -> object:
    data = {"name": args.data, **({"data_dir": args.data_dir} if args.data_dir else {})}
    model = "lenet300" if args.data == "mnist" else "mlp_digits"
    if args.data == "mnist":
        data["val_size"] = 5000
    return config_from_dict({
        "data": data, "model": {"name": model},
        "dense": {"recipe": {"epochs": 2, "lr": 0.1, "momentum": 0.0, "batch_size": 128}},
        "pruning": {"strategy": "GlobalMagWeight", "compression": args.compression},
        "finetune": {"epochs": args.epochs, "lr": 0.01, "batch_size": 128},
        "latency": {"enabled": False}, "threads": args.threads, "device": "cpu",
        "checkpoint_every": 1, "schedule": schedule,
    })


def rate_for_rounds(cfg: object, rounds: int) -> float:
    """A per-round rate whose iterative schedule reaches the target in exactly `rounds` rounds."""
    from shrinkbench.experiment.components import build_model, static_info
    from shrinkbench.experiment.schedules import rounds_path
    from shrinkbench.pruning import prunable_parameters
    from shrinkbench.pruning.api import keep_count

    model = build_model(cfg, static_info(cfg))
    total = sum(p.numel() for p in model.parameters())
    prunable = sum(p.numel() for p in prunable_parameters(model).values())
    target = keep_count(total, total - prunable, cfg.pruning.compression)
    rate = round(1 - (target / prunable) ** (1 / rounds) + 1e-4, 4)
    assert len(rounds_path(prunable, target, rate)) == rounds, rate
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist", choices=["mnist", "digits"])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--epochs", type=int, default=4, help="fine-tuning epochs of every case")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the iterative case")
    parser.add_argument("--frequency", type=int, default=100, help="gradual: steps between prunings")
    parser.add_argument("--compression", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.epochs % args.rounds:
        parser.error("--epochs must be a multiple of --rounds (the same epochs in every case)")
    rate = rate_for_rounds(config(args, {}), args.rounds)
    cases = {
        "one-shot": {},
        "gradual": {"kind": "gradual", "frequency": args.frequency},
        f"iterative x{args.rounds}": {"kind": "iterative", "rate": rate,
                                      "round_epochs": args.epochs // args.rounds},
    }
    configs = {name: config(args, schedule) for name, schedule in cases.items()}
    times: dict[str, list[float]] = {name: [] for name in cases}
    with tempfile.TemporaryDirectory() as out:
        ensure_dense(configs["one-shot"], out)
        for cfg in configs.values():  # warm-up: data loaded, code paths compiled
            execute(cfg, out, force=True)
        for _ in range(args.repeats):
            for name, cfg in configs.items():
                tick = time.perf_counter()
                metrics = execute(cfg, out, force=True)
                times[name].append(time.perf_counter() - tick)
                assert metrics["train_steps"] > 0
        steps = {name: execute(cfg, out)["path_step"] for name, cfg in configs.items()}
    base = statistics.median(times["one-shot"])
    print(f"{args.data}, {args.epochs} fine-tuning epochs, {args.threads} threads, "
          f"median of {args.repeats} interleaved runs")
    print(f"{'case':<14} {'median s':>9} {'min s':>7} {'vs one-shot':>12} {'pruning steps':>14}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<14} {median:9.2f} {min(values):7.2f} {median / base:11.3f}x "
              f"{len(steps[name]):14d}")


if __name__ == "__main__":
    main()
