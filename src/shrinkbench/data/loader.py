"""In-memory loader: one tensor on the model's device, batched by slicing a seeded permutation."""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np
import torch

from .augment import CropFlip

# Separate random streams, so that turning augmentation on or off leaves the batch order unchanged.
SHUFFLE_STREAM = 0
AUGMENT_STREAM = 1
CALIBRATION_STREAM = 2  # examples drawn to score a pruning strategy with (`calibration`)


def check_samples(n: int, samples: int) -> None:
    """Refuse drawing more distinct examples than the n of the training split."""
    from ..errors import DataError

    if samples > n:
        raise DataError(f"pruning.calibration_samples: {samples} is more than the {n} training "
                        "examples")


def calibration_indices(n: int, samples: int, seed: int) -> torch.Tensor:
    """`samples` distinct indices of n examples, drawn by `seed` alone (the calibration stream)."""
    check_samples(n, samples)
    gen = epoch_generator(seed, 0, CALIBRATION_STREAM)
    return torch.randperm(n, generator=gen)[:samples]


def epoch_generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    """A CPU generator fixed by (seed, epoch, stream) alone."""
    state = np.random.SeedSequence([seed, epoch, stream]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def normalizer(mean: Sequence[float], std: Sequence[float], raw_max: float,
               device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) with x_normalized = x_raw * scale + shift, shaped (1, C, 1, 1)."""
    m = torch.tensor(mean, dtype=torch.float64)
    s = torch.tensor(std, dtype=torch.float64)
    scale = (1.0 / (raw_max * s)).to(torch.float32).view(1, -1, 1, 1).to(device)
    shift = (-m / s).to(torch.float32).view(1, -1, 1, 1).to(device)
    return scale, shift


def num_batches(num_samples: int, batch_size: int, drop_last: bool) -> int:
    """Batches per epoch."""
    return num_samples // batch_size if drop_last else math.ceil(num_samples / batch_size)


class TensorLoader:
    """Batches (x, y) of an in-memory split: x float32 normalized, y int64, both on `device`.

    `x` is kept as stored (uint8 for image sets) and normalized per batch. Each iteration uses the
    current epoch and then advances it; `set_epoch(e)` makes the next iteration epoch `e`, whose
    order and augmentation depend on (seed, e) alone.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        device: torch.device | str = "cpu",
        scale: torch.Tensor | None = None,
        shift: torch.Tensor | None = None,
        augmentation: CropFlip | None = None,
        drop_last: bool = False,
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
        self.device = torch.device(device)
        self.x = x.to(self.device).contiguous()
        self.y = y.to(device=self.device, dtype=torch.int64)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.scale = None if scale is None else scale.to(self.device)
        self.shift = None if shift is None else shift.to(self.device)
        self.augmentation = augmentation
        self.drop_last = drop_last
        self.epoch = 0

    @property
    def num_samples(self) -> int:
        """Samples in this split."""
        return len(self.y)

    def __len__(self) -> int:
        return num_batches(self.num_samples, self.batch_size, self.drop_last)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch `epoch`."""
        self.epoch = int(epoch)

    def check_calibration(self, samples: int, length: int | None = None) -> None:
        """Refuse a draw the split cannot give (examples have a fixed shape: no length)."""
        check_samples(self.num_samples, samples)

    def calibration(self, samples: int, seed: int, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """`samples` training examples drawn at random by `seed` (not augmented), in batches."""
        idx = calibration_indices(self.num_samples, samples, seed).to(self.device)
        return [(self._normalize(self.x.index_select(0, part), True), self.y.index_select(0, part))
                for part in idx.split(batch_size)]

    def _normalize(self, xb: torch.Tensor, fresh: bool) -> torch.Tensor:
        if self.scale is None:  # stored already normalized; never hand out a view of the store
            return xb.to(torch.float32, copy=not fresh)
        out = xb * self.scale  # uint8 * float32 promotes to a new float32 tensor
        return out.add_(self.shift)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self.epoch
        self.epoch += 1
        n = self.num_samples
        order = None
        if self.shuffle:
            order = torch.randperm(n, generator=epoch_generator(self.seed, epoch, SHUFFLE_STREAM))
            order = order.to(self.device)
        params = None
        if self.augmentation is not None:
            gen = epoch_generator(self.seed, epoch, AUGMENT_STREAM)
            params = {k: v.to(self.device) for k, v in self.augmentation.sample(n, gen).items()}
        for b in range(len(self)):
            lo, hi = b * self.batch_size, min((b + 1) * self.batch_size, n)
            if order is None:
                xb, yb = self.x[lo:hi], self.y[lo:hi]
            else:
                idx = order[lo:hi]
                xb, yb = self.x.index_select(0, idx), self.y.index_select(0, idx)
            if params is not None:
                xb = self.augmentation.apply(xb, {k: v[lo:hi] for k, v in params.items()})
            fresh = order is not None or params is not None
            yield self._normalize(xb, fresh), yb if order is not None else yb.clone()
