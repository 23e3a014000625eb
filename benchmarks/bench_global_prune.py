"""Global magnitude pruning of ResNet-50's 54 conv/linear weight tensors (25.5M weights) to 90%.

Times shrinkbench.prune("global_magnitude") against torch.nn.utils.prune.global_unstructured and a
plain topk pruner on identical copies, interleaved over rounds, and prints the median ratios.
Run: python benchmarks/bench_global_prune.py [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import math
import random
import statistics
import time

import torch
import torch.nn.utils.prune as torch_prune
from torch import nn

from shrinkbench.pruning import prune


def resnet50_weight_shapes() -> list[tuple[int, ...]]:
    """Shapes of the 54 conv/linear weights of ResNet-50 (torchvision layout)."""
    shapes: list[tuple[int, ...]] = [(64, 3, 7, 7)]
    inplanes = 64
    for planes, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for block in range(blocks):
            shapes += [(planes, inplanes, 1, 1), (planes, planes, 3, 3), (planes * 4, planes, 1, 1)]
            if block == 0:
                shapes.append((planes * 4, inplanes, 1, 1))
            inplanes = planes * 4
    shapes.append((1000, 2048))
    return shapes


def weights_model(seed: int = 0) -> nn.ModuleList:
    """Bias-free Conv2d/Linear modules with those shapes and random normal weights."""
    gen = torch.Generator().manual_seed(seed)
    layers = nn.ModuleList()
    for shape in resnet50_weight_shapes():
        if len(shape) == 4:
            layer = nn.Conv2d(shape[1], shape[0], shape[2], bias=False)
        else:
            layer = nn.Linear(shape[1], shape[0], bias=False)
        with torch.no_grad():
            layer.weight.copy_(torch.randn(shape, generator=gen))
        layers.append(layer)
    return layers


def shrinkbench_global(model: nn.ModuleList, keep: int) -> int:
    """shrinkbench.prune with global magnitude scores at compression 10; returns the kept count."""
    return prune(model, "global_magnitude", 10, include_classifier=True).nonzero


def torch_global(model: nn.ModuleList, keep: int) -> int:
    """torch.nn.utils.prune.global_unstructured with L1 magnitude."""
    params = [(m, "weight") for m in model]
    total = sum(m.weight.numel() for m in model)
    torch_prune.global_unstructured(params, torch_prune.L1Unstructured, amount=total - keep)
    return sum(int(m.weight_mask.count_nonzero()) for m in model)


def topk_global(model: nn.ModuleList, keep: int) -> int:
    """A plain pruner: concatenate |w|, topk, scatter a mask, multiply it in."""
    weights = [m.weight for m in model]
    flat = torch.cat([w.detach().abs().flatten() for w in weights])
    mask = torch.zeros_like(flat)
    mask[torch.topk(flat, keep, sorted=False).indices] = 1
    with torch.no_grad():
        for w, part in zip(weights, mask.split([w.numel() for w in weights])):
            w.mul_(part.view_as(w))
    return int(mask.sum())


VARIANTS = {
    "shrinkbench": shrinkbench_global,
    "torch.nn.utils.prune": torch_global,
    "plain topk": topk_global,
}


def main() -> None:
    """Time each variant on fresh copies, interleaved, and print ratios to shrinkbench."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-torch", action="store_true", help="leave out the slow baseline")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = weights_model()
    total = sum(p.numel() for p in base.parameters())
    keep = math.floor(total / 10)
    variants = {k: v for k, v in VARIANTS.items() if not (args.skip_torch and "torch" in k)}
    times: dict[str, list[float]] = {k: [] for k in variants}
    counts: dict[str, int] = {}
    order = list(variants)
    shuffler = random.Random(0)
    for _ in range(args.rounds):
        shuffler.shuffle(order)
        for label in order:
            model = copy.deepcopy(base)
            start = time.perf_counter()
            counts[label] = variants[label](model, keep)
            times[label].append(time.perf_counter() - start)
            del model
    ours = statistics.median(times["shrinkbench"])
    print(f"{len(list(base.parameters()))} tensors, {total} weights, keep {keep} (90% sparsity), "
          f"{torch.get_num_threads()} threads, {args.rounds} rounds")
    print(f"{'variant':<24}{'median s':>10}{'ratio to shrinkbench':>22}{'kept':>12}{'exact':>7}")
    for label, ts in times.items():
        med = statistics.median(ts)
        exact = counts[label] == keep
        print(f"{label:<24}{med:>10.3f}{med / ours:>21.1f}x{counts[label]:>12}{exact!s:>7}")


if __name__ == "__main__":
    main()
