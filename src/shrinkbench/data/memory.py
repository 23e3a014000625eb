"""Small data sets held in memory as one tensor: the shared split and loader logic."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ..errors import ConfigError, DataError
from .augment import AUGMENTATIONS
from .base import DataBundle, Dataset, DatasetInfo, Request, resolve_val_size, with_counts
from .loader import TensorLoader, normalizer


@dataclass(frozen=True)
class Split:
    """Samples of one split: x (N, C, H, W) uint8 or float32, y (N,) int64."""

    x: torch.Tensor
    y: torch.Tensor


def check_split_seed(split_seed: Any) -> int:
    """The `split_seed` option: an integer in [0, 2**62] (torch seeds generators with it and with
    it + 1)."""
    valid = isinstance(split_seed, int) and not isinstance(split_seed, bool)
    if not valid or not 0 <= split_seed <= 2**62:
        raise ConfigError(f"data.options.split_seed: expected an integer >= 0 and <= 2**62, got "
                          f"{split_seed!r}")
    return split_seed


def holdout(n: int, val_count: int, split_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, val indices), both sorted, with `val_count` held out by a seeded permutation."""
    check_split_seed(split_seed)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
    return perm[val_count:].sort().values, perm[:val_count].sort().values


def subset(indices: torch.Tensor, size: Any, split_seed: int, name: str) -> torch.Tensor:
    """`size` of `indices` chosen by a seeded permutation (sorted), or all of them for None."""
    if size is None:
        return indices
    if isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= len(indices):
        raise ConfigError(f"data.options.train_size: expected an integer in [1, {len(indices)}] for "
                          f"{name!r}, got {size!r}")
    perm = torch.randperm(len(indices), generator=torch.Generator().manual_seed(split_seed + 1))
    return indices[perm[:size]].sort().values


def check_labels(y: torch.Tensor, num_classes: int, source: str) -> None:
    """Raise DataError when a label is outside [0, num_classes)."""
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise DataError(f"{source} has labels in [{int(y.min())}, {int(y.max())}], outside "
                        f"[0, {num_classes - 1}] for {num_classes} classes")


class InMemoryDataset(Dataset):
    """A data set read whole into memory; subclasses implement `read`."""

    #: validation samples held out of the training set (an int, or a float fraction)
    default_val_size: ClassVar[int | float] = 0
    #: name in AUGMENTATIONS applied to training batches, or None
    augmentation: ClassVar[str | None] = None
    #: the raw value that maps to 1.0 before normalization (255 for uint8 images)
    raw_max: ClassVar[float] = 255.0
    #: whether stored values still need (x / raw_max - mean) / std
    normalize: ClassVar[bool] = True
    #: (train, test) sizes as published, for `dataset_info` without reading files
    published: ClassVar[tuple[int, int] | None] = None
    #: split_seed: the seed of the validation hold-out; train_size: train on that many examples of
    #: the training split (a seeded subset, for small documented budgets), None for all of them
    options: ClassVar[dict[str, Any]] = {"split_seed": 0, "train_size": None}

    def read(self, request: Request) -> tuple[Split, Split]:
        """The full published training split and the test split."""
        raise NotImplementedError

    def augmentation_for(self, options: dict[str, Any]) -> str | None:
        """The augmentation applied to training batches for these options."""
        return self.augmentation

    def info(self, options: dict[str, Any]) -> DatasetInfo:
        """Static facts, with the split sizes of the default validation split where known."""
        base = super().info(options)
        if self.published is None:
            return base
        n_train, n_test = self.published
        n_val = resolve_val_size(None, self.default_val_size, n_train, self.name)
        return with_counts(base, n_train - n_val, n_val, n_test)

    def build(self, request: Request) -> DataBundle:
        """Read, hold out the validation split, and wrap the splits in TensorLoaders."""
        full_train, test = self.read(request)
        info = self.info(request.options)
        n_val = resolve_val_size(request.val_size, self.default_val_size, len(full_train.y), self.name)
        train_idx, val_idx = holdout(len(full_train.y), n_val, request.options["split_seed"])
        train_idx = subset(train_idx, request.options.get("train_size"), request.options["split_seed"],
                           self.name)
        scale = shift = None
        if self.normalize:
            scale, shift = normalizer(info.mean, info.std, self.raw_max, request.device)
        aug_name = self.augmentation_for(request.options) if request.augment else None
        aug = AUGMENTATIONS.get(aug_name) if aug_name else None
        common: dict[str, Any] = {"device": request.device, "scale": scale, "shift": shift,
                                  "seed": request.seed}
        train = TensorLoader(full_train.x[train_idx], full_train.y[train_idx], shuffle=True,
                             batch_size=request.batch_size, augmentation=aug, **common)
        val = None
        if n_val:
            val = TensorLoader(full_train.x[val_idx], full_train.y[val_idx],
                               batch_size=request.eval_batch_size, **common)
        test_loader = TensorLoader(test.x, test.y, batch_size=request.eval_batch_size, **common)
        return DataBundle(train, val, test_loader,
                          with_counts(info, len(train_idx), n_val, len(test.y)))
