"""Top-k accuracy and mean loss over a whole data loader, weighted by the true batch sizes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from shrinkbench.errors import ConfigError, DataError
from shrinkbench.metrics._common import eval_mode

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[Any, Any]],
    loss_fn: LossFn | None = None,
    device: torch.device | str | None = None,
    topk: Sequence[int] = (1, 5),
) -> dict[str, float | int]:
    """Top-k accuracies (fractions) and per-sample mean loss over every (x, y) batch of the loader.

    `loss_fn(outputs, targets)` must return the SUM of the per-sample losses of the batch (the default
    is cross-entropy with reduction='sum'); the model must already be on `device`. With fewer classes
    than k, top-k counts a sample correct when its label is among all classes.
    """
    ks = tuple(int(k) for k in topk)
    if not ks or any(k < 1 for k in ks):
        raise ConfigError(f"topk must be positive integers, got {tuple(topk)}")
    loss_fn = loss_fn if loss_fn is not None else nn.CrossEntropyLoss(reduction="sum")
    correct: dict[int, torch.Tensor | int] = dict.fromkeys(ks, 0)
    loss_sum: torch.Tensor | float = 0.0
    n = 0
    with eval_mode(model), torch.inference_mode():
        for x, y in loader:
            if device is not None:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            outputs = model(x)
            loss_sum = loss_sum + loss_fn(outputs, y).detach().float()
            k_max = min(max(ks), outputs.shape[1])
            hits = outputs.topk(k_max, dim=1).indices.eq(y.view(-1, 1))
            for k in ks:
                correct[k] = correct[k] + hits[:, : min(k, k_max)].any(dim=1).sum()
            n += y.shape[0]
    if n == 0:
        raise DataError("evaluate: the loader yielded no samples")
    result: dict[str, float | int] = {f"acc{k}": float(correct[k]) / n for k in ks}
    result["loss"] = float(loss_sum) / n
    result["n"] = n
    return result
