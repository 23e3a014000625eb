"""CIFAR-10 and CIFAR-100: the published python-pickle batches, from their folder or the .tar.gz."""

from __future__ import annotations

import codecs
import hashlib
import io
import pickle
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import torch

from ..errors import DataError, DataNotFound
from .base import Request, register_dataset
from .download import fetch_first, file_digest, safe_extract
from .memory import InMemoryDataset, Split, check_labels

MIRROR = "https://www.cs.toronto.edu/~kriz"
PIXELS = 3 * 32 * 32


def _allowed_globals() -> dict[tuple[str, str], Callable[..., Any]]:
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,  # how protocol-2 pickles spell bytes
    }


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays; any other global is refused."""

    allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed") from None


def load_batch(path: Path, md5: str | None = None, verify: bool = True) -> dict[str, Any]:
    """Unpickle one CIFAR batch file safely (only numpy arrays and containers)."""
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc.strerror})") from None
    if verify and md5 and hashlib.md5(blob).hexdigest() != md5:
        raise DataError(f"{path} fails its checksum (expected md5 {md5}); the file is corrupt or "
                        f"not the published one: delete it, or pass verify=False to use it anyway")
    try:
        entry = _ArraysOnlyUnpickler(io.BytesIO(blob), encoding="latin1").load()
    except Exception as exc:  # a corrupt pickle can fail in many ways; all mean the same here
        raise DataError(f"{path} is not a readable CIFAR batch, corrupt or truncated "
                        f"({type(exc).__name__}: {exc})") from None
    if not isinstance(entry, dict):
        raise DataError(f"{path} is not a CIFAR batch: it holds a {type(entry).__name__}, not a dict")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in entry.items()}


def batch_arrays(entry: dict[str, Any], label_key: str, source: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 3, 32, 32) uint8, labels (N,) int64) of an unpickled batch, checked."""
    if "data" not in entry or label_key not in entry:
        raise DataError(f"{source} lacks the {'data' if 'data' not in entry else label_key!r} "
                        f"entry of a CIFAR batch (found {', '.join(sorted(entry))})")
    data, labels = entry["data"], entry[label_key]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != PIXELS:
        shape = getattr(data, "shape", None)
        raise DataError(f"{source} has 'data' of shape {shape} and type "
                        f"{getattr(data, 'dtype', type(data).__name__)}; expected uint8 (N, {PIXELS})")
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise DataError(f"{source} has non-integer {label_key!r}") from None
    if y.shape != (len(data),):
        raise DataError(f"{source} has {y.size} {label_key!r} for {len(data)} images")
    return data.reshape(-1, 3, 32, 32), y


class CifarDataset(InMemoryDataset):
    """A CIFAR variant: 32x32 colour images, 50,000 train / 10,000 test, crop+flip augmentation."""

    input_shape = (3, 32, 32)
    default_val_size = 5000
    published = (50000, 10000)
    augmentation = "crop_flip"
    options: ClassVar[dict[str, Any]] = {"split_seed": 0, "train_size": None, "verify": True,
                                         "mirror": None}
    folder: ClassVar[str] = ""
    base_folder: ClassVar[str] = ""
    archive: ClassVar[str] = ""
    archive_md5: ClassVar[str] = ""
    train_files: ClassVar[tuple[tuple[str, str], ...]] = ()
    test_files: ClassVar[tuple[tuple[str, str], ...]] = ()
    label_key: ClassVar[str] = "labels"

    def _complete(self, folder: Path) -> bool:
        return all((folder / name).is_file() for name, _ in (*self.train_files, *self.test_files))

    def _extract(self, archive: Path, verify: bool) -> Path:
        if verify and file_digest(archive) != self.archive_md5:
            raise DataError(f"{archive} fails its checksum (expected md5 {self.archive_md5}); "
                            f"delete it, or pass verify=False to use it anyway")
        safe_extract(archive, archive.parent)
        folder = archive.parent / self.base_folder
        if not self._complete(folder):
            raise DataError(f"archive {archive} did not contain the {self.name} batches "
                            f"({self._expected()}) under {self.base_folder}/")
        return folder

    def _expected(self) -> str:
        return ", ".join(name for name, _ in (*self.train_files, *self.test_files))

    def locate(self, request: Request) -> Path:
        """The folder of batch files: found, extracted from the archive, or downloaded."""
        root, verify = request.root, bool(request.options["verify"])
        folders = [root / self.folder / self.base_folder, root / self.base_folder]
        archives = [root / self.folder / self.archive, root / self.archive]
        for folder in folders:
            if self._complete(folder):
                return folder
        for archive in archives:
            if archive.is_file():
                return self._extract(archive, verify)
        if request.download:
            mirror = request.options["mirror"] or MIRROR
            dest = fetch_first([f"{mirror.rstrip('/')}/{self.archive}"], archives[0],
                               md5=self.archive_md5)
            return self._extract(dest, verify)
        raise DataNotFound(
            f"data set {self.name!r} not found: neither the folder {folders[0]} ({self._expected()}) "
            f"nor the archive {archives[0]}, nor {folders[1]} or {archives[1]}",
            folder=self.folder, downloadable=True)

    def _read(self, folder: Path, files: tuple[tuple[str, str], ...], verify: bool) -> Split:
        xs, ys = [], []
        for name, md5 in files:
            path = folder / name
            x, y = batch_arrays(load_batch(path, md5, verify), self.label_key, path)
            check_labels(torch.from_numpy(y), self.num_classes or 0, str(path))
            xs.append(x)
            ys.append(y)
        return Split(torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys)))

    def read(self, request: Request) -> tuple[Split, Split]:
        """Read the training batches and the test batch."""
        folder = self.locate(request)
        verify = bool(request.options["verify"])
        return (self._read(folder, self.train_files, verify),
                self._read(folder, self.test_files, verify))


@register_dataset("cifar10", aliases=("cifar-10",))
class CIFAR10(CifarDataset):
    """Krizhevsky's CIFAR-10."""

    description = "CIFAR-10, 32x32 colour, 10 classes (python pickle batches)"
    num_classes = 10
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)
    folder = "cifar10"
    base_folder = "cifar-10-batches-py"
    archive = "cifar-10-python.tar.gz"
    archive_md5 = "c58f30108f718f92721af3b95e74349a"
    train_files = (
        ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
        ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
        ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
        ("data_batch_4", "634d18415352ddfa80567beed471001a"),
        ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
    )
    test_files = (("test_batch", "40351d587109b95175f43aff81a1287e"),)
    label_key = "labels"


@register_dataset("cifar100", aliases=("cifar-100",))
class CIFAR100(CifarDataset):
    """Krizhevsky's CIFAR-100 with its 100 fine labels."""

    description = "CIFAR-100, 32x32 colour, 100 classes (python pickle batches)"
    num_classes = 100
    mean = (0.5071, 0.4865, 0.4409)
    std = (0.2673, 0.2564, 0.2762)
    folder = "cifar100"
    base_folder = "cifar-100-python"
    archive = "cifar-100-python.tar.gz"
    archive_md5 = "eb9058c3a382ffc7106e4002c42a8d85"
    train_files = (("train", "16019d7e3df5f24257cddd939b257f8d"),)
    test_files = (("test", "f0ef6b0ae62326f3e7ffdfab6717acfc"),)
    label_key = "fine_labels"
