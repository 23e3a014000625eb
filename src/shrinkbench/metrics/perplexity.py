"""Language-model evaluation: mean token NLL, perplexity and bits per character over a loader.

The loader yields (x, y) token ids of shape (B, T); targets equal to `ignore_index` (-100) are not
scored. The mean is over scored tokens, not over batches or windows, so the result does not depend
on the batch size; with shrinkbench's text evaluation windows every token is scored exactly once.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from shrinkbench.errors import ConfigError, DataError
from shrinkbench.metrics._common import eval_mode

IGNORE_INDEX = -100


def _logits(output: Any) -> torch.Tensor:
    """The logits of a model's output: a tensor, the first item of a tuple, or `.logits`."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    raise ConfigError(f"evaluate_lm: the model returned {type(output).__name__}; expected logits "
                      "(B, T, vocab), a tuple starting with them, or an object with .logits")


def evaluate_lm(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    autocast: torch.dtype | None = None,
    device: torch.device | str | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> dict[str, float | int]:
    """{"loss": mean NLL per scored token (nats), "ppl": exp(loss), "bpc": loss / ln 2, "tokens"}.

    The model maps (B, T) token ids to (B, T, vocab) logits. `autocast` (e.g. torch.bfloat16) runs
    the forward pass under torch.autocast on the model's device type; the loss itself is always
    computed in float32 and summed in float64. `bpc` is bits per token: per character for the char
    tokenizer, per byte for the byte tokenizer.
    """
    total: torch.Tensor | float = 0.0
    count: torch.Tensor | int = 0
    with eval_mode(model), torch.inference_mode():
        for x, y in loader:
            if device is not None:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            amp = (torch.autocast(x.device.type, dtype=autocast) if autocast is not None
                   else contextlib.nullcontext())
            with amp:
                logits = _logits(model(x))
            if logits.shape[:-1] != y.shape:
                raise ConfigError(f"evaluate_lm: logits of shape {tuple(logits.shape)} do not fit "
                                  f"targets of shape {tuple(y.shape)}; expected (B, T, vocab)")
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1),
                                   ignore_index=ignore_index, reduction="sum")
            total = total + loss.double()  # stays on the device: no sync per batch
            count = count + (y != ignore_index).sum()
    tokens = int(count)
    if tokens == 0:
        raise DataError("evaluate_lm: the loader yielded no scored tokens")
    mean = float(total) / tokens
    ppl = math.exp(mean) if mean < 700 else math.inf
    return {"loss": mean, "ppl": ppl, "bpc": mean / math.log(2), "tokens": tokens}
