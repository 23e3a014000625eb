"""Transformer pieces and a small character-level GPT (decoder only, as in GPT-2 and nanoGPT).

Attention is written out (q k^T, causal mask, softmax, times v) rather than calling the fused
`F.scaled_dot_product_attention`: the two products are then plain matmuls that every counter sees,
shrinkbench's `count_macs`, torch's `FlopCounterMode` (which counts nothing for CPU's fused kernel)
and the structured-pruning tracer alike. Forward passes have no data-dependent Python branches, so
torch.fx traces them; the input checks run as opaque calls (`torch.fx.wrap`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..errors import ModelError
from .init import check_dropout
from .zoo import ModelInfo, model_info, register_model

# Weights are N(0, 0.02) as in GPT-2; these projections write into the residual stream, so theirs is
# divided by sqrt(2 x layers) to keep the stream's variance from growing with depth.
INIT_STD = 0.02
RESIDUAL_PROJECTIONS = ("attn.proj", "mlp.proj")


class SelfAttention(nn.Module):
    """Multi-head self-attention: one fused `qkv` Linear, per-head softmax(q k^T / sqrt(hd)) v,
    the heads concatenated through the `proj` Linear. `causal` hides later positions."""

    def __init__(self, n_embd: int, n_head: int, *, dropout: float = 0.0, bias: bool = True,
                 causal: bool = False) -> None:
        super().__init__()
        self.n_head, self.head_dim, self.causal = n_head, n_embd // n_head, causal
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.qkv = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.attn_drop = nn.Dropout(dropout)
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, T, 3d) -> (3, B, heads, T, head_dim)
        qkv = self.qkv(x).unflatten(-1, (3, self.n_head, self.head_dim)).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        att = (q @ k.transpose(-2, -1)) * self.scale  # (B, heads, T, T)
        if self.causal:
            t = x.size(1)
            future = att.new_ones(t, t, dtype=torch.bool).triu(1)  # above the diagonal: later keys
            att = att.masked_fill(future, float("-inf"))
        att = self.attn_drop(att.softmax(dim=-1))
        y = (att @ v).transpose(1, 2).flatten(2)  # (B, T, d)
        return self.resid_drop(self.proj(y))


class MLP(nn.Module):
    """Linear `fc` (d -> hidden), GELU, Linear `proj` (hidden -> d), dropout."""

    def __init__(self, n_embd: int, hidden: int, *, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        self.fc = nn.Linear(n_embd, hidden, bias=bias)
        self.act = nn.GELU()
        self.proj = nn.Linear(hidden, n_embd, bias=bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(self.act(self.fc(x))))


class Block(nn.Module):
    """A pre-norm transformer block: x + attn(ln1(x)), then x + mlp(ln2(x))."""

    def __init__(self, n_embd: int, n_head: int, hidden: int, *, dropout: float = 0.0,
                 bias: bool = True, causal: bool = False) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(n_embd, bias=bias)
        self.attn = SelfAttention(n_embd, n_head, dropout=dropout, bias=bias, causal=causal)
        self.ln2 = nn.LayerNorm(n_embd, bias=bias)
        self.mlp = MLP(n_embd, hidden, dropout=dropout, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


@torch.no_grad()
def init_transformer(model: nn.Module, n_layer: int, generator: torch.Generator | None = None) -> None:
    """GPT-2 initialization from `generator`: every weight matrix, embedding, class token and position
    table N(0, 0.02), residual projections N(0, 0.02 / sqrt(2 n_layer)), biases 0, LayerNorm 1 and 0.
    Parameters are drawn in module order, a tied one once."""
    residual_std = INIT_STD / math.sqrt(2 * n_layer)
    seen: set[int] = set()
    for name, module in model.named_modules():
        for local, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            if isinstance(module, nn.LayerNorm) and local == "weight":
                nn.init.ones_(param)
            elif isinstance(module, nn.LayerNorm) or local == "bias":
                nn.init.zeros_(param)
            else:
                std = residual_std if name.endswith(RESIDUAL_PROJECTIONS) else INIT_STD
                nn.init.normal_(param, 0.0, std, generator=generator)


def check_int(model: str, option: str, value: Any, minimum: int = 1) -> int:
    """An int >= minimum, else a ModelError naming the model and the option."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ModelError(f"model {model!r}: {option} must be an int >= {minimum}, got {value!r}")
    return value


def check_bool(model: str, option: str, value: Any) -> bool:
    """A bool, else a ModelError naming the model and the option."""
    if not isinstance(value, bool):
        raise ModelError(f"model {model!r}: {option} must be true or false, got {value!r}")
    return value


def check_heads(model: str, n_embd: int, n_head: int) -> None:
    """Refuse a width that the heads do not divide."""
    if n_embd % n_head:
        raise ModelError(f"model {model!r}: n_embd {n_embd} is not a multiple of n_head {n_head}")


def _check_tokens(idx: torch.Tensor, block_size: int) -> torch.Tensor:
    """`idx` itself, when it is a (batch, tokens) integer tensor of at most block_size tokens."""
    if idx.dim() != 2 or idx.dtype not in (torch.int64, torch.int32):
        raise ModelError(f"a GPT takes int64 token ids of shape (batch, tokens), got a {idx.dtype} "
                         f"tensor of shape {tuple(idx.shape)}")
    if idx.shape[1] > block_size:
        raise ModelError(f"a GPT with block_size {block_size} takes at most {block_size} tokens, "
                         f"got {idx.shape[1]}")
    return idx


torch.fx.wrap("_check_tokens")


class GPT(nn.Module):
    """Token + position embeddings, pre-norm causal blocks, a final LayerNorm and the `lm_head`
    (tied to the token embedding by default). (B, T) token ids -> (B, T, vocab) logits."""

    def __init__(self, vocab_size: int, block_size: int, *, n_layer: int = 4, n_head: int = 4,
                 n_embd: int = 128, dropout: float = 0.0, bias: bool = True, tie_weights: bool = True,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.block_size = block_size
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            Block(n_embd, n_head, 4 * n_embd, dropout=dropout, bias=bias, causal=True)
            for _ in range(n_layer)
        )
        self.ln_f = nn.LayerNorm(n_embd, bias=bias)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        if tie_weights:
            self.lm_head.weight = self.wte.weight
        # Left dense by pruning by default; when tied, its weight is the token embedding too.
        self.shrinkbench_classifier = "lm_head"
        init_transformer(self, n_layer, generator)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        idx = _check_tokens(idx, self.block_size)
        positions = torch.arange(idx.size(1), device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(positions))
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


@register_model("char_gpt", input_shape=(128,), num_classes=65, family="transformer",
                aliases=("gpt_char",))
def char_gpt(
    num_classes: int,
    input_shape: tuple[int, ...],
    generator: torch.Generator | None = None,
    *,
    n_layer: int = 4,
    n_head: int = 4,
    n_embd: int = 128,
    dropout: float = 0.0,
    bias: bool = True,
    tie_weights: bool = True,
) -> nn.Module:
    """A character-level GPT (4 layers, 4 heads, width 128; 65 characters as in tiny Shakespeare)."""
    name = "char_gpt"
    if len(input_shape) != 1:
        raise ModelError(f"model {name!r} takes token sequences: input_shape must be (block_size,), "
                         f"got {tuple(input_shape)}")
    n_layer = check_int(name, "n_layer", n_layer)
    n_head = check_int(name, "n_head", n_head)
    n_embd = check_int(name, "n_embd", n_embd)
    check_heads(name, n_embd, n_head)
    return GPT(num_classes, int(input_shape[0]), n_layer=n_layer, n_head=n_head, n_embd=n_embd,
               dropout=check_dropout(name, dropout), bias=check_bool(name, "bias", bias),
               tie_weights=check_bool(name, "tie_weights", tie_weights), generator=generator)


def takes_tokens(info: ModelInfo) -> bool:
    """Whether a registered model takes integer token ids (batch, tokens) rather than float tensors:
    a transformer whose one example is a sequence, (block_size,)."""
    return info.family == "transformer" and len(info.default_input_shape) == 1


def example_input(name: str, batch: int = 1, *, input_shape: tuple[int, ...] | None = None,
                  num_classes: int | None = None,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """A random input batch of the right kind for a zoo model: token ids in [0, num_classes) for a
    language model, standard normal values otherwise (default sizes from its registration)."""
    info = model_info(name)
    shape = tuple(info.default_input_shape if input_shape is None else input_shape)
    if takes_tokens(info):
        vocab = info.default_num_classes if num_classes is None else num_classes
        return torch.randint(0, vocab, (batch, *shape), generator=generator)
    return torch.randn(batch, *shape, generator=generator)


class CausalLMLogits(nn.Module):
    """A Hugging Face causal LM seen as a plain `forward(input_ids) -> logits` module."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        names = {id(m): n for n, m in self.named_modules()}
        if head is None or id(head) not in names:
            raise ModelError(f"{type(model).__name__} has no output embedding (lm head) to name as "
                             "its classifier; is it a causal language model?")
        self.shrinkbench_classifier = names[id(head)]

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, use_cache=False).logits


def hf_causal_lm(model: nn.Module) -> nn.Module:
    """Wrap a Hugging Face `transformers` causal LM so that `forward(input_ids)` returns the logits
    tensor (B, T, vocab) and its lm head is the classifier that pruning leaves dense by default."""
    return CausalLMLogits(model)
