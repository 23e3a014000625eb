"""MNIST, Fashion-MNIST and KMNIST: the published idx files, gzipped or raw."""

from __future__ import annotations

import gzip
import hashlib
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ..errors import DataError, DataNotFound
from .base import Request, register_dataset
from .download import fetch_first
from .memory import InMemoryDataset, Split, check_labels

# idx type byte -> element type (big-endian, as the format specifies)
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
GZIP_MAGIC = b"\x1f\x8b"


def parse_idx(data: bytes, source: str) -> np.ndarray:
    """Decode the bytes of an (uncompressed) idx file, checking magic number and length."""
    if len(data) < 4:
        raise DataError(f"{source} is truncated: {len(data)} bytes, shorter than an idx header")
    if data[0] != 0 or data[1] != 0 or data[2] not in IDX_TYPES or data[3] == 0:
        raise DataError(f"{source} has a bad magic number 0x{data[:4].hex()}; "
                        f"it is not an idx file (expected 0x0000TTDD: type TT, DD dimensions)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{source} is truncated: {len(data)} bytes, shorter than its "
                        f"{header}-byte header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(IDX_TYPES[data[2]])
    expected = header + math.prod(dims) * dtype.itemsize
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "longer than its header says"
        raise DataError(f"{source} is {problem}: {len(data)} bytes, but its header "
                        f"(shape {tuple(dims)}) needs {expected}")
    return np.frombuffer(data, dtype, offset=header).reshape(dims)


@dataclass(frozen=True)
class IdxFile:
    """One published file: its name without `.gz`, md5 of the gz file and of the raw content."""

    name: str
    gz_md5: str | None = None
    raw_md5: str | None = None


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def gunzip(blob: bytes, source: str) -> bytes:
    """Decompress gzip bytes; corrupt or truncated data raises DataError."""
    try:
        return gzip.decompress(blob)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{source} is a corrupt or truncated gzip file ({exc})") from None


def read_idx_file(path: Path, spec: IdxFile | None = None, verify: bool = True) -> np.ndarray:
    """Read an idx file (gzipped or raw), checking the published checksum where one is known.

    A gzip file is accepted when either the file or its decompressed content has the published
    md5: some copies are re-compressed, but their content is the same.
    """
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc.strerror})") from None
    compressed = blob[:2] == GZIP_MAGIC
    raw = gunzip(blob, str(path)) if compressed else blob
    if verify and spec is not None:
        known = [(spec.raw_md5, raw)] + ([(spec.gz_md5, blob)] if compressed else [])
        known = [(md5, data) for md5, data in known if md5]
        if known and not any(_md5(data) == md5 for md5, data in known):
            wanted = " or ".join(md5 for md5, _ in known)
            raise DataError(f"{path} fails its checksum (expected md5 {wanted}); the file is "
                            f"corrupt or not the published one: delete it, or pass verify=False "
                            f"to use it anyway")
    return parse_idx(raw, str(path))


class IdxDataset(InMemoryDataset):
    """The MNIST family: 28x28 grey images in four idx files, 60,000 train / 10,000 test."""

    num_classes = 10
    input_shape = (1, 28, 28)
    default_val_size = 5000
    published = (60000, 10000)
    options: ClassVar[dict[str, Any]] = {"split_seed": 0, "train_size": None, "verify": True,
                                         "mirror": None}
    #: folders under the data dir searched in order; downloads go to the first
    folders: ClassVar[tuple[str, ...]] = ()
    mirrors: ClassVar[tuple[str, ...]] = ()
    files: ClassVar[dict[str, IdxFile]] = {}

    def _present(self, folder: Path, spec: IdxFile) -> Path | None:
        for candidate in (folder / spec.name, folder / f"{spec.name}.gz"):
            if candidate.is_file():
                return candidate
        return None

    def locate(self, root: Path) -> dict[str, Path] | None:
        """Paths of the four files in the first folder that holds all of them, or None."""
        for folder in self.folders:
            found = {key: self._present(root / folder, spec) for key, spec in self.files.items()}
            if all(found.values()):
                return found  # type: ignore[return-value]
        return None

    def missing_error(self, root: Path) -> DataError:
        """The one-line error naming the files expected, the folders searched and what to do."""
        missing = [f"{spec.name}[.gz]" for spec in self.files.values()
                   if not self._present(root / self.folders[0], spec)]
        names = ", ".join(missing)
        first, *others = [str(root / folder) for folder in self.folders]
        also = f" (nor in {', '.join(others)})" if others else ""
        return DataNotFound(f"data set {self.name!r} not found in {first}{also}: missing {names}",
                            folder=self.folders[0], downloadable=True)

    def download(self, root: Path, options: dict[str, Any]) -> dict[str, Path]:
        """Fetch the missing gz files into the first folder and return all four paths."""
        folder = root / self.folders[0]
        mirrors = (options["mirror"],) if options["mirror"] else self.mirrors
        paths = {}
        for key, spec in self.files.items():
            present = self._present(folder, spec)
            if present is not None:
                paths[key] = present
                continue

            def content_ok(tmp: Path, spec: IdxFile = spec) -> bool:
                if spec.raw_md5 is None:
                    return False
                try:
                    return _md5(gunzip(tmp.read_bytes(), str(tmp))) == spec.raw_md5
                except DataError:
                    return False

            urls = [f"{m.rstrip('/')}/{spec.name}.gz" for m in mirrors]
            paths[key] = fetch_first(urls, folder / f"{spec.name}.gz", md5=spec.gz_md5,
                                     accept=content_ok)
        return paths

    def _read_pair(self, images: Path, labels: Path, verify: bool, split: str) -> Split:
        x = read_idx_file(images, self.files[f"{split}_images"], verify)
        y = read_idx_file(labels, self.files[f"{split}_labels"], verify)
        if x.ndim != 3 or x.dtype != np.uint8 or x.shape[1:] != self.input_shape[1:]:
            raise DataError(f"{images} holds {x.dtype} images of shape {x.shape[1:]}; expected "
                            f"uint8 {self.input_shape[1]}x{self.input_shape[2]} images")
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(f"{labels} holds labels of shape {y.shape}, but {images} holds "
                            f"{len(x)} images")
        x_t = torch.from_numpy(x.copy()).unsqueeze(1)
        y_t = torch.from_numpy(y.astype(np.int64))
        check_labels(y_t, self.num_classes or 0, str(labels))
        return Split(x_t, y_t)

    def read(self, request: Request) -> tuple[Split, Split]:
        """Read the four files, downloading them first if asked and missing."""
        paths = self.locate(request.root)
        if paths is None:
            if not request.download:
                raise self.missing_error(request.root)
            paths = self.download(request.root, request.options)
        verify = bool(request.options["verify"])
        train = self._read_pair(paths["train_images"], paths["train_labels"], verify, "train")
        test = self._read_pair(paths["test_images"], paths["test_labels"], verify, "test")
        return train, test


def _mnist_files(md5s: dict[str, tuple[str | None, str | None]]) -> dict[str, IdxFile]:
    names = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
             "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
    return {key: IdxFile(names[key], *md5s[key]) for key in names}


@register_dataset("mnist")
class MNIST(IdxDataset):
    """LeCun et al.'s handwritten digits."""

    description = "MNIST handwritten digits, 28x28 grey, 10 classes (idx files)"
    mean = (0.1307,)
    std = (0.3081,)
    augmentation = None
    folders = ("mnist", "MNIST/raw")
    mirrors = (
        "https://ossci-datasets.s3.amazonaws.com/mnist",
        "https://storage.googleapis.com/cvdf-datasets/mnist",
        "http://yann.lecun.com/exdb/mnist",
    )
    files = _mnist_files({
        "train_images": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "6bbc9ace898e44ae57da46a324031adb"),
        "train_labels": ("d53e105ee54ea40749a09fcbcd1e9432", "a25bea736e30d166cdddb491f175f624"),
        "test_images": ("9fb629c4189551a2d022fa330f9573f3", "2646ac647ad5339dbf082846283269ea"),
        "test_labels": ("ec29112dd5afa0611ce80d1b7f02629c", "27ae3e4e09519cfbb04c329615203637"),
    })


@register_dataset("fashion-mnist", aliases=("fashion_mnist", "fashionmnist"))
class FashionMNIST(IdxDataset):
    """Zalando's clothing images in the MNIST format."""

    description = "Fashion-MNIST clothing images, 28x28 grey, 10 classes (idx files)"
    mean = (0.2860,)
    std = (0.3530,)
    folders = ("fashion-mnist", "FashionMNIST/raw")
    mirrors = (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion",
    )
    files = _mnist_files({
        "train_images": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", None),
        "train_labels": ("25c81989df183df01b3e8a0aad5dffbe", None),
        "test_images": ("bef4ecab320f06d8554ea6380940ec79", None),
        "test_labels": ("bb300cfdad3c16e7a12a480ee83cd310", None),
    })


@register_dataset("kmnist", aliases=("kuzushiji-mnist",))
class KMNIST(IdxDataset):
    """Kuzushiji-MNIST: cursive Japanese characters in the MNIST format."""

    description = "Kuzushiji-MNIST characters, 28x28 grey, 10 classes (idx files)"
    mean = (0.1918,)
    std = (0.3483,)
    folders = ("kmnist", "KMNIST/raw")
    mirrors = ("http://codh.rois.ac.jp/kmnist/dataset/kmnist",)
    files = _mnist_files({
        "train_images": ("bdb82020997e1d708af4cf47b453dcf7", None),
        "train_labels": ("e144d726b3acfaa3e44228e80efcd344", None),
        "test_images": ("5c965bf0a639b31b8f53240b1b52f4d7", None),
        "test_labels": ("7320c461ea6c1c855c0b718fb2a4b134", None),
    })
