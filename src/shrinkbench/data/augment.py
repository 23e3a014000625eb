"""Batch augmentations as tensor ops on whole batches, with parameters drawn for a whole epoch."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..registry import Registry


@dataclass(frozen=True)
class CropFlip:
    """Random crop after zero-padding by `pad` pixels, and a horizontal flip with probability 1/2."""

    pad: int = 4
    flip: bool = True

    def sample(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Per-sample parameters for `n` samples: row/column offsets and flip flags."""
        span = 2 * self.pad + 1
        params = {
            "dy": torch.randint(0, span, (n,), generator=generator),
            "dx": torch.randint(0, span, (n,), generator=generator),
        }
        flips = torch.rand(n, generator=generator) < 0.5
        params["flip"] = flips if self.flip else torch.zeros_like(flips)
        return params

    def apply(self, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Augment a batch `x` (N, C, H, W) of any dtype with the batch's slice of the parameters."""
        n, c, h, w = x.shape
        flip = params["flip"]
        if self.pad == 0:
            return torch.where(flip[:, None, None, None], x.flip(3), x)
        p = self.pad
        padded = F.pad(x, (p, p, p, p))
        ar_h = torch.arange(h, device=x.device)
        ar_w = torch.arange(w, device=x.device)
        rows = params["dy"][:, None] + ar_h
        cols = params["dx"][:, None] + ar_w
        cols = torch.where(flip[:, None], cols.flip(1), cols)
        out = padded.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2 * p))
        return out.gather(3, cols[:, None, None, :].expand(n, c, h, w))


AUGMENTATIONS: Registry[CropFlip] = Registry("augmentation")
AUGMENTATIONS.add("crop_flip", CropFlip(pad=4, flip=True))
AUGMENTATIONS.add("flip", CropFlip(pad=0, flip=True))
