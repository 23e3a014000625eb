"""Importance scores (higher = keep): magnitude, gradient-weighted, activation-weighted, random."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.nn.modules.conv import _ConvNd

from ..common import MASK_SUFFIX
from ..errors import PruningError

Batch = tuple[Any, Any]


@dataclass
class ScoreContext:
    """What a score function may use besides the parameters: the model, data, loss and seed.

    `prune()` also sets `keep` (prunable entries that will be kept), `alive` (the current mask of
    each prunable tensor, None when it has none) and `allocate(scores, k)` (its allocation, bound to
    `alive` and any layer rates: bool keep-masks keeping exactly k entries) and `allocation` (its
    name), so that an iterative score (SynFlow) can prune with the same allocation between its
    rounds, and a layer-by-layer one (SparseGPT) can read the counts it must keep."""

    model: nn.Module
    strategy: str = "custom"
    batches: Sequence[Batch] | None = None
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None
    seed: int = 0
    owners: dict[str, tuple[nn.Module, str]] = field(default_factory=dict)
    keep: int | None = None
    alive: dict[str, Tensor | None] = field(default_factory=dict)
    allocate: Callable[[dict[str, Tensor], int], dict[str, Tensor]] | None = None
    allocation: str | None = None  # the canonical name of that allocation (prune() sets it)

    def require_batches(self, targets: bool = True) -> Sequence[Batch]:
        """The batches, or a PruningError naming what to pass when there are none."""
        what = "inputs= and targets=" if targets else "inputs="
        if not self.batches:
            raise PruningError(
                f"strategy {self.strategy!r} needs data: pass {what} (or batches=[(x, y), ...])"
            )
        if targets and any(y is None for _, y in self.batches):
            raise PruningError(f"strategy {self.strategy!r} needs targets: pass targets= too")
        return self.batches

    def owner(self, name: str) -> tuple[nn.Module, str]:
        """The module owning parameter `name` and the parameter's local name."""
        if name not in self.owners:
            prefix, _, local = name.rpartition(".")
            self.owners[name] = (self.model.get_submodule(prefix) if prefix else self.model, local)
        return self.owners[name]

    def generator(self, device: torch.device | str = "cpu") -> torch.Generator:
        """A torch.Generator seeded by `seed`."""
        return torch.Generator(device=device).manual_seed(self.seed)


@contextmanager
def _buffers_restored(model: nn.Module) -> Iterator[None]:
    """Scoring passes must not move running statistics (BatchNorm in train mode)."""
    saved = [
        (buf, buf.clone())
        for name, buf in model.named_buffers()
        if not name.endswith(MASK_SUFFIX) and buf is not None
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, value in saved:
                buf.copy_(value)


def magnitude_score(params: dict[str, nn.Parameter], ctx: ScoreContext) -> dict[str, Tensor]:
    """|w|."""
    return {name: p.detach().abs() for name, p in params.items()}


def random_score(params: dict[str, nn.Parameter], ctx: ScoreContext) -> dict[str, Tensor]:
    """Uniform random scores from a generator seeded by ctx.seed (tensors in order)."""
    gen = ctx.generator()
    return {name: torch.rand(p.shape, generator=gen).to(p.device) for name, p in params.items()}


def gradient_score(params: dict[str, nn.Parameter], ctx: ScoreContext) -> dict[str, Tensor]:
    """Sum over the batches of |w * dL/dw|; the model's .grad and requires_grad are restored."""
    batches = ctx.require_batches(targets=True)
    loss_fn = ctx.loss_fn or nn.functional.cross_entropy
    model = ctx.model
    all_params = list(model.parameters())
    saved_grads = [p.grad for p in all_params]
    saved_flags = [p.requires_grad for p in params.values()]
    scores = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in params.items()}
    try:
        with _buffers_restored(model):
            for p in params.values():
                p.requires_grad_(True)
            for x, y in batches:
                for p in all_params:
                    p.grad = None
                loss_fn(model(x), y).backward()
                for name, p in params.items():
                    if p.grad is None:
                        raise PruningError(f"parameter {name!r} got no gradient from the loss")
                    scores[name] += (p.detach() * p.grad).abs().float()
    finally:
        for p, g in zip(all_params, saved_grads):
            p.grad = g
        for p, flag in zip(params.values(), saved_flags):
            p.requires_grad_(flag)
    return scores


def _channel_dim(module: nn.Module, x: Tensor) -> int:
    """Index of the channel dimension of a conv input (batched or not)."""
    return 1 if x.dim() == len(module.kernel_size) + 2 else 0


class _InputStats:
    """Forward pre-hook accumulating the sum of |input| per input feature/channel, and the count."""

    def __init__(self) -> None:
        self.total: Tensor | None = None
        self.count = 0

    def __call__(self, module: nn.Module, args: tuple) -> None:
        x = args[0].detach()
        dim = x.dim() - 1 if isinstance(module, nn.Linear) else _channel_dim(module, x)
        others = [d for d in range(x.dim()) if d != dim]
        s = x.abs().float().sum(dim=others) if others else x.abs().float()
        self.total = s if self.total is None else self.total + s
        self.count += x.numel() // max(x.shape[dim], 1)


def _activation_weighting(module: nn.Module, local: str, mean_abs: Tensor) -> Tensor:
    """The mean input magnitude broadcast to the shape of parameter `local` of `module`."""
    param = module._parameters[local]
    if local == "bias":
        return torch.ones_like(param, dtype=torch.float32)  # a bias multiplies the constant 1
    if isinstance(module, nn.Linear):
        return mean_abs.view(1, -1).expand(param.shape)
    extra = [1] * (param.dim() - 2)
    if module.transposed:  # weight (in, out/groups, *k): dim 0 is the input channel
        return mean_abs.view(-1, 1, *extra).expand(param.shape)
    groups, out, per_group = module.groups, param.shape[0], param.shape[1]
    grouped = mean_abs.view(groups, 1, per_group).expand(groups, out // groups, per_group)
    return grouped.reshape(out, per_group, *extra).expand(param.shape)


def activation_score(params: dict[str, nn.Parameter], ctx: ScoreContext) -> dict[str, Tensor]:
    """|w * a| with a the mean |input| of each input feature (Linear) or channel (Conv)."""
    batches = ctx.require_batches(targets=False)
    stats: dict[int, _InputStats] = {}
    handles = []
    try:
        for name in params:
            module, local = ctx.owner(name)
            if not isinstance(module, (nn.Linear, _ConvNd)) or local not in ("weight", "bias"):
                raise PruningError(
                    f"activation scores need a Linear or Conv weight; {name!r} belongs to "
                    f"{type(module).__name__}"
                )
            if id(module) not in stats:
                stats[id(module)] = _InputStats()
                handles.append(module.register_forward_pre_hook(stats[id(module)]))
        with torch.no_grad(), _buffers_restored(ctx.model):
            for x, _ in batches:
                ctx.model(x)
    finally:
        for handle in handles:
            handle.remove()
    scores = {}
    for name, p in params.items():
        module, local = ctx.owner(name)
        st = stats[id(module)]
        if st.total is None:
            raise PruningError(f"module owning {name!r} was not called by the model's forward")
        weighting = _activation_weighting(module, local, st.total / max(st.count, 1))
        scores[name] = p.detach().abs().float() * weighting.to(p.device)
    return scores
