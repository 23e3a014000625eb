"""Pruning-at-initialization scores (higher = keep): SNIP, GraSP and SynFlow.

SNIP and GraSP read the loss on the given batches; SynFlow reads no data (only the shape of one
example). All three leave the user's model as they found it: weights, `.grad`, `requires_grad`,
buffers and mode. Gradients are taken with `torch.autograd.grad`, so no `.grad` is written.
"""

from __future__ import annotations

import copy
import math
import numbers
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import torch
from torch import Tensor, nn

from ..errors import PruningError
from .scores import ScoreContext, _buffers_restored


@contextmanager
def _requiring_grad(tensors: Sequence[Tensor]) -> Iterator[None]:
    """`requires_grad` on for `tensors` inside, restored after."""
    saved = [t.requires_grad for t in tensors]
    try:
        for t in tensors:
            t.requires_grad_(True)
        yield
    finally:
        for t, flag in zip(tensors, saved):
            t.requires_grad_(flag)


def _grads(loss: Tensor, names: list[str], tensors: list[Tensor], strategy: str,
           create_graph: bool = False) -> list[Tensor]:
    """d loss / d tensors; a tensor the loss does not reach is a PruningError."""
    grads = torch.autograd.grad(loss, tensors, create_graph=create_graph, allow_unused=True)
    for name, g in zip(names, grads):
        if g is None:
            raise PruningError(f"strategy {strategy!r}: parameter {name!r} got no gradient from "
                               "the loss")
    return list(grads)


def _accumulator(p: Tensor) -> Tensor:
    return torch.zeros_like(p, dtype=torch.promote_types(p.dtype, torch.float32))


def snip_score(params: dict[str, nn.Parameter], ctx: ScoreContext) -> dict[str, Tensor]:
    """SNIP (Lee et al. 2019): connection sensitivity |w * dL/dw| of the loss summed over the batches.

    The paper's sensitivity |dL/dc| at c = 1 for a mask c on the weights is |w * dL/dw|, divided by
    the sum over all weights; that division is the same for every weight and changes no ranking,
    so it is left out. The gradients of all batches are summed before the absolute value (the loss
    of the whole data, as in the paper), unlike `global_gradient`, which sums per-batch magnitudes.
    The model runs in its current mode; buffers, `.grad` and `requires_grad` are left as found.
    """
    batches = ctx.require_batches(targets=True)
    loss_fn = ctx.loss_fn or nn.functional.cross_entropy
    names, tensors = list(params), list(params.values())
    total = [_accumulator(p) for p in tensors]
    with _buffers_restored(ctx.model), _requiring_grad(tensors):
        for x, y in batches:
            grads = _grads(loss_fn(ctx.model(x), y), names, tensors, ctx.strategy)
            for acc, g in zip(total, grads):
                acc += g
    return {n: (p.detach() * g).abs().float() for n, p, g in zip(names, tensors, total)}


def _positive(name: str, value: Any, strategy: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(float(value)) or float(value) <= 0:
        raise PruningError(f"strategy {strategy!r}: option {name} must be a finite number > 0, "
                           f"got {value!r}")
    return float(value)


def grasp_score(params: dict[str, nn.Parameter], ctx: ScoreContext,
                temperature: float = 200.0) -> dict[str, Tensor]:
    """GraSP (Wang et al. 2020): w * Hg, with g = dL/dw and H the Hessian of the loss in w.

    The paper removes the weights with the highest -w * Hg (their removal reduces the gradient
    flow least), so the kept ones have the highest w * Hg: the score is signed. g is summed over
    all batches (no graph kept); Hg is the gradient of (g . dL_b/dw) summed over the batches b.
    The loss is taken on the outputs divided by `temperature`: the authors' released code
    (alecwangcq/GraSP, pruner/GraSP.py, `GraSP(..., T=200)`, `net.forward(inputs) / T`) uses 200,
    the default here. Unlike that code, the classifier is not re-initialized before scoring and
    the batches are the ones given (not 10 or 25 examples per class). g and H are over the pruned
    tensors (all Conv/Linear weights in the authors' code). The model runs in its current mode;
    buffers, `.grad` and `requires_grad` are left as found.
    """
    temperature = _positive("temperature", temperature, ctx.strategy)
    batches = ctx.require_batches(targets=True)
    loss_fn = ctx.loss_fn or nn.functional.cross_entropy
    model = ctx.model
    names, tensors = list(params), list(params.values())
    g_sum = [_accumulator(p) for p in tensors]
    hg_sum = [_accumulator(p) for p in tensors]
    with _buffers_restored(model), _requiring_grad(tensors):
        for x, y in batches:
            grads = _grads(loss_fn(model(x) / temperature, y), names, tensors, ctx.strategy)
            for acc, g in zip(g_sum, grads):
                acc += g
        for x, y in batches:
            grads = _grads(loss_fn(model(x) / temperature, y), names, tensors, ctx.strategy,
                           create_graph=True)
            z = sum((g_fixed.to(g.dtype) * g).sum() for g_fixed, g in zip(g_sum, grads))
            if not z.requires_grad:  # the gradient does not depend on the weights: Hg = 0
                continue
            hg = torch.autograd.grad(z, tensors, allow_unused=True)
            for acc, h in zip(hg_sum, hg):
                if h is not None:
                    acc += h
    return {n: (p.detach() * h).float() for n, p, h in zip(names, tensors, hg_sum)}


def _sum_outputs(out: Any) -> Tensor:
    """The sum of every entry of the model's output (a tensor, or tensors in tuples/lists/dicts)."""
    if isinstance(out, Tensor):
        return out.sum()
    parts = out.values() if isinstance(out, dict) else out if isinstance(out, (tuple, list)) else []
    sums = [_sum_outputs(p) for p in parts if isinstance(p, (Tensor, tuple, list, dict))]
    if not sums:
        raise PruningError(f"synflow needs a model whose output holds tensors, got "
                           f"{type(out).__name__}")
    return torch.stack(sums).sum()


def _linearized(model: nn.Module, names: list[str], strategy: str) -> tuple[nn.Module, list[Tensor]]:
    """A float64 copy of `model` in eval mode with |every parameter| and |every float buffer|; the
    copies of the named parameters (the only ones requiring grad)."""
    try:
        net = copy.deepcopy(model)
    except Exception as exc:  # a module holding something that cannot be copied
        raise PruningError(f"strategy {strategy!r} scores a copy of the model, and this one cannot "
                           f"be copied: {exc}") from None
    net.eval().double()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
            p.requires_grad_(False)
        for b in net.buffers():
            if b.is_floating_point():
                b.abs_()
    tensors = [net.get_parameter(n) for n in names]
    for t in tensors:
        t.requires_grad_(True)
    return net, tensors


def _flow(net: nn.Module, tensors: list[Tensor], ones: Tensor, strategy: str) -> list[Tensor]:
    """|w * dR/dw| for R = sum(net(ones)) (float64)."""
    r = _sum_outputs(net(ones))
    if not torch.isfinite(r):
        raise PruningError(f"strategy {strategy!r}: the synaptic flow R overflowed float64 "
                           f"({r.item()})")
    if not r.requires_grad:
        return [torch.zeros_like(t) for t in tensors]
    grads = torch.autograd.grad(r, tensors, allow_unused=True)
    return [torch.zeros_like(t) if g is None else (t.detach() * g).abs_()
            for t, g in zip(tensors, grads)]


def _float32_range(scores: list[Tensor]) -> list[Tensor]:
    """The scores as float32, multiplied by a power of two (exact, order-kept) when their largest
    would otherwise overflow float32 or leave its normal range."""
    maxima = [s.max() for s in scores if s.numel()]
    top = float(torch.stack(maxima).max()) if maxima else 0.0
    if top > 0:
        _, exponent = math.frexp(top)
        if not -100 <= exponent <= 100:
            return [torch.ldexp(s, torch.tensor(-exponent, dtype=s.dtype)).float() for s in scores]
    return [s.float() for s in scores]


def synflow_score(params: dict[str, nn.Parameter], ctx: ScoreContext,
                  rounds: int = 100) -> dict[str, Tensor]:
    """SynFlow (Tanaka et al. 2020): |w * dR/dw|, R = sum of the outputs of the network with |θ| on
    an input of ones, recomputed over `rounds` rounds of pruning (exponential schedule).

    Data-free: only the shape of one example of the first batch is used. The network is a deep copy
    of the model in float64 and eval mode, every parameter and every floating-point buffer (batch
    norm running statistics too) replaced by its absolute value, as the authors' code does
    (ganguli-lab/Synaptic-Flow: `linearize` takes `abs_()` of every `state_dict()` entry, and
    `prune_loop` calls `model.eval()`); their code keeps float32 (`model.double()` is commented
    out), float64 here keeps deep networks from overflowing. Round k of n masks the copy to density
    (keep / alive) ** (k / n) of what is alive when prune() is called, with prune()'s allocation
    (`ctx.allocate`), and the next round scores the masked copy. The last round's scores come back
    with the entries removed in the earlier rounds at -inf, so prune()'s allocation keeps exactly
    the last round's choice. Scores are float32, scaled by a power of two when float32 could not
    hold them. The user's model is not touched.
    """
    if isinstance(rounds, bool) or not isinstance(rounds, numbers.Integral) or rounds < 1:
        raise PruningError(f"strategy {ctx.strategy!r}: option rounds must be an integer >= 1, "
                           f"got {rounds!r}")
    rounds = int(rounds)
    if not ctx.batches:
        raise PruningError(f"strategy {ctx.strategy!r} needs one example batch for the input shape: "
                           "pass inputs= (or batches=); the data values are not used")
    first = ctx.batches[0][0]
    if not isinstance(first, Tensor) or first.dim() < 1:
        raise PruningError(f"strategy {ctx.strategy!r} needs a batched tensor input for its shape, "
                           f"got {type(first).__name__}")
    if rounds > 1 and (ctx.keep is None or ctx.allocate is None):
        raise PruningError(f"strategy {ctx.strategy!r} with rounds > 1 prunes between rounds with "
                           "prune()'s kept count and allocation (ctx.keep, ctx.allocate): call it "
                           "through prune(), or use rounds=1")
    dtype = torch.float64 if first.is_floating_point() else first.dtype
    ones = torch.ones((1, *first.shape[1:]), dtype=dtype, device=first.device)
    names = list(params)
    net, tensors = _linearized(ctx.model, names, ctx.strategy)
    alive = [ctx.alive.get(n) for n in names]
    alive_count = sum(t.numel() if a is None else int(a.count_nonzero())
                      for t, a in zip(tensors, alive))
    keep = alive_count if ctx.keep is None else ctx.keep
    removed: list[Tensor | None] = [None] * len(names)  # removed by the rounds so far
    previous = alive_count
    for k in range(1, rounds + 1):
        scores = _float32_range(_flow(net, tensors, ones, ctx.strategy))
        for i, gone in enumerate(removed):
            if gone is not None:
                scores[i].masked_fill_(gone, -math.inf)
        if k == rounds:
            break
        density = (keep / alive_count) ** (k / rounds) if alive_count else 0.0
        target = min(previous, max(keep, round(alive_count * density)))
        previous = target
        masks = ctx.allocate(dict(zip(names, scores)), target)  # type: ignore[misc]
        with torch.no_grad():
            for i, (name, t) in enumerate(zip(names, tensors)):
                drop = ~masks[name].to(device=t.device, dtype=torch.bool)
                t.masked_fill_(drop, 0.0)
                removed[i] = drop if removed[i] is None else removed[i] | drop
    return dict(zip(names, scores))
