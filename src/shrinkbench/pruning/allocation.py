"""Turning scores into keep-masks with an exact kept count: global, layerwise (uniform), ERK, and
layerwise with relative per-tensor pruning rates.

Selection of the k highest scores is exact and avoids a full sort: float32 scores are mapped to
int32 keys in the same order, a histogram of the high 16 bits finds the bucket holding the k-th
key, a histogram of the low 16 bits of that bucket's few candidates gives the key itself, and ties
on that boundary key are kept in flat-index order (tensors in the given order, then row-major).
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction
from typing import Callable, Mapping, Optional, Sequence

import torch
from torch import Tensor

from ..errors import PruningError
from ..registry import Registry

# allocation(scores, alive, keep) -> name -> bool keep-mask (same shape as the score), keeping
# exactly `keep` entries in all, never one whose `alive` entry is False.
Allocation = Callable[
    [Mapping[str, Tensor], Mapping[str, Optional[Tensor]], int], dict[str, Tensor]
]
ALLOCATIONS: Registry[Allocation] = Registry("allocation")

_DEAD = torch.iinfo(torch.int32).min
_LOWEST = -1 - 0x7F800000  # key of -inf
_HIGHEST = 0x7F800000  # key of +inf
_BINS = 1 << 16
_SMALL = 1 << 14  # up to this many keys, select_top sorts


def score_keys(name: str, score: Tensor, alive: Tensor | None) -> Tensor:
    """Flat int32 keys ordered like `score` (as float32); entries not alive get the lowest key."""
    flat = score.detach().reshape(-1).to(torch.float32)
    keys = flat.view(torch.int32)
    if keys.numel() == 0:
        return keys
    lo, hi = torch.aminmax(keys)
    if int(lo) < 0:  # negative scores or -0.0: flip the magnitude bits of negative floats
        flat = flat + 0.0  # -0.0 -> +0.0, so that the two zeros tie
        keys = flat.view(torch.int32)
        keys = keys ^ ((keys >> 31) & 0x7FFFFFFF)
        lo, hi = torch.aminmax(keys)
    if int(lo) < _LOWEST or int(hi) > _HIGHEST:
        raise PruningError(f"the scores of {name!r} contain NaN")
    if alive is not None:
        keys = keys.masked_fill(~alive.reshape(-1).to(torch.bool), _DEAD)
    return keys


def select_top(keys: list[Tensor], k: int) -> list[Tensor]:
    """Bool masks over the flat `keys` keeping exactly the `k` largest, ties in flat order."""
    total = sum(t.numel() for t in keys)
    if k <= 0 or total == 0:
        return [torch.zeros(t.numel(), dtype=torch.bool, device=t.device) for t in keys]
    if k >= total:
        return [torch.ones(t.numel(), dtype=torch.bool, device=t.device) for t in keys]
    device = keys[0].device
    if total <= _SMALL:  # a stable sort is cheaper than two 65536-bin histograms here
        flat = torch.cat(keys) if len(keys) > 1 else keys[0]
        order = torch.sort(flat, descending=True, stable=True).indices
        keep = torch.zeros(total, dtype=torch.bool, device=device)
        keep[order[:k]] = True
        return list(keep.split([t.numel() for t in keys]))
    # Keys are int32; shifting the non-negative ones needs no offset to be valid bincount input.
    offset = 0 if all(int(t.min()) >= 0 for t in keys if t.numel()) else _BINS // 2
    hist = torch.zeros(_BINS, dtype=torch.int64, device=device)
    highs = []
    for t in keys:
        high = t >> 16
        if offset:
            high.add_(offset)
        highs.append(high)
        hist += torch.bincount(high, minlength=_BINS)
    # Counts from the highest bucket down; the boundary bucket is where they first reach k.
    from_top = hist.flip(0).cumsum(0)
    j = int(torch.searchsorted(from_top, torch.tensor([k], device=device)).item())
    bucket = _BINS - 1 - j
    above = int(from_top[j]) - int(hist[bucket])
    candidates = [t[high == bucket] for t, high in zip(keys, highs)]
    del highs
    low_hist = torch.zeros(_BINS, dtype=torch.int64, device=device)
    for c in candidates:
        low_hist += torch.bincount(c & 0xFFFF, minlength=_BINS)
    low_top = low_hist.flip(0).cumsum(0)
    i = int(torch.searchsorted(low_top, torch.tensor([k - above], device=device)).item())
    low = _BINS - 1 - i
    threshold = ((bucket - offset) << 16) | low
    ties_needed = k - above - (int(low_top[i]) - int(low_hist[low]))
    masks = []
    for t, c in zip(keys, candidates):
        keep = t > threshold
        ties = int((c == threshold).count_nonzero())
        if ties and ties_needed:
            if ties <= ties_needed:
                keep |= t == threshold
            else:
                keep[(t == threshold).nonzero().flatten()[:ties_needed]] = True
            ties_needed -= min(ties, ties_needed)
        masks.append(keep)
    return masks


def _reshape(names: list[str], flats: list[Tensor], scores: Mapping[str, Tensor]) -> dict:
    return {n: f.view(scores[n].shape) for n, f in zip(names, flats)}


@ALLOCATIONS.register("global")
def global_allocation(
    scores: Mapping[str, Tensor], alive: Mapping[str, Tensor | None], keep: int
) -> dict[str, Tensor]:
    """Keep the `keep` highest scores across all tensors (one threshold)."""
    names = list(scores)
    keys = [score_keys(n, scores[n], alive.get(n)) for n in names]
    return _reshape(names, select_top(keys, keep), scores)


def layer_quotas(sizes: Sequence[int | Fraction], caps: list[int], keep: int) -> list[int]:
    """Split `keep` in proportion to `sizes` (largest remainder), none above its cap.

    `sizes` are exact numbers (ints or Fractions); a share over its cap is set to the cap and the
    rest re-split among the others. The quotas sum to `keep` unless the caps of the tensors with a
    positive size hold less than that."""
    quotas = [0] * len(sizes)
    free = [i for i, s in enumerate(sizes) if s > 0]
    remaining = keep
    while free:
        pool = sum(sizes[i] for i in free)
        share = {i: int(remaining * sizes[i] // pool) for i in free}
        extra = remaining - sum(share.values())
        by_remainder = sorted(free, key=lambda i: (-(remaining * sizes[i] % pool), i))
        for i in by_remainder[:extra]:
            share[i] += 1
        over = [i for i in free if share[i] > caps[i]]
        if not over:
            for i in free:
                quotas[i] = share[i]
            break
        for i in over:
            quotas[i] = caps[i]
            remaining -= caps[i]
            free.remove(i)
    return quotas


def _alive_counts(names: list[str], scores: Mapping[str, Tensor],
                  alive: Mapping[str, Tensor | None]) -> list[int]:
    return [
        scores[n].numel() if alive.get(n) is None else int(alive[n].count_nonzero()) for n in names
    ]


def _top_each(names: list[str], scores: Mapping[str, Tensor], alive: Mapping[str, Tensor | None],
              quotas: list[int]) -> dict[str, Tensor]:
    """Keep the `quotas[i]` highest scores of tensor i (entries not alive never)."""
    flats = [
        select_top([score_keys(n, scores[n], alive.get(n))], q)[0] for n, q in zip(names, quotas)
    ]
    return _reshape(names, flats, scores)


@ALLOCATIONS.register("layerwise", aliases=["layer", "uniform"])
def layerwise_allocation(
    scores: Mapping[str, Tensor], alive: Mapping[str, Tensor | None], keep: int
) -> dict[str, Tensor]:
    """Keep the same fraction of every tensor (to one element), the highest scores in each."""
    names = list(scores)
    sizes = [scores[n].numel() for n in names]
    quotas = layer_quotas(sizes, _alive_counts(names, scores, alive), keep)
    return _top_each(names, scores, alive, quotas)


def erk_weight(shape: Sequence[int]) -> int:
    """Kept entries of a tensor of `shape` under ERK, up to the common factor: its density
    (sum of dims) / (product of dims) times its size, i.e. the sum of its dims."""
    return sum(shape) if len(shape) else 1


@ALLOCATIONS.register("erk")
def erk_allocation(
    scores: Mapping[str, Tensor], alive: Mapping[str, Tensor | None], keep: int
) -> dict[str, Tensor]:
    """Erdős–Rényi-Kernel (Evci et al. 2020): density of a tensor proportional to (sum of its dims)
    / (product of its dims), one factor for all, tensors capped at what is alive."""
    names = list(scores)
    caps = _alive_counts(names, scores, alive)
    weights = [erk_weight(tuple(scores[n].shape)) for n in names]
    quotas = layer_quotas(weights, caps, keep)
    if sum(quotas) != keep:
        raise PruningError(f"erk allocation cannot keep {keep} entries: {sum(caps)} are alive")
    return _top_each(names, scores, alive, quotas)


def checked_rates(rates: Mapping[str, float], names: Sequence[str]) -> dict[str, Fraction]:
    """The rates as exact fractions; unknown names, non-numbers, negative or non-finite rates are
    a PruningError."""
    known = set(names)
    out: dict[str, Fraction] = {}
    for name, rate in rates.items():
        if name not in known:
            shown = ", ".join(list(names)[:8]) + (", ..." if len(names) > 8 else "")
            raise PruningError(f"layer_rates names {name!r}, which is not a pruned tensor; "
                               f"pruned: {shown or 'none'}")
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
            raise PruningError(f"layer_rates[{name!r}] must be a number >= 0, got {rate!r}")
        value = float(rate)
        if not math.isfinite(value) or value < 0:
            raise PruningError(f"layer_rates[{name!r}] must be a finite number >= 0, got {rate!r}")
        out[name] = Fraction(value)
    return out


def rated_layerwise_allocation(
    scores: Mapping[str, Tensor],
    alive: Mapping[str, Tensor | None],
    keep: int,
    rates: Mapping[str, float],
) -> dict[str, Tensor]:
    """Layerwise allocation with relative rates: tensor l loses f * rates[l] * (its alive entries)
    (rate 1 when not named), f common and solved so that exactly `keep` entries stay."""
    names = list(scores)
    exact = checked_rates(rates, names)
    caps = _alive_counts(names, scores, alive)
    remove = sum(caps) - keep
    if remove < 0:
        raise PruningError(f"cannot keep {keep} entries: only {sum(caps)} are alive")
    weights = [exact.get(n, Fraction(1)) * c for n, c in zip(names, caps)]
    removed = layer_quotas(weights, caps, remove)
    if sum(removed) != remove:
        rated = sum(c for w, c in zip(weights, caps) if w > 0)
        raise PruningError(f"layer_rates leave {rated} alive entries in tensors with a positive "
                           f"rate, fewer than the {remove} that must go")
    quotas = [c - r for c, r in zip(caps, removed)]
    return _top_each(names, scores, alive, quotas)
