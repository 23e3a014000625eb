"""Seeded random data of any shape and class count, learnable, for tests and throughput benchmarks."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from ..errors import ConfigError
from .augment import AUGMENTATIONS
from .base import DatasetInfo, Request, register_dataset, resolve_val_size, with_counts
from .memory import InMemoryDataset, Split

#: x = SIGNAL * prototype[y] + NOISE * N(0, 1): unit variance, classes separable by their means
SIGNAL, NOISE = 0.6, 0.8


def _shape(value: Any) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    try:
        shape = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"synthetic option shape must be a list of positive integers, "
                          f"got {value!r}") from None
    if not shape or any(v < 1 for v in shape) or any(isinstance(v, bool) for v in value):
        raise ConfigError(f"synthetic option shape must be a list of positive integers, "
                          f"got {value!r}")
    return shape


def _positive(options: dict[str, Any], key: str, minimum: int = 1) -> int:
    value = options[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"synthetic option {key} must be an integer >= {minimum}, got {value!r}")
    return value


@register_dataset("synthetic", aliases=("random",))
class Synthetic(InMemoryDataset):
    """Gaussian clusters around one random prototype per class, generated from the run's seed."""

    description = "seeded random data of any shape and class count (options: shape, num_classes, ...)"
    default_val_size = 0.1
    normalize = False
    options: ClassVar[dict[str, Any]] = {
        "shape": (3, 32, 32), "num_classes": 10, "num_train": 2048, "num_test": 512,
        "augmentation": None, "split_seed": 0,
    }

    def info(self, options: dict[str, Any]) -> DatasetInfo:
        """Shape, classes and split sizes, all from the options."""
        shape = _shape(options["shape"])
        n_train = _positive(options, "num_train", 2)
        n_val = resolve_val_size(None, self.default_val_size, n_train, self.name)
        return with_counts(
            DatasetInfo(self.name, _positive(options, "num_classes"), shape, (0.0,) * shape[0],
                        (1.0,) * shape[0], None, None, None),
            n_train - n_val, n_val, _positive(options, "num_test"))

    def augmentation_for(self, options: dict[str, Any]) -> str | None:
        """The `augmentation` option (a name in AUGMENTATIONS), image shapes (C, H, W) only."""
        name = options["augmentation"]
        if name in (None, "none", ""):
            return None
        AUGMENTATIONS.get(name)
        if len(_shape(options["shape"])) != 3:
            raise ConfigError(f"synthetic option augmentation={name!r} needs an image shape "
                              f"(C, H, W), got shape {options['shape']!r}")
        return name

    def read(self, request: Request) -> tuple[Split, Split]:
        """Generate the training and test samples from `seed`."""
        info = self.info(request.options)
        shape, k = info.input_shape or (), info.num_classes or 1
        gen = torch.Generator().manual_seed(request.seed)
        prototypes = torch.randn(k, *shape, generator=gen)

        def sample(n: int) -> Split:
            y = torch.randint(0, k, (n,), generator=gen)
            x = SIGNAL * prototypes[y] + NOISE * torch.randn(n, *shape, generator=gen)
            return Split(x, y)

        return sample(request.options["num_train"]), sample(request.options["num_test"])
