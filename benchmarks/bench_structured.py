"""Measured against theoretical speedup of channel pruning: the slim model timed beside the dense one.

Each model is pruned by a structured strategy to a MAC reduction (`--speedup`, default 2: half the
MACs), its channels removed, and the dense and slim models timed interleaved in one process (same
batch, same threads, eval mode, no grad; median and IQR over `--repeats`). The figure of merit is
measured speedup / theoretical speedup; the target is at least 0.8.

    python benchmarks/bench_structured.py                       # ResNet-56 @ 64, ResNet-50 @ 16
    python benchmarks/bench_structured.py --cases resnet20:128 lenet5:256 --threads 1
    python benchmarks/bench_structured.py --cases resnet56:64:shortcut=B   # 1x1-conv shortcuts
    python benchmarks/bench_structured.py --device cuda          # when a GPU is present
"""

from __future__ import annotations

import argparse
import time

import torch

from shrinkbench.metrics import count_macs, count_parameters
from shrinkbench.metrics.latency import compare_latency
from shrinkbench.models import create, model_info
from shrinkbench.pruning import prune
from shrinkbench.pruning.structured import remove_channels

DEFAULT_CASES = ("resnet56:64", "resnet50:16")


def run_case(name: str, batch: int, options: dict, args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    shape = model_info(name).default_input_shape
    model = create(name, generator=torch.Generator().manual_seed(0), **options).eval()
    x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(1))
    one = x[:1]
    tick = time.perf_counter()
    result = prune(model, args.strategy, args.speedup, inputs=x[:2], target="speedup",
                   round_to=args.round_to)
    slim = remove_channels(model, one)
    prune_s = time.perf_counter() - tick
    dense = create(name, generator=torch.Generator().manual_seed(0), **options).eval()
    dense_macs, slim_macs = count_macs(dense, one).dense, count_macs(slim, one).dense
    theoretical = dense_macs / slim_macs
    dense, slim = dense.to(device), slim.to(device)
    times = compare_latency({"dense": dense, "slim": slim}, x.to(device), warmup=args.warmup,
                            repeats=args.repeats, threads=args.threads if device.type == "cpu" else None)
    measured = times["dense"].median_ms / times["slim"].median_ms
    return {
        "model": name + "".join(f" {k}={v}" for k, v in options.items())
        + (f" round_to={args.round_to}" if args.round_to > 1 else ""), "batch": batch, "strategy": args.strategy,
        "params": f"{count_parameters(dense).total / 1e6:.2f}M -> {count_parameters(slim).total / 1e6:.2f}M",
        "macs": f"{dense_macs / 1e9:.3f}G -> {slim_macs / 1e9:.3f}G",
        "channels": f"{result.channels_kept}/{result.channels_total}",
        "dense_ms": f"{times['dense'].median_ms:.1f} ({times['dense'].iqr_ms:.1f})",
        "slim_ms": f"{times['slim'].median_ms:.1f} ({times['slim'].iqr_ms:.1f})",
        "theoretical": f"{theoretical:.2f}x", "measured": f"{measured:.2f}x",
        "ratio": f"{measured / theoretical:.2f}", "prune_s": f"{prune_s:.1f}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(DEFAULT_CASES),
                        help="MODEL:BATCH[:OPTION=VALUE,...] ... (e.g. resnet56:64:shortcut=B)")
    parser.add_argument("--strategy", default="layer_channel_l1")
    parser.add_argument("--speedup", type=float, default=2.0, help="theoretical speedup to prune to")
    parser.add_argument("--round-to", type=int, default=1,
                        help="keep a multiple of this many channels in every group")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    rows = []
    for case in args.cases:
        name, _, rest = case.partition(":")
        batch, _, opts = rest.partition(":")
        options = dict(item.split("=", 1) for item in opts.split(",") if item)
        rows.append(run_case(name, int(batch or 1), options, args))
        print(f"done {case}", flush=True)
    header = ["model", "batch", "params", "macs", "channels", "dense_ms", "slim_ms", "theoretical",
              "measured", "ratio", "prune_s"]
    print(f"\ndevice {args.device}, threads {args.threads}, strategy {args.strategy}, "
          f"median (IQR) ms over {args.repeats} interleaved repeats, torch {torch.__version__}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(row[h]) for h in header) + " |")


if __name__ == "__main__":
    main()
