"""Accuracy and loss over a loader, weighted by the true batch sizes."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from shrinkbench.errors import ConfigError, DataError
from shrinkbench.metrics import evaluate


class Logits(nn.Module):
    """The inputs are the logits; records the mode and inference state it ran in."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.seen: list[tuple[bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((self.training, torch.is_inference_mode_enabled()))
        return x * self.scale


def one_hot_logits(predicted: list[int], classes: int) -> torch.Tensor:
    return F.one_hot(torch.tensor(predicted), classes).float() * 3.0


def loader_with_small_last_batch() -> list[tuple[torch.Tensor, torch.Tensor]]:
    # batches of 4, 4 and 2: all right, all wrong, all right -> 6 of 10 right
    return [
        (one_hot_logits([0, 1, 2, 3], 6), torch.tensor([0, 1, 2, 3])),
        (one_hot_logits([0, 1, 2, 3], 6), torch.tensor([1, 2, 3, 4])),
        (one_hot_logits([4, 5], 6), torch.tensor([4, 5])),
    ]


def test_accuracy_and_loss_are_weighted_by_true_batch_sizes():
    loader = loader_with_small_last_batch()
    result = evaluate(Logits(), loader)
    per_sample = torch.cat([F.cross_entropy(x, y, reduction="none") for x, y in loader])
    assert result["n"] == 10
    assert result["acc1"] == pytest.approx(0.6)
    assert result["loss"] == pytest.approx(per_sample.mean().item())
    # the wrong, unweighted mean of the batch figures differs
    unweighted_acc = (1.0 + 0.0 + 1.0) / 3
    unweighted_loss = sum(F.cross_entropy(x, y).item() for x, y in loader) / 3
    assert result["acc1"] != pytest.approx(unweighted_acc)
    assert result["loss"] != pytest.approx(unweighted_loss)


def test_top5_counts_labels_among_the_five_best():
    # 7 classes; logits rank classes 0 > 1 > ... > 6
    logits = torch.arange(7, 0, -1).float().repeat(4, 1)
    targets = torch.tensor([0, 4, 5, 6])
    result = evaluate(Logits(), [(logits, targets)], topk=(1, 2, 5))
    assert (result["acc1"], result["acc2"], result["acc5"]) == (0.25, 0.25, 0.5)


def test_topk_is_clamped_to_the_number_of_classes():
    logits = torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    result = evaluate(Logits(), [(logits, torch.tensor([0, 2]))])
    assert result["acc1"] == 0.0
    assert result["acc5"] == 1.0


def test_eval_mode_and_inference_mode_inside_and_mode_restored():
    model = Logits().train()
    evaluate(model, loader_with_small_last_batch(), device="cpu")
    assert model.seen == [(False, True)] * 3
    assert model.training


def test_custom_loss_returns_the_batch_sum():
    loader = loader_with_small_last_batch()
    result = evaluate(Logits(), loader, loss_fn=lambda out, y: (out.argmax(1) != y).float().sum())
    assert result["loss"] == pytest.approx(0.4)


def test_empty_loader_and_bad_topk_are_refused():
    with pytest.raises(DataError, match="no samples"):
        evaluate(Logits(), [])
    with pytest.raises(ConfigError, match="topk"):
        evaluate(Logits(), loader_with_small_last_batch(), topk=(0,))
