"""Small models and checks shared by the pruning tests."""

from __future__ import annotations

import torch
from torch import nn


class SmallConvNet(nn.Module):
    """Conv -> BN -> Conv(groups) -> Linear -> Linear(classifier), a few thousand parameters."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, groups=2)
        self.fc1 = nn.Linear(8 * 4 * 4, 24)
        self.fc2 = nn.Linear(24, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.conv2(x))
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def conv_batch(n: int = 6, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (n, 3, 6, 6) and targets in [0, 5)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 6, 6, generator=gen), torch.randint(0, 5, (n,), generator=gen)


def pruned_entries_zero(model: nn.Module) -> bool:
    """Whether every masked-out entry of every masked parameter is exactly zero."""
    from shrinkbench.pruning import masked_parameters

    checks = [bool((m._parameters[p][mask == 0] == 0).all()) for _, m, p, mask in
              masked_parameters(model)]
    return bool(checks) and all(checks)


def train(model: nn.Module, opt: torch.optim.Optimizer, steps: int, seed: int = 3) -> None:
    """A few cross-entropy steps on random conv batches, the masks held (`hold(opt, model)`)."""
    from shrinkbench.pruning import hold

    with hold(opt, model):
        for i in range(steps):
            x, y = conv_batch(seed=seed + i)
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
