"""A small vision transformer (Dosovitskiy et al. 2021) for MNIST, the 8x8 digits and CIFAR."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ModelError
from .gpt import Block, check_heads, check_int, init_transformer
from .init import check_dropout, spatial
from .zoo import register_model


def _check_images(x: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """`x` itself, when it is a batch of images of the size the model was built for."""
    if x.dim() != 4 or tuple(x.shape[1:]) != shape:
        size = ", ".join(map(str, shape))
        raise ModelError(f"this vision transformer was built for inputs (batch, {size}), got shape "
                         f"{tuple(x.shape)}; its position table fixes the image size")
    return x


torch.fx.wrap("_check_images")


class VisionTransformer(nn.Module):
    """Patches embedded by a strided Conv2d, a class token, learned positions, pre-norm blocks, and a
    LayerNorm + Linear `head` on the class token. (B, C, H, W) -> (B, classes)."""

    def __init__(self, in_channels: int, height: int, width: int, num_classes: int, *,
                 patch_size: int, n_layer: int = 4, n_head: int = 4, n_embd: int = 128,
                 mlp_hidden: int = 512, dropout: float = 0.0,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.input_shape = (in_channels, height, width)
        patches = (height // patch_size) * (width // patch_size)
        self.patch_embed = nn.Conv2d(in_channels, n_embd, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, n_embd))
        self.pos_embed = nn.Parameter(torch.zeros(1, patches + 1, n_embd))
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            Block(n_embd, n_head, mlp_hidden, dropout=dropout, causal=False) for _ in range(n_layer)
        )
        self.norm = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, num_classes)
        self.shrinkbench_classifier = "head"
        init_transformer(self, n_layer, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _check_images(x, self.input_shape)
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, patches, d)
        cls = self.cls_token.expand(x.size(0), -1, -1)
        x = self.drop(torch.cat([cls, x], dim=1) + self.pos_embed)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, 0]))  # LayerNorm is per token: only the class token's is used


def default_patch_size(height: int, width: int) -> int:
    """4 for inputs of 16x16 and more (7x7 patches on MNIST, 8x8 on CIFAR), 2 below (4x4 on digits)."""
    return 4 if min(height, width) >= 16 else 2


@register_model("vit_tiny", input_shape=(3, 32, 32), num_classes=10, family="transformer", min_size=2)
def vit_tiny(
    num_classes: int,
    input_shape: tuple[int, ...],
    generator: torch.Generator | None = None,
    *,
    patch_size: int | None = None,
    n_layer: int = 4,
    n_head: int = 4,
    n_embd: int = 128,
    mlp_ratio: float = 4,
    dropout: float = 0.0,
) -> nn.Module:
    """A tiny vision transformer (4 layers, 4 heads, width 128; patches of 4, or 2 below 16x16)."""
    name = "vit_tiny"
    channels, height, width = spatial(name, input_shape)
    patch = default_patch_size(height, width) if patch_size is None else \
        check_int(name, "patch_size", patch_size)
    if height % patch or width % patch:
        raise ModelError(f"model {name!r}: input {height}x{width} is not a whole number of "
                         f"{patch}x{patch} patches; pick a patch_size that divides both sides")
    n_layer = check_int(name, "n_layer", n_layer)
    n_head = check_int(name, "n_head", n_head)
    n_embd = check_int(name, "n_embd", n_embd)
    check_heads(name, n_embd, n_head)
    return VisionTransformer(channels, height, width, num_classes, patch_size=patch, n_layer=n_layer,
                             n_head=n_head, n_embd=n_embd, mlp_hidden=_hidden(name, mlp_ratio, n_embd),
                             dropout=check_dropout(name, dropout), generator=generator)


def _hidden(name: str, mlp_ratio: Any, n_embd: int) -> int:
    if isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, (int, float)) or \
            not 0 < mlp_ratio * n_embd < 2**31 or int(mlp_ratio * n_embd) < 1:
        raise ModelError(f"model {name!r}: mlp_ratio must be a positive number (MLP width = "
                         f"mlp_ratio x n_embd >= 1), got {mlp_ratio!r}")
    return int(mlp_ratio * n_embd)
