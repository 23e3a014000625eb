"""Data sets in their published formats, checksummed downloads, and fast in-memory loaders.

`get_data(name, ...)` returns a DataBundle of train/val/test loaders yielding normalized float32
`x` and int64 `y` on the requested device; `list_datasets()` names what `get_data` accepts.
"""

from __future__ import annotations

from . import cifar, digits, folder, idx, synthetic  # noqa: F401  (register the data sets)
from .augment import AUGMENTATIONS, CropFlip
from .base import (
    DATASETS,
    DataBundle,
    Dataset,
    DatasetInfo,
    Loader,
    dataset_info,
    describe_datasets,
    get_data,
    list_datasets,
    register_dataset,
    resolve_data_dir,
)
from .download import fetch, fetch_first, file_digest, safe_extract
from .folder import FolderLoader
from .loader import TensorLoader, epoch_generator
from .memory import InMemoryDataset, Split

__all__ = [
    "AUGMENTATIONS",
    "CropFlip",
    "DATASETS",
    "DataBundle",
    "Dataset",
    "DatasetInfo",
    "FolderLoader",
    "InMemoryDataset",
    "Loader",
    "Split",
    "TensorLoader",
    "dataset_info",
    "describe_datasets",
    "epoch_generator",
    "fetch",
    "fetch_first",
    "file_digest",
    "get_data",
    "list_datasets",
    "register_dataset",
    "resolve_data_dir",
    "safe_extract",
]
