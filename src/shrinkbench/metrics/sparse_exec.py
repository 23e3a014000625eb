"""Sparse execution of pruned Linear layers: their weights held in CSR, multiplied by a CSR kernel.

A dense matmul is no faster for the zeros in it; a CSR kernel skips them, and on CPU beats the
dense one only at high sparsity (see benchmarks/bench_sparse_linear.py). For inference only:
the CSR weight is a buffer that takes no gradient, and the copy carries no masks.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch
from torch import nn

from shrinkbench.errors import ConfigError


def _to_csr(weight: torch.Tensor) -> torch.Tensor:
    """The 2-D tensor in sparse CSR layout, without PyTorch's warning that CSR is in beta."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse CSR tensor support is in beta.*")
        return weight.detach().to_sparse_csr()


def weight_sparsity(linear: nn.Linear) -> float:
    """Fraction of the Linear layer's weight entries that are exactly zero."""
    weight = linear.weight.detach()
    return 1.0 - int(torch.count_nonzero(weight)) / max(weight.numel(), 1)


class CSRLinear(nn.Module):
    """A Linear layer for inference whose weight is a sparse CSR buffer; computes F.linear's output.

    Of the routes PyTorch 2.13 offers on CPU, `addmm(bias, W_csr, x.T).T` was the fastest measured
    (as fast as `torch.sparse.mm(W_csr, x.T)` plus the bias, and 4x faster than
    `F.linear(x, W_csr)` at batch 64), so forward takes it (`mm` when there is no bias).
    """

    weight: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        if weight.dim() != 2:
            raise ConfigError(f"CSRLinear needs a 2-D weight, got shape {tuple(weight.shape)}")
        if bias is not None and tuple(bias.shape) != (weight.shape[0],):
            raise ConfigError(
                f"CSRLinear: bias of shape {tuple(bias.shape)} does not fit weight {tuple(weight.shape)}"
            )
        self.out_features, self.in_features = int(weight.shape[0]), int(weight.shape[1])
        csr = weight.detach() if weight.layout == torch.sparse_csr else _to_csr(weight)
        self.register_buffer("weight", csr)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> CSRLinear:
        """A CSRLinear computing what the (masked) Linear computes: its zeros are left out."""
        if not isinstance(linear, nn.Linear):
            raise ConfigError(f"CSRLinear.from_linear needs an nn.Linear, got {type(linear).__name__}")
        return cls(linear.weight, linear.bias)

    @property
    def nnz(self) -> int:
        """Number of stored (nonzero) weight entries."""
        return int(self.weight._nnz())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """F.linear(x, weight, bias) for x of shape (..., in_features), dense output (..., out)."""
        lead = x.shape[:-1]
        flat = x.reshape(-1, self.in_features).T
        if self.bias is None:
            out = torch.mm(self.weight, flat)
        else:
            out = torch.addmm(self.bias.unsqueeze(1), self.weight, flat)
        # the product is (out, batch): transposed back and laid out row-major, as F.linear gives it
        return out.T.contiguous().reshape(*lead, self.out_features)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # A CSR tensor copies only into one of the same number of nonzeros: the loaded weight
        # replaces the buffer instead (a dense one is converted), and the rest loads as usual.
        key = prefix + "weight"
        value, current = state_dict.get(key), self._buffers.get("weight")
        if isinstance(value, torch.Tensor) and current is not None and value.shape == current.shape:
            csr = value.detach() if value.layout == torch.sparse_csr else _to_csr(value)
            self._buffers["weight"] = csr.to(device=current.device, dtype=current.dtype).clone()
            state_dict = {**state_dict, key: self._buffers["weight"]}
        super()._load_from_state_dict(state_dict, prefix, *args)

    def __deepcopy__(self, memo: dict[int, Any]) -> CSRLinear:
        """A deep copy (PyTorch's Tensor.__deepcopy__ cannot copy a CSR tensor, but clone can)."""
        weight = self._buffers["weight"]
        if weight is not None and id(weight) not in memo:
            memo[id(weight)] = weight.clone()
        new = self.__class__.__new__(self.__class__)
        memo[id(self)] = new
        new.__setstate__(copy.deepcopy(self.__dict__, memo))
        return new

    def extra_repr(self) -> str:
        density = self.nnz / max(self.in_features * self.out_features, 1)
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, density={density:.4f}")


def sparse_linear(model: nn.Module, *, min_sparsity: float = 0.5) -> nn.Module:
    """A deep copy of the model with every nn.Linear at least `min_sparsity` zero made a CSRLinear.

    Only modules of type nn.Linear itself are replaced (a subclass may compute something else, and
    nn.MultiheadAttention reads its out_proj's weight directly); forward hooks on them do not carry
    over. The original model is left as it is.
    """
    if isinstance(min_sparsity, bool) or not isinstance(min_sparsity, (int, float)) or not (
        0.0 <= min_sparsity <= 1.0
    ):
        raise ConfigError(f"sparse_linear: min_sparsity must be a number in [0, 1], got {min_sparsity!r}")
    if type(model) is nn.Linear:  # the model is one layer: it has no parent to replace it in
        return CSRLinear.from_linear(model) if weight_sparsity(model) >= min_sparsity else copy.deepcopy(model)
    result = copy.deepcopy(model)
    replaced: dict[int, CSRLinear] = {}  # a Linear registered twice becomes one shared CSRLinear
    for module in list(result.modules()):
        for child_name, child in list(module._modules.items()):  # named_children() skips repeats
            if type(child) is not nn.Linear:
                continue
            if id(child) not in replaced:
                if weight_sparsity(child) < min_sparsity:
                    continue
                replaced[id(child)] = CSRLinear.from_linear(child)
            setattr(module, child_name, replaced[id(child)])
    return result


def csr_layers(model: nn.Module) -> list[str]:
    """Qualified names of the model's CSRLinear layers."""
    return [name for name, module in model.named_modules() if isinstance(module, CSRLinear)]
