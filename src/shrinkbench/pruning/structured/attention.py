"""Multi-head self-attention with fewer heads than its model dimension implies.

`nn.MultiheadAttention` ties its inner width to `embed_dim` (heads x head size = embed_dim), so a
model whose heads were removed needs a module whose inner width is heads x head size while its
inputs and outputs keep `embed_dim`. This one keeps nn.MultiheadAttention's parameter names and
call signature, so the rest of the model and its state dict are unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PrunedMultiheadAttention(nn.Module):
    """Self- or cross-attention of `num_heads` heads of size `head_dim` over `embed_dim` features."""

    def __init__(self, embed_dim: int, num_heads: int, head_dim: int, *, bias: bool = True,
                 dropout: float = 0.0, batch_first: bool = False) -> None:
        super().__init__()
        inner = num_heads * head_dim
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, head_dim
        self.dropout, self.batch_first = dropout, batch_first
        self.in_proj_weight = nn.Parameter(torch.empty(3 * inner, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * inner)) if bias else None
        self.out_proj = nn.Linear(inner, embed_dim, bias=bias)

    @classmethod
    def like(cls, mha: nn.MultiheadAttention, num_heads: int) -> "PrunedMultiheadAttention":
        """An empty module with `mha`'s settings and `num_heads` heads."""
        new = cls(mha.embed_dim, num_heads, mha.head_dim, bias=mha.in_proj_bias is not None,
                  dropout=mha.dropout, batch_first=mha.batch_first)
        return new.to(device=mha.in_proj_weight.device, dtype=mha.in_proj_weight.dtype)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None = None,
                need_weights: bool = True, attn_mask: Tensor | None = None,
                average_attn_weights: bool = True, is_causal: bool = False) -> tuple[Tensor, Tensor | None]:
        if not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        n, length, _ = query.shape
        inner = self.num_heads * self.head_dim
        w, b = self.in_proj_weight, self.in_proj_bias
        parts = [F.linear(t, w[i * inner:(i + 1) * inner], None if b is None else b[i * inner:(i + 1) * inner])
                 for i, t in enumerate((query, key, value))]
        q, k, v = (t.reshape(n, -1, self.num_heads, self.head_dim).transpose(1, 2) for t in parts)
        mask = _combined_mask(attn_mask, key_padding_mask, n, self.num_heads, length, k.shape[2], q.dtype)
        if is_causal and mask is None:
            mask = torch.full((length, k.shape[2]), float("-inf"), dtype=q.dtype, device=q.device).triu(1)
        p = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
            if mask is not None:
                scores = scores + mask
            attn = scores.softmax(-1)
            weights = attn.mean(1) if average_attn_weights else attn
            out = F.dropout(attn, p) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        out = self.out_proj(out.transpose(1, 2).reshape(n, length, inner))
        return (out if self.batch_first else out.transpose(0, 1)), weights


def _combined_mask(attn_mask: Tensor | None, padding: Tensor | None, n: int, heads: int, length: int,
                   source: int, dtype: torch.dtype) -> Tensor | None:
    """One additive float mask of shape broadcastable to (n, heads, length, source)."""
    mask = None
    if attn_mask is not None:
        mask = attn_mask if attn_mask.dtype != torch.bool else \
            torch.zeros_like(attn_mask, dtype=dtype).masked_fill(attn_mask, float("-inf"))
        if mask.dim() == 3:
            mask = mask.reshape(n, heads, length, source)
    if padding is not None:
        pad = padding if padding.dtype != torch.bool else \
            torch.zeros_like(padding, dtype=dtype).masked_fill(padding, float("-inf"))
        pad = pad.reshape(n, 1, 1, source)
        mask = pad if mask is None else mask + pad
    return mask
