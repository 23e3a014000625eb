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

from ..errors import PruningError, UnknownNameError
from ..registry import Registry

# allocation(scores, alive, keep) -> name -> bool keep-mask (same shape as the score), keeping
# exactly `keep` entries in all, never one whose `alive` entry is False.
Allocation = Callable[
    [Mapping[str, Tensor], Mapping[str, Optional[Tensor]], int], dict[str, Tensor]
]
# A resolver answers a name that is a pattern rather than a registered word ("2:4"): the canonical
# name and the allocation, or None when the name is not of its shape.
Resolver = Callable[[str], Optional[tuple[str, Allocation]]]


class AllocationRegistry(Registry[Allocation]):
    """The allocation registry: registered names, plus pattern names (N:M) answered by resolvers."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self._resolvers: list[tuple[str, Resolver]] = []

    def add_resolver(self, shape: str, resolver: Resolver) -> None:
        """Answer names of `shape` (shown in errors, e.g. "N:M") with `resolver`."""
        self._resolvers.append((shape, resolver))

    def _resolved(self, name: str) -> tuple[str, Allocation] | None:
        if not isinstance(name, str) or name in self:
            return None
        for _, resolver in self._resolvers:
            hit = resolver(name)
            if hit is not None:
                return hit
        return None

    def patterns(self) -> list[str]:
        """The shapes of the pattern names the resolvers accept (e.g. "N:M")."""
        return [shape for shape, _ in self._resolvers]

    def canonical(self, name: str) -> str:
        """The canonical name of a registered name, alias or pattern name ("2:4")."""
        hit = self._resolved(name)
        if hit is not None:
            return hit[0]
        try:
            return super().canonical(name)
        except UnknownNameError as err:
            shapes = ", ".join(f"{s} (e.g. 2:4)" if s == "N:M" else s for s in self.patterns())
            raise UnknownNameError(f"{err}{', ' + shapes if shapes else ''}") from None

    def get(self, name: str) -> Allocation:
        """The allocation of a registered name, alias or pattern name."""
        hit = self._resolved(name)
        return hit[1] if hit is not None else super().get(name)


ALLOCATIONS = AllocationRegistry("allocation")

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


def row_quotas(sizes: Tensor, caps: Tensor, keep: int) -> Tensor:
    """`layer_quotas` for many integer sizes at once (int64 tensors): `keep` split in proportion
    to `sizes` by largest remainder (ties to the lower index), none above its cap."""
    sizes, caps = sizes.to(torch.int64), caps.to(torch.int64)
    if sizes.numel() and keep * int(sizes.max()) >= 1 << 62:  # int64 products would overflow
        return torch.tensor(layer_quotas(sizes.tolist(), caps.tolist(), keep), dtype=torch.int64)
    quotas = torch.zeros_like(sizes)
    free = sizes > 0
    remaining = keep
    while bool(free.any()):
        index = free.nonzero().flatten()
        size = sizes[index]
        product = remaining * size
        pool = int(size.sum())
        share = product // pool
        extra = remaining - int(share.sum())
        if extra:
            order = torch.sort(product % pool, descending=True, stable=True).indices
            share[order[:extra]] += 1
        cap = caps[index]
        over = share > cap
        if not bool(over.any()):
            quotas[index] = share
            break
        capped = index[over]
        quotas[capped] = caps[capped]
        remaining -= int(caps[capped].sum())
        free[capped] = False
    return quotas


def top_per_row(keys: Tensor, counts: Tensor) -> Tensor:
    """Bool mask over the 2-D int32 `keys` keeping the `counts[r]` largest of each row r, ties
    in column order."""
    if keys.numel() == 0:
        return torch.zeros(keys.shape, dtype=torch.bool, device=keys.device)
    order = torch.sort(keys, dim=1, descending=True, stable=True).indices
    ranks = torch.arange(keys.shape[1], device=keys.device)
    chosen = ranks.unsqueeze(0) < counts.to(keys.device).view(-1, 1)
    return torch.zeros(keys.shape, dtype=torch.bool, device=keys.device).scatter_(1, order, chosen)


def as_rows(t: Tensor) -> Tensor:
    """`t` as a matrix of its dim-0 slices (a 1-D or 0-D tensor is one row)."""
    return t.reshape(t.shape[0], -1) if t.dim() >= 2 else t.reshape(1, -1)


@ALLOCATIONS.register("per_row", aliases=["row"])
def per_row_allocation(
    scores: Mapping[str, Tensor], alive: Mapping[str, Tensor | None], keep: int
) -> dict[str, Tensor]:
    """Keep the same fraction of every output row (dim-0 slice: a Linear's row, a Conv's filter;
    a 1-D tensor is one row), to one element, the highest scores in each row (Wanda's groups)."""
    names = list(scores)
    rows = [as_rows(scores[n]) for n in names]
    sizes = torch.cat([torch.full((r.shape[0],), r.shape[1], dtype=torch.int64) for r in rows])
    caps = torch.cat([
        torch.full((r.shape[0],), r.shape[1], dtype=torch.int64) if alive.get(n) is None
        else as_rows(alive[n]).to(torch.bool).sum(1, dtype=torch.int64).cpu()
        for n, r in zip(names, rows)
    ])
    quotas = row_quotas(sizes, caps, keep)
    if int(quotas.sum()) != keep:
        raise PruningError(f"per_row allocation cannot keep {keep} entries: "
                           f"{int(caps.sum())} are alive")
    out, start = {}, 0
    for n, r in zip(names, rows):
        keys = score_keys(n, r, alive.get(n)).view(r.shape)
        count = quotas[start:start + r.shape[0]]
        start += r.shape[0]
        out[n] = top_per_row(keys, count).view(scores[n].shape)
    return out


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
