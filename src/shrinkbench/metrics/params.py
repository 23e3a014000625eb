"""Parameter counts, compression ratio and model size (dense, and sparse as values plus a bitmask)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import nn

from shrinkbench.metrics._common import kept_entries
from shrinkbench.pruning.masks import get_mask


class ParamCount(NamedTuple):
    """Parameter entries of a model: all, those kept by the masks, those whose value is nonzero."""

    total: int
    nonzero: int
    nonzero_values: int


class SizeReport(NamedTuple):
    """Bytes to store a model's parameters densely, and sparsely (kept values plus a 1-bit mask)."""

    dense_bytes: int
    sparse_bytes: int


def _own_parameters(model: nn.Module) -> Iterator[tuple[nn.Module, str, nn.Parameter]]:
    """Yield (module, name, parameter) once per distinct parameter, shared ones at their first owner."""
    seen: set[int] = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if id(param) not in seen:
                seen.add(id(param))
                yield module, name, param


def count_parameters(model: nn.Module) -> ParamCount:
    """Count all parameter entries, those not removed by a mask, and those whose value is nonzero."""
    total = nonzero = nonzero_values = 0
    for module, name, param in _own_parameters(model):
        total += param.numel()
        nonzero += kept_entries(module, name, param)
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
    for module, name, param in _own_parameters(model):
        size = param.numel() * param.element_size()
        dense += size
        if get_mask(module, name) is None:
            sparse += size
        else:
            sparse += kept_entries(module, name, param) * param.element_size() + math.ceil(param.numel() / 8)
    return SizeReport(dense, sparse)
