"""Optimizers and learning-rate schedules of a recipe, by name."""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import torch

from ..registry import Registry

RecipeConfig = Any  # config.RecipeConfig: the recipe fields are read by name

OptimizerFn = Callable[[Iterable[torch.nn.Parameter], RecipeConfig], torch.optim.Optimizer]
ScheduleFn = Callable[[RecipeConfig, int], float]

OPTIMIZERS: Registry[OptimizerFn] = Registry("optimizer")
SCHEDULES: Registry[ScheduleFn] = Registry("schedule")


@OPTIMIZERS.register("sgd", aliases=("SGD",))
def _sgd(params: Iterable[torch.nn.Parameter], r: RecipeConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=r.lr, momentum=r.momentum, weight_decay=r.weight_decay,
                           nesterov=r.nesterov)


@OPTIMIZERS.register("adam", aliases=("Adam",))
def _adam(params: Iterable[torch.nn.Parameter], r: RecipeConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=r.lr, betas=(r.momentum, 0.999), weight_decay=r.weight_decay)


@OPTIMIZERS.register("adamw", aliases=("AdamW",))
def _adamw(params: Iterable[torch.nn.Parameter], r: RecipeConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=r.lr, betas=(r.momentum, 0.999), weight_decay=r.weight_decay)


@SCHEDULES.register("constant")
def _constant(r: RecipeConfig, epoch: int) -> float:
    return 1.0


@SCHEDULES.register("step")
def _step(r: RecipeConfig, epoch: int) -> float:
    return r.gamma ** (epoch // r.step_size)


@SCHEDULES.register("multistep")
def _multistep(r: RecipeConfig, epoch: int) -> float:
    return r.gamma ** sum(epoch >= m for m in r.milestones)


@SCHEDULES.register("cosine")
def _cosine(r: RecipeConfig, epoch: int) -> float:
    span = max(r.epochs - r.warmup_epochs, 1)
    return 0.5 * (1.0 + math.cos(math.pi * (epoch - r.warmup_epochs) / span))


def make_optimizer(params: Iterable[torch.nn.Parameter], recipe: RecipeConfig) -> torch.optim.Optimizer:
    """The recipe's optimizer over `params`."""
    return OPTIMIZERS.get(recipe.optimizer)(params, recipe)


def lr_at(recipe: RecipeConfig, epoch: int) -> float:
    """The learning rate of 0-based `epoch`: linear warm-up, then the schedule."""
    if epoch < recipe.warmup_epochs:
        return recipe.lr * (epoch + 1) / recipe.warmup_epochs
    return recipe.lr * SCHEDULES.get(recipe.schedule)(recipe, epoch)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's learning rate."""
    for group in optimizer.param_groups:
        group["lr"] = lr
