"""The training loop (metrics accumulated on the device, read once per epoch) and the epoch driver."""

from __future__ import annotations

import contextlib
import hashlib
import sys
import time
from typing import Any, Callable, ContextManager, Iterable

import torch
from torch import nn

from ..metrics import evaluate
from ..metrics.perplexity import evaluate_lm
from ..pruning import hold
from .config import RecipeConfig
from .optim import lr_at, make_optimizer, set_lr

EpochHook = Callable[[str, int, dict[str, Any]], None]
StepHook = Callable[[int], None]  # called after every optimizer step with the batch's size
SaveHook = Callable[[int, torch.optim.Optimizer, list[dict[str, Any]]], None]


def task_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy: over examples (logits (B, C)), or over the scored tokens of a language
    model (logits (B, T, vocab), targets (B, T) with -100 where a token is not scored)."""
    if out.dim() == 3:
        return nn.functional.cross_entropy(out.flatten(0, 1), y.flatten(), ignore_index=-100)
    return nn.functional.cross_entropy(out, y)


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from the parts (e.g. seed, phase, epoch), stable across runs and machines."""
    text = "/".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


@contextlib.contextmanager
def seeded_rng(seed: int, device: torch.device):
    """Global RNG (dropout and friends) seeded from `seed` inside, the caller's state restored after."""
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.default_generator.manual_seed(seed)
        if device.type == "cuda":
            torch.cuda.manual_seed(seed)
        yield


def train_epoch(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    autocast: Callable[[], ContextManager[Any]] = contextlib.nullcontext,
    channels_last: bool = False,
    bar: Any = None,
    skip: int = 0,
    limit: int | None = None,
    on_step: StepHook | None = None,
) -> dict[str, float]:
    """One pass of SGD steps; returns the running mean loss and top-1 accuracy over the epoch.

    `skip` passes over the first batches (the data order stays the epoch's), `limit` stops after
    that many batches of the epoch; `on_step(batch size)` runs after each step."""
    model.train()
    loss_sum: torch.Tensor | None = None
    correct: torch.Tensor | None = None
    n = 0
    for index, (x, y) in enumerate(loader):
        if index < skip:
            continue
        if limit is not None and index >= limit:
            break
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast():
            out = model(x)
            loss = loss_fn(out, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if loss_sum is None:
            # Running sums stay on the device: no host sync inside the epoch.
            loss_sum = torch.zeros((), dtype=torch.float32, device=y.device)
            correct = torch.zeros((), dtype=torch.int64, device=y.device)
        batch = y.shape[0]
        if out.dim() == 3:  # a language model: running means over the scored tokens
            scored = y.ne(-100)
            count = int(scored.sum())
            loss_sum.add_(loss.detach(), alpha=count)
            correct.add_((out.detach().argmax(-1).eq(y) & scored).sum())
            n += count
        else:
            loss_sum.add_(loss.detach(), alpha=batch)
            correct.add_(out.detach().argmax(1).eq(y).sum())
            n += batch
        if on_step is not None:
            on_step(batch)
        if bar is not None:
            bar.update()
    if n == 0:
        return {"train_loss": float("nan"), "train_acc1": float("nan")}
    return {"train_loss": float(loss_sum) / n, "train_acc1": float(correct) / n}


def evaluate_split(
    model: nn.Module, loader: Any, autocast: Callable[[], ContextManager[Any]] = contextlib.nullcontext
) -> dict[str, float] | None:
    """Top-1, top-5 and mean loss over a loader (None for an empty or missing split); for a text
    split (a loader with a `protocol`): mean token loss, perplexity and bits per token."""
    if loader is None or len(loader) == 0:
        return None
    if getattr(loader, "protocol", None) is not None:
        with autocast():
            result = evaluate_lm(model, loader)
        return {"loss": float(result["loss"]), "ppl": float(result["ppl"]), "bpc": float(result["bpc"])}
    with autocast():
        result = evaluate(model, loader)
    return {"acc1": float(result["acc1"]), "acc5": float(result["acc5"]), "loss": float(result["loss"])}


def fit(
    model: nn.Module,
    recipe: RecipeConfig,
    train: Any,
    val: Any,
    *,
    phase: str,
    seed: int,
    device: torch.device,
    autocast: Callable[[], ContextManager[Any]] = contextlib.nullcontext,
    channels_last: bool = False,
    start_epoch: int = 0,
    rows: list[dict[str, Any]] | None = None,
    optimizer_state: dict[str, Any] | None = None,
    on_epoch: EpochHook | None = None,
    save: SaveHook | None = None,
    checkpoint_every: int = 1,
    progress: bool = False,
    start_step: int | None = None,
    stop_step: int | None = None,
    on_step: StepHook | None = None,
    rng_phase: str | None = None,
) -> list[dict[str, Any]]:
    """Train `recipe.epochs` epochs from `start_epoch`, one row of train/val metrics per epoch.

    `start_step`/`stop_step` (optimizer steps from the start of the recipe) begin or end inside an
    epoch, in the recipe's own data order: a rewound network resumes at step k, and training up to
    step k reproduces the weights a full run had there. `on_step(batch size)` runs after each step.
    `rng_phase` (default `phase`) names the random draws (dropout) of each epoch.
    """
    from tqdm.auto import tqdm

    rows = list(rows or [])
    per_epoch = len(train)
    skip = 0
    if start_step is not None:
        start_epoch, skip = divmod(start_step, max(per_epoch, 1))
    end_epoch = recipe.epochs
    if stop_step is not None:
        end_epoch = min(end_epoch, -(-stop_step // max(per_epoch, 1)))
    if on_epoch is not None:
        for row in rows:  # resumed: report the epochs done before the interruption too
            on_epoch(phase, int(row["epoch"]), row)
    optimizer = make_optimizer(model.parameters(), recipe)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    held = hold(optimizer, model)  # pruned entries stay exactly zero after every step
    loss_fn = task_loss
    remaining = end_epoch - start_epoch
    progress = progress and remaining > 0 and sys.stderr.isatty()
    bar = tqdm(total=remaining * len(train), desc=phase, unit="batch", leave=False,
               disable=not progress, dynamic_ncols=True)
    try:
        for epoch in range(start_epoch, end_epoch):
            lr = lr_at(recipe, epoch)
            set_lr(optimizer, lr)
            train.set_epoch(epoch)
            began = time.perf_counter()
            with seeded_rng(derive_seed(seed, rng_phase or phase, epoch), device):
                row: dict[str, Any] = {"epoch": epoch + 1, "lr": lr}
                limit = None
                if stop_step is not None and stop_step < (epoch + 1) * per_epoch:
                    limit = stop_step - epoch * per_epoch
                row.update(train_epoch(model, train, optimizer, loss_fn, autocast=autocast,
                                       channels_last=channels_last, bar=bar if progress else None,
                                       skip=skip if epoch == start_epoch else 0, limit=limit,
                                       on_step=on_step))
            row["time_s"] = time.perf_counter() - began
            val_metrics = evaluate_split(model, val, autocast)
            for key, value in (val_metrics or {}).items():
                row[f"val_{key}"] = value
            rows.append(row)
            if progress:
                val = row.get("val_acc1")
                bar.set_postfix_str(f"epoch {epoch + 1}" + (f", val top-1 {100 * val:.2f}%"
                                                             if val is not None else ""))
            if on_epoch is not None:
                on_epoch(phase, epoch + 1, row)
            done = epoch + 1
            if save is not None and checkpoint_every and (done % checkpoint_every == 0
                                                          or done == end_epoch):
                save(done, optimizer, rows)
    finally:
        held.remove()
        bar.close()
    return rows
