"""Dense vs CSR execution of randomly pruned Linear layers on CPU, measured side by side.

For each model (one square Linear, `--size` wide, and LeNet-300-100, 784-300-100-10), thread
count, sparsity and batch size: the masked model run densely and its `sparse_linear` copy (every
Linear in CSR) are timed interleaved in one process with `compare_latency`; the table shows both
medians (ms, with the interquartile range), dense / CSR (above 1: CSR is faster) and the ideal
speedup 1 / density that the MAC count promises.
Run: python benchmarks/bench_sparse_linear.py [--size 4096] [--threads 2 1] [--repeats 20]
"""

from __future__ import annotations

import argparse
import os

import torch
from torch import nn

from shrinkbench.metrics import compare_latency, sparse_linear
from shrinkbench.models import create
from shrinkbench.pruning import attach_mask


def random_masks(model: nn.Module, sparsity: float, gen: torch.Generator) -> None:
    """Mask every Linear weight of the model with exactly round(sparsity * numel) random zeros."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            numel = module.weight.numel()
            mask = torch.ones(numel)
            mask[torch.randperm(numel, generator=gen)[: round(sparsity * numel)]] = 0
            attach_mask(module, "weight", mask.reshape(module.weight.shape))


def build(name: str, size: int, gen: torch.Generator) -> tuple[nn.Module, tuple[int, ...]]:
    """The dense model and the shape of one input example."""
    if name == "linear":
        linear = nn.Linear(size, size)
        with torch.no_grad():
            linear.weight.copy_(torch.randn(size, size, generator=gen) / size**0.5)
            linear.bias.copy_(torch.randn(size, generator=gen))
        return linear, (size,)
    return create(name, generator=gen), (1, 28, 28)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["linear", "lenet300"], choices=["linear", "lenet300"])
    parser.add_argument("--size", type=int, default=4096, help="width of the square Linear")
    parser.add_argument("--sparsities", nargs="+", type=float, default=[0.5, 0.8, 0.9, 0.95, 0.99])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 64])
    parser.add_argument("--threads", nargs="+", type=int, default=[2, 1])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--min-time", type=float, default=0.2, help="seconds measured per variant, at least")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, MKL {torch.backends.mkl.is_available()}, "
          f"{os.cpu_count()} CPUs, load average {load:.2f}; "
          f"median of >= {args.repeats} interleaved passes")
    header = (f"{'model':<12} {'thr':>3} {'sparsity':>8} {'batch':>5} {'dense ms':>9} {'(iqr)':>7} "
              f"{'CSR ms':>9} {'(iqr)':>7} {'dense/CSR':>9} {'ideal':>6}")
    print(header)
    print("-" * len(header))
    for name in args.models:
        label = f"linear{args.size}" if name == "linear" else name
        for threads in args.threads:
            for sparsity in args.sparsities:
                gen = torch.Generator().manual_seed(args.seed)
                dense, shape = build(name, args.size, gen)
                random_masks(dense, sparsity, gen)
                csr = sparse_linear(dense, min_sparsity=0.0)
                for batch in args.batches:
                    x = torch.randn(batch, *shape, generator=gen)
                    with torch.no_grad():
                        torch.testing.assert_close(csr(x), dense(x), atol=1e-4, rtol=1e-4)
                    res = compare_latency(
                        {"dense": dense, "csr": csr}, x, warmup=args.warmup, repeats=args.repeats,
                        threads=threads, min_time_s=args.min_time,
                    )
                    d, c = res["dense"], res["csr"]
                    print(f"{label:<12} {threads:>3} {sparsity:>8.2f} {batch:>5} {d.median_ms:>9.3f} "
                          f"{d.iqr_ms:>7.3f} {c.median_ms:>9.3f} {c.iqr_ms:>7.3f} "
                          f"{d.median_ms / c.median_ms:>9.2f} {1 / (1 - sparsity):>6.0f}", flush=True)


if __name__ == "__main__":
    main()
