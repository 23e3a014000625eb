"""Parameter counts, compression ratio and model size (dense, and sparse as values plus a bitmask)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import nn

from shrinkbench.pruning.masks import masked_parameters


class ParamCount(NamedTuple):
    """Parameter entries of a model: all, those kept by the masks, those whose value is nonzero."""

    total: int
    nonzero: int
    nonzero_values: int


class SizeReport(NamedTuple):
    """Bytes to store a model's parameters densely, and sparsely (kept values plus a 1-bit mask)."""

    dense_bytes: int
    sparse_bytes: int


def _own_parameters(model: nn.Module) -> Iterator[tuple[nn.Parameter, torch.Tensor | None]]:
    """Yield (parameter, its mask or None) once per distinct parameter: a shared (tied) parameter is
    counted once, with the mask of whichever module holds one for it."""
    masks = {id(module._parameters[local]): mask for _, module, local, mask in masked_parameters(model)}
    seen: set[int] = set()
    for module in model.modules(remove_duplicate=False):
        for param in module._parameters.values():
            if param is not None and id(param) not in seen:
                seen.add(id(param))
                yield param, masks.get(id(param))


def _kept(param: torch.Tensor, mask: torch.Tensor | None) -> int:
    return param.numel() if mask is None else int(torch.count_nonzero(mask).item())


def count_parameters(model: nn.Module) -> ParamCount:
    """Count all parameter entries, those not removed by a mask, and those whose value is nonzero."""
    total = nonzero = nonzero_values = 0
    for param, mask in _own_parameters(model):
        total += param.numel()
        nonzero += _kept(param, mask)
        nonzero_values += int(torch.count_nonzero(param.detach()).item())
    return ParamCount(total, nonzero, nonzero_values)


def compression_ratio(model: nn.Module) -> float:
    """All parameters / parameters kept by the masks (inf when all are pruned, 1.0 for no parameters)."""
    count = count_parameters(model)
    if count.total == 0:
        return 1.0
    return count.total / count.nonzero if count.nonzero else math.inf


def model_size(model: nn.Module) -> SizeReport:
    """Bytes of the parameters stored densely, and with masked ones as kept values plus a bitmask."""
    dense = sparse = 0
    for param, mask in _own_parameters(model):
        size = param.numel() * param.element_size()
        dense += size
        if mask is None:
            sparse += size
        else:
            sparse += _kept(param, mask) * param.element_size() + math.ceil(param.numel() / 8)
    return SizeReport(dense, sparse)
