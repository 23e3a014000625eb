"""Fine-tuning epoch cost: the experiment loop vs a plain PyTorch loop, same pruned model and data.

LeNet-300-100 and the Caffe LeNet-5 on MNIST (real MNIST from $SHRINKBENCH_TEST_MNIST when set,
else synthetic MNIST-shaped data; the output says which), pruned 12x with GlobalMagWeight, SGD
with momentum, batch 128, CPU. One "epoch" is the first --batches batches of the shuffled training
set (default: all of them for LeNet-300-100, 100 for LeNet-5). The experiment side runs exactly
what fine-tuning runs per epoch minus the validation pass (`loops.fit` for one epoch: learning
rate, seeded RNG, on-device metrics); the baseline is zero_grad / forward / loss / backward / step.
Both train the same pruned model object (masks and the pruning layer's optimizer hook in both;
one model, so memory placement cannot favour either side), each with its own SGD state, in
alternating order over several rounds, and are compared by their medians.
Run: python benchmarks/bench_finetune.py [--rounds 7] [--threads N] [--batches N]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time
from typing import Any

import torch
from torch import nn

from shrinkbench.data import get_data
from shrinkbench.experiment.config import RecipeConfig
from shrinkbench.experiment.loops import fit
from shrinkbench.models import create
from shrinkbench.pruning import prune

RECIPE = RecipeConfig(optimizer="sgd", lr=0.01, momentum=0.9, epochs=1, batch_size=128)


class FirstBatches:
    """The first `n` batches of a loader's epoch (same order for both loops)."""

    def __init__(self, loader: Any, n: int | None) -> None:
        self.loader, self.n = loader, min(n or len(loader), len(loader))

    def __len__(self) -> int:
        return self.n

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def __iter__(self):
        return itertools.islice(iter(self.loader), self.n)


def load_mnist(seed: int) -> tuple[Any, str]:
    """MNIST-shaped training batches: the real set when available, else synthetic."""
    root = os.environ.get("SHRINKBENCH_TEST_MNIST")
    if root:
        bundle = get_data("mnist", data_dir=root, batch_size=RECIPE.batch_size, val_size=0, seed=seed)
        return bundle.train, f"real MNIST ({bundle.train.num_samples} training images)"
    bundle = get_data("synthetic", batch_size=RECIPE.batch_size, val_size=0, seed=seed,
                      shape=(1, 28, 28), num_train=60000, num_test=128)
    return bundle.train, f"synthetic MNIST-shaped data ({bundle.train.num_samples} images)"


def plain_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, loader: Any, epoch: int) -> None:
    """The baseline: a plain PyTorch training loop."""
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    loader.set_epoch(epoch)
    for x, y in loader:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()


def pruned(name: str, loader: Any) -> nn.Module:
    """A zoo model pruned 12x with GlobalMagWeight (masks attached)."""
    model = create(name, num_classes=10, input_shape=(1, 28, 28), generator=torch.Generator().manual_seed(0))
    prune(model, "GlobalMagWeight", 12, seed=0)
    return model


def bench(name: str, loader: Any, rounds: int) -> tuple[float, float]:
    """Median seconds per epoch: (experiment loop, plain loop)."""
    model = pruned(name, loader)
    plain_opt = torch.optim.SGD(model.parameters(), lr=RECIPE.lr, momentum=RECIPE.momentum)
    state: dict[str, Any] = {"optimizer": None}

    def ours(epoch: int) -> None:
        def keep(done: int, optimizer: Any, rows: Any) -> None:
            state["optimizer"] = optimizer.state_dict()  # carry momentum across epochs, as fit does

        fit(model, RECIPE, loader, None, phase="finetune", seed=0, device=torch.device("cpu"),
            start_epoch=0, optimizer_state=state["optimizer"], save=keep)

    def plain(epoch: int) -> None:
        plain_epoch(model, plain_opt, loader, epoch)

    ours(0), plain(0)  # warm-up
    times: dict[str, list[float]] = {"ours": [], "plain": []}
    for r in range(rounds):
        order = (("ours", ours), ("plain", plain)) if r % 2 == 0 else (("plain", plain), ("ours", ours))
        for label, fn in order:
            start = time.perf_counter()
            fn(r + 1)
            times[label].append(time.perf_counter() - start)
    return statistics.median(times["ours"]), statistics.median(times["plain"])


def main() -> None:
    """Time both loops on both models and print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--batches", type=int, default=None, help="batches per epoch for both models")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    loader, source = load_mnist(seed=0)
    print(f"data: {source}; batch {RECIPE.batch_size}; {torch.get_num_threads()} threads; "
          f"{args.rounds} rounds; GlobalMagWeight 12x; SGD momentum {RECIPE.momentum}")
    print(f"{'model':<10}{'batches':>9}{'ours s/epoch':>14}{'plain s/epoch':>15}{'ratio':>9}")
    for name, default in (("lenet300", None), ("lenet5", 100)):
        epoch = FirstBatches(loader, args.batches or default)
        ours, plain = bench(name, epoch, args.rounds)
        print(f"{name:<10}{len(epoch):>9}{ours:>14.3f}{plain:>15.3f}{ours / plain:>8.3f}x")


if __name__ == "__main__":
    main()
