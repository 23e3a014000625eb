"""Channel importance (higher = keep): L1/L2 norm of the filters, BN scale, first-order Taylor, random.

A score function takes the dependency graph and a ScoreContext and returns, per group index, one
score per channel (class) of the group. Groups it leaves out are not pruned (the BN-scale score
leaves out groups without a batch norm, as network slimming does).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from ...errors import PruningError
from ..scores import ScoreContext, _buffers_restored
from .graph import DependencyGraph, Group

ChannelScore = Callable[..., dict[int, Tensor]]


def _param(model: nn.Module, name: str) -> Tensor:
    return model.get_parameter(name).detach()


def _per_class(graph: DependencyGraph, group: Group, rows: dict[str, Tensor],
               params: set[str] | None = None) -> Tensor:
    """Sum of `rows[param][index]` over the dim-0 places of each class of the group."""
    out = torch.zeros(group.size, dtype=torch.float64)
    positions: dict[str, list[tuple[int, Tensor]]] = {}
    for i, cls in enumerate(group.classes):
        for param, dim, index in graph.classes[cls]:
            if dim == 0 and param in rows and (params is None or param in params):
                positions.setdefault(param, []).append((i, index))
    for param, found in positions.items():
        index = torch.cat([idx for _, idx in found])
        owner = torch.tensor([i for i, _ in found]).repeat_interleave(
            torch.tensor([len(idx) for _, idx in found]))
        values = rows[param].detach().double().cpu().index_select(0, index)
        out.index_add_(0, owner, values)
    return out


def _normalized(scores: dict[int, Tensor], normalize: bool) -> dict[int, Tensor]:
    if not normalize:
        return scores
    out = {}
    for g, s in scores.items():
        mean = float(s.mean()) if s.numel() else 0.0
        out[g] = s / mean if mean > 0 else s
    return out


def _norm_score(graph: DependencyGraph, ctx: ScoreContext, p: int, normalize: bool) -> dict[int, Tensor]:
    rows = {}
    for name in {q for g in graph.groups for q in g.producer_params}:
        w = _param(ctx.model, name).float()
        flat = w.reshape(w.shape[0], -1)
        rows[name] = flat.abs().sum(1) if p == 1 else flat.pow(2).sum(1)
    scores = {}
    for g in graph.groups:
        s = _per_class(graph, g, rows, set(g.producer_params))
        scores[g.index] = s if p == 1 else s.sqrt()
    return _normalized(scores, normalize)


def channel_l1_score(graph: DependencyGraph, ctx: ScoreContext, normalize: bool = True) -> dict[int, Tensor]:
    """L1 norm of each channel's filters (Li et al. 2017), summed over coupled producers;
    `normalize`: each group's scores divided by their mean, so that global allocation compares
    layers of different fan-in fairly."""
    return _norm_score(graph, ctx, 1, normalize)


def channel_l2_score(graph: DependencyGraph, ctx: ScoreContext, normalize: bool = True) -> dict[int, Tensor]:
    """L2 norm of each channel's filters, summed in squares over coupled producers."""
    return _norm_score(graph, ctx, 2, normalize)


def bn_scale_score(graph: DependencyGraph, ctx: ScoreContext, normalize: bool = False) -> dict[int, Tensor]:
    """|gamma| of the channel's batch norm(s) (network slimming, Liu et al. 2017); groups without
    a batch norm are left unpruned."""
    norms = {}
    for g in graph.groups:
        for param, dim in g.keys:
            call = graph.modules.get(param.rpartition(".")[0])
            if call is not None and isinstance(call.module, nn.modules.batchnorm._BatchNorm) and \
                    param.endswith(".weight"):
                norms[param] = _param(ctx.model, param).abs().float()
    scores = {}
    for g in graph.groups:
        names = {p for p, _ in g.keys if p in norms}
        if names:
            scores[g.index] = _per_class(graph, g, norms, names)
    if not scores:
        raise PruningError("the bn_scale score needs batch-norm layers after the pruned channels; "
                           "this model has none (use an L1 or Taylor score)")
    return _normalized(scores, normalize)


def channel_taylor_score(graph: DependencyGraph, ctx: ScoreContext, normalize: bool = True) -> dict[int, Tensor]:
    """First-order Taylor (Molchanov et al. 2017): per example, |mean over positions of
    activation x gradient| at each producing module's output channel, summed over the examples
    of the score batches and over coupled producers."""
    batches = ctx.require_batches(targets=True)
    loss_fn = ctx.loss_fn or nn.CrossEntropyLoss()
    modules = sorted({p for g in graph.groups for p in g.producers
                      if isinstance(ctx.model.get_submodule(p), (nn.Linear, nn.modules.conv._ConvNd))})
    totals = {m: None for m in modules}
    outputs: dict[str, Tensor] = {}

    def hook(name: str):
        def capture(module: nn.Module, args: object, out: Tensor) -> Tensor:
            out = out.clone()  # an in-place activation after this module must not overwrite it
            outputs[name] = out
            return out
        return capture

    model = ctx.model
    handles = [model.get_submodule(m).register_forward_hook(hook(m)) for m in modules]
    try:
        with _buffers_restored(model), torch.enable_grad():
            for x, y in batches:
                outputs.clear()
                loss = loss_fn(model(x), y)
                names = [m for m in modules if m in outputs]
                grads = torch.autograd.grad(loss, [outputs[m] for m in names], allow_unused=True)
                for m, g in zip(names, grads):
                    if g is None:
                        continue
                    a = outputs[m].detach()
                    prod = (a * g).float()
                    if isinstance(model.get_submodule(m), nn.Linear):
                        prod = prod.reshape(prod.shape[0], -1, prod.shape[-1]).mean(1)
                    else:
                        prod = prod.reshape(prod.shape[0], prod.shape[1], -1).mean(2)
                    per_channel = prod.abs().sum(0).double().cpu()
                    totals[m] = per_channel if totals[m] is None else totals[m] + per_channel
    finally:
        for h in handles:
            h.remove()
    rows = {f"{m}.weight": t for m, t in totals.items() if t is not None}
    # groups made only by other layers (attention heads) have no activation here: not pruned
    scores = {g.index: _per_class(graph, g, rows, set(g.producer_params)) for g in graph.groups
              if set(g.producer_params) & set(rows)}
    return _normalized(scores, normalize)


def channel_random_score(graph: DependencyGraph, ctx: ScoreContext) -> dict[int, Tensor]:
    """Uniform random channel scores from the seed (the structured random baseline)."""
    gen = ctx.generator()
    return {g.index: torch.rand(g.size, generator=gen, dtype=torch.float64) for g in graph.groups}
