"""The data-set registry, the public records (DatasetInfo, DataBundle) and `get_data`."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, NamedTuple, Protocol

import torch

from ..errors import ConfigError
from ..registry import Registry


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts of a data set and the sizes of the splits actually built."""

    name: str
    num_classes: int | None
    input_shape: tuple[int, ...] | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_train: int | None
    num_val: int | None
    num_test: int | None


class Loader(Protocol):
    """What every loader offers: batches of (x, y) on the requested device."""

    batch_size: int
    num_samples: int

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...

    def set_epoch(self, epoch: int) -> None: ...


class DataBundle(NamedTuple):
    """The three loaders of a data set and its info; `val` is None when `val_size` is 0."""

    train: Loader
    val: Loader | None
    test: Loader
    info: DatasetInfo


@dataclass(frozen=True)
class Request:
    """Everything `get_data` was asked for, with defaults resolved, handed to a data set's `build`."""

    name: str
    root: Path
    batch_size: int
    eval_batch_size: int
    val_size: int | float | None
    seed: int
    device: torch.device
    download: bool
    augment: bool
    num_workers: int
    options: dict[str, Any]


class Dataset:
    """A registered data set: static facts plus `build(request) -> DataBundle`."""

    name: ClassVar[str] = ""
    num_classes: ClassVar[int | None] = None
    input_shape: ClassVar[tuple[int, ...] | None] = None
    mean: ClassVar[tuple[float, ...]] = ()
    std: ClassVar[tuple[float, ...]] = ()
    #: extra keyword options of `get_data` for this data set, with their defaults
    options: ClassVar[dict[str, Any]] = {}
    description: ClassVar[str] = ""

    def info(self, options: dict[str, Any]) -> DatasetInfo:
        """Static facts, known without reading any file (counts may be None)."""
        return DatasetInfo(self.name, self.num_classes, self.input_shape, self.mean, self.std,
                           None, None, None)

    def build(self, request: Request) -> DataBundle:
        """Read the files and return the loaders."""
        raise NotImplementedError


DATASETS: Registry[Dataset] = Registry("data set")


def register_dataset(name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[type], type]:
    """Class decorator: register an instance of the decorated Dataset subclass under `name`."""

    def decorator(cls: type) -> type:
        cls.name = name
        DATASETS.add(name, cls(), aliases=aliases)
        return cls

    return decorator


def list_datasets() -> list[str]:
    """Canonical names of the registered data sets, sorted."""
    return DATASETS.names()


def describe_datasets() -> dict[str, str]:
    """Canonical name -> one-line description, for `shrinkbench list`."""
    return {name: DATASETS.get(name).description for name in DATASETS.names()}


def _merged_options(dataset: Dataset, given: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(given) - set(dataset.options))
    if unknown:
        valid = ", ".join(sorted(dataset.options)) or "none"
        raise ConfigError(f"unknown option {unknown[0]!r} for data set {dataset.name!r}; "
                          f"valid options: {valid}")
    return {**dataset.options, **given}


def dataset_info(name: str, **options: Any) -> DatasetInfo:
    """Static facts of data set `name` (num_classes, input_shape, statistics) without loading it."""
    dataset = DATASETS.get(name)
    return dataset.info(_merged_options(dataset, options))


def user_cache_dir() -> Path:
    """The per-user cache folder of shrinkbench (XDG on Linux, Library/Caches on macOS)."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "shrinkbench"


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where data sets live: `data_dir`, else $SHRINKBENCH_DATA, else <user cache>/shrinkbench/data."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get("SHRINKBENCH_DATA")
    if env:
        return Path(env).expanduser()
    return user_cache_dir() / "data"


def _check_int(field: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{field} must be an integer >= {minimum}, got {value!r}")
    return value


def _check_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device {device!r} is not a valid torch device ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {str(device)!r} requested but CUDA is not available; use 'cpu'")
    return dev


def get_data(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 128,
    eval_batch_size: int | None = None,
    val_size: int | float | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    download: bool = False,
    augment: bool = True,
    num_workers: int = 0,
    **options: Any,
) -> DataBundle:
    """Load data set `name` and return its train/val/test loaders and info."""
    dataset = DATASETS.get(name)
    if val_size is not None and not (
        (isinstance(val_size, int) and not isinstance(val_size, bool) and val_size >= 0)
        or (isinstance(val_size, float) and 0.0 <= val_size < 1.0)
    ):
        raise ConfigError(f"val_size must be an integer >= 0 or a fraction in [0, 1), got {val_size!r}")
    request = Request(
        name=dataset.name,
        root=resolve_data_dir(data_dir),
        batch_size=_check_int("batch_size", batch_size, 1),
        eval_batch_size=_check_int("eval_batch_size",
                                   batch_size if eval_batch_size is None else eval_batch_size, 1),
        val_size=val_size,
        seed=_check_int("seed", seed, 0),
        device=_check_device(device),
        download=bool(download),
        augment=bool(augment),
        num_workers=_check_int("num_workers", num_workers, 0),
        options=_merged_options(dataset, options),
    )
    return dataset.build(request)


def resolve_val_size(val_size: int | float | None, default: int | float, available: int,
                     name: str) -> int:
    """The number of held-out validation samples out of `available` training samples."""
    chosen = default if val_size is None else val_size
    count = int(round(chosen * available)) if isinstance(chosen, float) else int(chosen)
    if count >= available:
        raise ConfigError(f"val_size {chosen!r} leaves no training data for {name!r} "
                          f"({available} training samples); choose fewer than {available}")
    return count


def with_counts(info: DatasetInfo, num_train: int, num_val: int, num_test: int) -> DatasetInfo:
    """`info` with the split sizes filled in."""
    return replace(info, num_train=num_train, num_val=num_val, num_test=num_test)
