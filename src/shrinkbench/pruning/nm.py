"""N:M semi-structured sparsity: in every group of M consecutive input entries, at most N are kept.

The groups run along the input dimension, dim 1 of a weight: for a Linear weight (out, in), each
row's inputs 0..M-1, M..2M-1, ...; for a Conv weight (out, in/groups, *kernel), M consecutive input
channels at each (out, kernel position). A tensor whose input dimension is not a multiple of M,
and a tensor with fewer than two dimensions (a bias), is refused with a PruningError naming it:
N:M is a property of every group of a tensor, so it is never silently left dense. Each group keeps
its N highest scores (ties to the lower index); entries already pruned stay pruned and count as
pruned inside their group, so a group with fewer than N alive entries keeps what is alive.

The names "2:4", "4:8", any "N:M" with 1 <= N < M, are answered by a resolver of `ALLOCATIONS`, so
`ALLOCATIONS.canonical("2:4")` and `prune(..., allocation="2:4")` work without registering each.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Mapping

import torch
from torch import Tensor

from ..errors import PruningError, UnknownNameError
from .allocation import ALLOCATIONS, Allocation, score_keys, top_per_row

_NM = re.compile(r"\s*(\d+)\s*:\s*(\d+)\s*")


def parse_nm(name: object) -> tuple[int, int] | None:
    """(N, M) of an "N:M" name, None for a name of another shape; 1 <= N < M or UnknownNameError."""
    match = _NM.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        return None
    n, m = int(match.group(1)), int(match.group(2))
    if not 1 <= n < m:
        raise UnknownNameError(f"allocation {name!r} is not a valid N:M pattern: it needs "
                               f"1 <= N < M (e.g. 2:4)")
    return n, m


def _grouped(name: str, t: Tensor, n: int, m: int) -> Tensor:
    """`t` as rows of M consecutive input entries (dim 1 moved last), or a PruningError."""
    if t.dim() < 2:
        raise PruningError(f"allocation {n}:{m} groups the input dimension (dim 1) of weights; "
                           f"{name!r} has shape {tuple(t.shape)}: prune weights only "
                           "(include_bias=False) or ignore= it")
    if t.shape[1] % m:
        raise PruningError(f"allocation {n}:{m} needs the input dimension of {name!r} (dim 1 of "
                           f"shape {tuple(t.shape)}) to be a multiple of {m}; ignore= it or "
                           "choose another M")
    return t.movedim(1, -1).reshape(-1, m)


def _ungrouped(groups: Tensor, like: Tensor) -> Tensor:
    """The inverse of `_grouped`: back to the shape of `like`."""
    moved = like.movedim(1, -1).shape
    return groups.reshape(moved).movedim(-1, 1)


def nm_keep(tensors: Mapping[str, Tensor], alive: Mapping[str, Tensor | None], n: int,
            m: int) -> int:
    """Entries N:M keeps in `tensors` (any per-tensor values of the right shapes): N per group,
    or what is alive in a group that has fewer; shapes that cannot be grouped are refused."""
    total = 0
    for name, t in tensors.items():
        groups = _grouped(name, t, n, m)
        mask = alive.get(name)
        if mask is None:
            total += groups.shape[0] * n
        else:
            live = _grouped(name, mask.to(torch.bool), n, m).sum(1, dtype=torch.int64)
            total += int(live.clamp(max=n).sum())
    return total


def nm_masks(scores: Mapping[str, Tensor], alive: Mapping[str, Tensor | None], n: int,
             m: int) -> dict[str, Tensor]:
    """Bool keep-masks keeping the N highest scores of every group of M (ties to the lower index),
    never an entry that is not alive."""
    out = {}
    for name, score in scores.items():
        live = alive.get(name)
        keys = score_keys(name, score, live).view(score.shape)
        groups = _grouped(name, keys, n, m)
        counts = torch.full((groups.shape[0],), n, dtype=torch.int64)
        keep = _ungrouped(top_per_row(groups, counts), score)
        if live is not None:  # a group with fewer than N alive entries keeps only those
            keep = keep & live.to(device=keep.device, dtype=torch.bool)
        out[name] = keep.contiguous()
    return out


def nm_allocation(scores: Mapping[str, Tensor], alive: Mapping[str, Tensor | None], keep: int,
                  *, n: int, m: int) -> dict[str, Tensor]:
    """The N:M allocation; `keep` must be the count the pattern gives (see `nm_keep`)."""
    masks = nm_masks(scores, alive, n, m)
    kept = sum(int(k.count_nonzero()) for k in masks.values())
    if kept != keep:
        raise PruningError(f"allocation {n}:{m} keeps exactly {kept} entries of these tensors "
                           f"(the pattern fixes the count), not {keep}")
    return masks


def _resolve(name: str) -> tuple[str, Allocation] | None:
    nm = parse_nm(name)
    if nm is None:
        return None
    n, m = nm
    return f"{n}:{m}", partial(nm_allocation, n=n, m=m)


ALLOCATIONS.add_resolver("N:M", _resolve)
