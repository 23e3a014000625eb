"""SynFlow with 100 rounds on the zoo's CIFAR ResNet-20 to compression 10, against its own work.

Times the whole `prune(model, "synflow", 10)` (copy, 100 rounds of scoring and pruning, the final
allocation, masks attached) and, in the same run, 100 plain float64 forward+backward passes of the
linearized network (|weights|, eval mode) on the ones input: the arithmetic SynFlow cannot avoid.
Prints the median times, their ratio, and whether the issue's target (under 10 s on 2 cores) is met.
Run: python benchmarks/bench_synflow.py [--rounds 100] [--repeats 3] [--threads 2]
                                        [--allocation global|uniform|erk]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn

from shrinkbench.models import create
from shrinkbench.pruning import prunable_parameters, prune

TARGET_S = 10.0


def linearized(model: nn.Module) -> tuple[nn.Module, list[torch.Tensor]]:
    """A float64 eval-mode copy with |parameters| and |float buffers|; its prunable weights."""
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for v in net.state_dict().values():
            if v.is_floating_point():
                v.abs_()
    for p in net.parameters():
        p.requires_grad_(False)
    weights = [net.get_parameter(n) for n in prunable_parameters(net)]
    for w in weights:
        w.requires_grad_(True)
    return net, weights


def plain_passes(model: nn.Module, rounds: int) -> float:
    """Seconds for `rounds` forward+backward passes of the linearized network on ones."""
    net, weights = linearized(model)
    ones = torch.ones(1, 3, 32, 32, dtype=torch.float64)
    start = time.perf_counter()
    for _ in range(rounds):
        torch.autograd.grad(net(ones).sum(), weights)
    return time.perf_counter() - start


def synflow(model: nn.Module, rounds: int, x: torch.Tensor, allocation: str | None) -> tuple[float, int]:
    """Seconds for the whole prune() call; the nonzero count it reports."""
    start = time.perf_counter()
    result = prune(model, "synflow", 10, inputs=x, options={"rounds": rounds}, allocation=allocation)
    return time.perf_counter() - start, result.nonzero


def main() -> None:
    """Interleave the two measurements over repeats and print medians and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100, help="SynFlow rounds (and plain passes)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--allocation", default=None, help="override SynFlow's global allocation")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = create("resnet20", generator=torch.Generator().manual_seed(0))
    x = torch.zeros(2, 3, 32, 32)  # SynFlow reads only the shape of one example
    total = sum(p.numel() for p in base.parameters())
    ours: list[float] = []
    plain: list[float] = []
    nonzero = 0
    for i in range(args.repeats):
        for label in (("synflow", "plain") if i % 2 == 0 else ("plain", "synflow")):
            if label == "synflow":
                seconds, nonzero = synflow(copy.deepcopy(base), args.rounds, x, args.allocation)
                ours.append(seconds)
            else:
                plain.append(plain_passes(base, args.rounds))
    exact = nonzero == total // 10
    med, ref = statistics.median(ours), statistics.median(plain)
    print(f"ResNet-20 (CIFAR), {total} parameters, compression 10 -> {nonzero} nonzero "
          f"(exact: {exact}), {args.allocation or 'global'} allocation, {args.rounds} rounds, {torch.get_num_threads()} threads, "
          f"{args.repeats} repeats")
    rows = [("prune(model, 'synflow', 10), the whole call", med),
            (f"{args.rounds} plain float64 forward+backward passes", ref)]
    print(f"{'what':<48}{'median s':>10}{'ratio':>8}")
    for what, seconds in rows:
        print(f"{what:<48}{seconds:>10.3f}{seconds / ref:>7.2f}x")
    print(f"target: under {TARGET_S:g} s -> {'met' if med < TARGET_S else 'NOT met'}")


if __name__ == "__main__":
    main()
