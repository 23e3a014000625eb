"""Turning scores into keep-masks with an exact kept count: global and layerwise allocation.

Selection of the k highest scores is exact and avoids a full sort: float32 scores are mapped to
int32 keys in the same order, a histogram of the high 16 bits finds the bucket holding the k-th
key, a histogram of the low 16 bits of that bucket's few candidates gives the key itself, and ties
on that boundary key are kept in flat-index order (tensors in the given order, then row-major).
"""

from __future__ import annotations

from typing import Callable, Mapping, Optional

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


def layer_quotas(sizes: list[int], caps: list[int], keep: int) -> list[int]:
    """Split `keep` in proportion to `sizes` (largest remainder), none above its cap."""
    quotas = [0] * len(sizes)
    free = [i for i, s in enumerate(sizes) if s > 0]
    remaining = keep
    while free:
        pool = sum(sizes[i] for i in free)
        share = {i: remaining * sizes[i] // pool for i in free}
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


@ALLOCATIONS.register("layerwise", aliases=["layer"])
def layerwise_allocation(
    scores: Mapping[str, Tensor], alive: Mapping[str, Tensor | None], keep: int
) -> dict[str, Tensor]:
    """Keep the same fraction of every tensor (to one element), the highest scores in each."""
    names = list(scores)
    sizes = [scores[n].numel() for n in names]
    caps = [
        size if alive.get(n) is None else int(alive[n].count_nonzero())
        for n, size in zip(names, sizes)
    ]
    quotas = layer_quotas(sizes, caps, keep)
    flats = [
        select_top([score_keys(n, scores[n], alive.get(n))], q)[0] for n, q in zip(names, quotas)
    ]
    return _reshape(names, flats, scores)
