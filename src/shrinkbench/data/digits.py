"""scikit-learn's bundled 8x8 handwritten digits: the embedded default, no download needed."""

from __future__ import annotations

import numpy as np
import torch

from .base import Request, register_dataset
from .memory import InMemoryDataset, Split

#: samples in the fixed test split; the rest (1,437) is the training set the validation comes from
NUM_TEST = 360
#: the test split never changes, whatever the run's seed or split_seed
TEST_SPLIT_SEED = 0


@register_dataset("digits", aliases=("sklearn-digits",))
class Digits(InMemoryDataset):
    """1,797 grey 8x8 digits (values 0-16): fixed 1,257 train / 180 val / 360 test split."""

    description = "scikit-learn's 8x8 digits, 10 classes, bundled (no download)"
    num_classes = 10
    input_shape = (1, 8, 8)
    mean = (0.3053,)
    std = (0.3760,)
    raw_max = 16.0
    default_val_size = 180
    published = (1797 - NUM_TEST, NUM_TEST)

    def read(self, request: Request) -> tuple[Split, Split]:
        """The whole set, split once into training and test by a constant seed."""
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x = torch.from_numpy(bunch.data.reshape(-1, 1, 8, 8).astype(np.uint8))
        y = torch.from_numpy(bunch.target.astype(np.int64))
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(TEST_SPLIT_SEED))
        test_idx = perm[:NUM_TEST].sort().values
        train_idx = perm[NUM_TEST:].sort().values
        return Split(x[train_idx], y[train_idx]), Split(x[test_idx], y[test_idx])
