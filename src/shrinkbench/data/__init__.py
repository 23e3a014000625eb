"""Data sets in their published formats, checksummed downloads, and fast in-memory loaders.

`get_data(name, ...)` returns a DataBundle of train/val/test loaders yielding normalized float32
`x` and int64 `y` on the requested device (text data sets: int64 token ids `x` and next-token `y`,
see `text`); `list_datasets()` names what `get_data` accepts.
"""

from __future__ import annotations

# imported to register their data sets
from . import cifar, digits, folder, idx, shakespeare, synthetic, text  # noqa: F401
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
from .shakespeare import build_shakespeare
from .text import IGNORE_INDEX, BlockLoader, TextDataset, Vocab, WindowLoader, text_protocol


def is_text_dataset(name: str) -> bool:
    """Whether the registered data set `name` yields token sequences (a text data set)."""
    return name in DATASETS and isinstance(DATASETS.get(name), TextDataset)


__all__ = [
    "AUGMENTATIONS",
    "BlockLoader",
    "CropFlip",
    "DATASETS",
    "DataBundle",
    "Dataset",
    "DatasetInfo",
    "FolderLoader",
    "IGNORE_INDEX",
    "InMemoryDataset",
    "Loader",
    "Split",
    "TensorLoader",
    "Vocab",
    "WindowLoader",
    "build_shakespeare",
    "dataset_info",
    "describe_datasets",
    "epoch_generator",
    "fetch",
    "fetch_first",
    "file_digest",
    "get_data",
    "is_text_dataset",
    "list_datasets",
    "register_dataset",
    "resolve_data_dir",
    "safe_extract",
    "text_protocol",
]
