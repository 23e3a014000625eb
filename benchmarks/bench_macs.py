"""Cost of count_macs vs a plain forward pass of the same input (target: ratio <= 1.5).

Models built inline: LeNet-5 (batch 64, 1x28x28) and a small ResNet (3 stages of 2 basic blocks,
batch 32, 3x32x32), both with masks on every conv/linear weight. Each round times one plain
eval-mode forward under torch.no_grad and one count_macs call, in a shuffled order; the medians are
compared. count_other_ops (a dispatcher-level count, not bound by the target) is shown for reference.
Run: python benchmarks/bench_macs.py [--rounds 30] [--threads N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from shrinkbench.metrics import count_macs, count_other_ops
from shrinkbench.pruning import attach_mask


def lenet5() -> nn.Module:
    """LeNet-5 for 28x28 inputs."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(256, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )  # fmt: skip


class Block(nn.Module):
    """Basic residual block: two 3x3 convs with batch norm, a 1x1 projection when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.proj = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.proj(x))


def resnet_small() -> nn.Module:
    """A CIFAR-style ResNet-14: stem, 3 stages of 2 blocks (16, 32, 64 channels), linear head."""
    layers: list[nn.Module] = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
    cin = 16
    for cout, stride in ((16, 1), (32, 2), (64, 2)):
        layers += [Block(cin, cout, stride), Block(cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)]
    return nn.Sequential(*layers)


def mask_everything(model: nn.Module, density: float, gen: torch.Generator) -> nn.Module:
    """Attach a random mask keeping about `density` of each conv/linear weight."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            attach_mask(module, "weight", (torch.rand(module.weight.shape, generator=gen) < density).float())
    return model.eval()


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def plain_forward(model: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        model(x)


def main() -> None:
    """Time count_macs and a plain forward side by side and print the ratio per model."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    cases = {
        "LeNet-5 (64x1x28x28)": (
            mask_everything(lenet5(), 0.1, gen),
            torch.randn(64, 1, 28, 28, generator=gen),
        ),
        "ResNet-14 (32x3x32x32)": (
            mask_everything(resnet_small(), 0.1, gen),
            torch.randn(32, 3, 32, 32, generator=gen),
        ),
    }
    # A batch of one: counting runs the same single-example forward, so only the fixed cost of the
    # hooks and mask reads shows.
    cases["LeNet-5 (1x1x28x28)"] = (cases["LeNet-5 (64x1x28x28)"][0], torch.randn(1, 1, 28, 28, generator=gen))
    cases["ResNet-14 (1x3x32x32)"] = (cases["ResNet-14 (32x3x32x32)"][0], torch.randn(1, 3, 32, 32, generator=gen))
    shuffler = random.Random(0)
    print(f"{torch.get_num_threads()} threads, {args.rounds} rounds, medians")
    print(f"{'model':<24}{'forward ms':>12}{'count_macs ms':>15}{'ratio':>8}{'other_ops ms':>14}{'ratio':>8}")
    for label, (model, x) in cases.items():
        variants = {
            "forward": lambda: plain_forward(model, x),
            "macs": lambda: count_macs(model, x),
            "other": lambda: count_other_ops(model, x),
        }
        for fn in variants.values():  # warm-up
            fn()
        times: dict[str, list[float]] = {k: [] for k in variants}
        order = list(variants)
        for _ in range(args.rounds):
            shuffler.shuffle(order)
            for key in order:
                times[key].append(timed(variants[key]))
        fwd, macs, other = (statistics.median(times[k]) for k in ("forward", "macs", "other"))
        report = count_macs(model, x)
        print(
            f"{label:<24}{fwd * 1e3:>12.3f}{macs * 1e3:>15.3f}{macs / fwd:>7.2f}x"
            f"{other * 1e3:>14.3f}{other / fwd:>7.2f}x"
        )
        print(
            f"{'':<24}MACs/example dense {report.dense:,}, sparse {report.sparse:,.0f}, "
            f"speedup {report.speedup:.2f}x"
        )


if __name__ == "__main__":
    main()
