"""Training-step cost with masks attached vs the dense model (and vs torch.nn.utils.prune).

LeNet-300-100 (784-300-100-10, ReLU) by default, or a zoo model (`--model lenet5`, `resnet20`),
batch 128, SGD with momentum, CPU. The variants are timed in interleaved blocks of steps, in a
shuffled order each round; a ratio is the median over rounds of the variant's time over the dense
model's time in the same round.
Run: python benchmarks/bench_masks.py [--model lenet300] [--rounds 60] [--steps 20] [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import time

import torch
import torch.nn.utils.prune as torch_prune
from torch import nn

from shrinkbench.pruning import attach_mask, hold


def lenet_300_100() -> nn.Sequential:
    """LeNet-300-100: 784-300-100-10 fully connected with ReLU."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
        nn.Linear(100, 10),
    )


PRUNED = (nn.Linear, nn.Conv2d)
INPUTS = {"lenet300": (1, 28, 28), "lenet5": (1, 28, 28), "resnet20": (3, 32, 32)}


def build(name: str) -> nn.Module:
    """The benchmark's model: LeNet-300-100 written out here, or a zoo model for 10 classes."""
    if name == "lenet300":
        return lenet_300_100()
    from shrinkbench.models import create

    return create(name, num_classes=10, input_shape=INPUTS[name])


def random_masks(model: nn.Module, density: float, seed: int) -> dict[str, torch.Tensor]:
    """A random 0/1 mask per Linear and Conv2d weight keeping `density` of the entries."""
    gen = torch.Generator().manual_seed(seed)
    return {
        name: (torch.rand(m.weight.shape, generator=gen) < density).float()
        for name, m in model.named_modules() if isinstance(m, PRUNED)
    }


def make_variants(
    density: float, model: str = "lenet300"
) -> dict[str, tuple[nn.Module, torch.optim.Optimizer]]:
    """Dense, shrinkbench-masked and torch.nn.utils.prune-masked copies of one model."""
    torch.manual_seed(0)
    dense = build(model)
    masks = random_masks(dense, density, seed=1)
    ours = copy.deepcopy(dense)
    theirs = copy.deepcopy(dense)
    for name, mask in masks.items():
        attach_mask(ours.get_submodule(name), "weight", mask)
        torch_prune.custom_from_mask(theirs.get_submodule(name), "weight", mask)
    variants = {}
    for label, model in (("dense", dense), ("shrinkbench", ours), ("torch.nn.utils.prune", theirs)):
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        if model is ours:
            hold(opt, model)  # the per-optimizer hook that keeps pruned entries exactly zero
        variants[label] = (model, opt)
    return variants


def train_steps(model: nn.Module, opt: torch.optim.Optimizer, x, y, steps: int) -> float:
    """Seconds per step over `steps` training steps."""
    loss_fn = nn.CrossEntropyLoss()
    start = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    """Time the variants side by side and print their ratios to dense."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(INPUTS), default="lenet300")
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--density", type=float, default=0.1)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(128, *INPUTS[args.model], generator=gen)
    y = torch.randint(0, 10, (128,), generator=gen)
    variants = make_variants(args.density, args.model)
    for model, opt in variants.values():  # warm-up
        train_steps(model, opt, x, y, 20)
    times: dict[str, list[float]] = {k: [] for k in variants}
    order = list(variants)
    shuffler = random.Random(0)
    for _ in range(args.rounds):
        shuffler.shuffle(order)
        for label in order:
            times[label].append(train_steps(*variants[label], x, y, args.steps))
    ours = variants["shrinkbench"][0]
    zeros_hold = all(
        bool((m.weight[m.weight_mask == 0] == 0).all())
        for m in ours.modules() if isinstance(m, PRUNED)
    )
    print(f"{args.model}, batch 128, {torch.get_num_threads()} threads, "
          f"{args.rounds} rounds x {args.steps} steps, density {args.density}")
    print(f"{'variant':<24}{'median ms/step':>16}{'ratio to dense':>16}")
    for label, ts in times.items():
        # Median of the per-round ratios: each round's variants ran back to back.
        ratio = statistics.median(t / d for t, d in zip(ts, times["dense"]))
        print(f"{label:<24}{statistics.median(ts) * 1e3:>16.3f}{ratio:>15.3f}x")
    print(f"pruned entries still zero after training: {zeros_hold}")


if __name__ == "__main__":
    main()
