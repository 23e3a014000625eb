"""ImageNet and any folder of class sub-folders: Pillow decoding in DataLoader workers."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, ClassVar, Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from ..errors import ConfigError, DataError, DataNotFound
from .base import DataBundle, Dataset, DatasetInfo, Request, register_dataset, resolve_val_size
from .base import with_counts
from .loader import (AUGMENT_STREAM, SHUFFLE_STREAM, calibration_indices, check_samples,
                     epoch_generator, normalizer, num_batches)
from .memory import holdout

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".webp", ".tif", ".tiff")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _contains(outer: str, inner: str) -> bool:
    """Whether real path `outer` is `inner` or one of its parents."""
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)


def _first_visit(path: str, seen: set[str], root: str) -> bool:
    """Whether the real folder behind `path` is new: not in `seen` (then it is added) and not a
    parent of `root` (a link up the tree, which would lead back into it)."""
    real = os.path.realpath(path)
    if real in seen or _contains(real, root):
        return False
    seen.add(real)
    return True


def scan_folder(folder: Path, classes: Sequence[str] | None = None
                ) -> tuple[list[str], list[tuple[str, int]]]:
    """(class names, [(image path, label)]) of a folder of class sub-folders, in sorted order.

    With `classes` given (those of the training folder), labels follow them and a sub-folder
    not among them is an error.
    """
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist")
    found = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if classes is None:
        classes = found
    else:
        extra = sorted(set(found) - set(classes))
        if extra:
            raise DataError(f"{folder} has class folders that the training folder lacks: "
                            f"{', '.join(extra[:5])}")
    if not classes:
        raise DataError(f"image folder {folder} has no class sub-folders")
    index = {name: i for i, name in enumerate(classes)}
    root = os.path.realpath(folder)
    # Each real folder is entered once: links to a folder already seen (a loop back to a parent or
    # to itself, or into another class) are skipped, so no image is counted twice.
    seen = {root}
    for name in found:
        real = os.path.realpath(folder / name)
        if _contains(real, root):
            raise DataError(f"class folder {folder / name} links to {real}, which contains it (a "
                            "loop); remove the link")
        seen.add(real)
    samples = []
    for name in found:
        for dirpath, dirnames, files in os.walk(folder / name, followlinks=True):
            dirnames[:] = [d for d in sorted(dirnames)
                           if _first_visit(os.path.join(dirpath, d), seen, root)]
            samples.extend((os.path.join(dirpath, f), index[name]) for f in sorted(files)
                           if f.lower().endswith(IMAGE_EXTENSIONS))
    if not samples:
        raise DataError(f"image folder {folder} has no images ({', '.join(IMAGE_EXTENSIONS)})")
    return list(classes), samples


def random_resized_box(width: int, height: int, rng: np.random.Generator,
                       scale: tuple[float, float] = (0.08, 1.0),
                       ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of a random crop covering `scale` of the area at aspect `ratio`."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            left = int(rng.integers(0, width - w + 1))
            top = int(rng.integers(0, height - h + 1))
            return left, top, left + w, top + h
    # fallback: the largest centred crop with the aspect clamped into `ratio`
    aspect = width / height
    w, h = width, height
    if aspect < ratio[0]:
        h = int(round(width / ratio[0]))
    elif aspect > ratio[1]:
        w = int(round(height * ratio[1]))
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


def center_box(width: int, height: int, image_size: int, resize_size: int) -> tuple[float, ...]:
    """The box that resizing the shorter side to `resize_size` then centre-cropping keeps."""
    side = min(width, height) * image_size / resize_size
    left, top = (width - side) / 2, (height - side) / 2
    return left, top, left + side, top + side


class ImageFolderSet(torch.utils.data.Dataset):
    """Decodes one image per key (index, epoch, train) into a uint8 (H, W, 3) array."""

    def __init__(self, samples: Sequence[tuple[str, int]], image_size: int, resize_size: int,
                 seed: int) -> None:
        self.samples = list(samples)
        self.image_size = image_size
        self.resize_size = resize_size
        self.seed = seed

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int, bool]) -> tuple[np.ndarray | None, int, str | None]:
        index, epoch, train = key
        path, label = self.samples[index]
        size = (self.image_size, self.image_size)
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
                if train:
                    rng = np.random.default_rng([self.seed, epoch, index, AUGMENT_STREAM])
                    box = random_resized_box(img.width, img.height, rng)
                    img = img.resize(size, Image.BILINEAR, box=box)
                    if rng.random() < 0.5:
                        img = img.transpose(Image.FLIP_LEFT_RIGHT)
                else:
                    box = center_box(img.width, img.height, self.image_size, self.resize_size)
                    img = img.resize(size, Image.BILINEAR, box=box)
                return np.asarray(img, dtype=np.uint8), label, None
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            # Reported from the main process, so the user sees one line naming the file.
            return None, label, f"image {path} cannot be decoded ({type(exc).__name__}: {exc})"


def collate_images(items: list[tuple[np.ndarray | None, int, str | None]]
                   ) -> tuple[torch.Tensor | None, torch.Tensor | None, str | None]:
    """Stack decoded images into a uint8 (N, 3, H, W) batch, or pass on the first error."""
    for _, _, error in items:
        if error:
            return None, None, error
    x = torch.from_numpy(np.stack([arr for arr, _, _ in items])).permute(0, 3, 1, 2).contiguous()
    return x, torch.tensor([label for _, label, _ in items], dtype=torch.int64), None


class FolderLoader:
    """Batches of decoded images, normalized on `device`; same interface as TensorLoader."""

    def __init__(self, dataset: ImageFolderSet, *, batch_size: int, shuffle: bool, augment: bool,
                 seed: int, device: torch.device, mean: Sequence[float], std: Sequence[float],
                 num_workers: int = 0, drop_last: bool = False) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.seed = seed
        self.device = torch.device(device)
        self.scale, self.shift = normalizer(mean, std, 255.0, self.device)
        self.num_workers = num_workers
        self.drop_last = drop_last
        self.epoch = 0

    @property
    def num_samples(self) -> int:
        """Images in this split."""
        return len(self.dataset)

    def __len__(self) -> int:
        return num_batches(self.num_samples, self.batch_size, self.drop_last)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch `epoch`."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self.epoch
        self.epoch += 1
        n = self.num_samples
        order = range(n)
        if self.shuffle:
            gen = epoch_generator(self.seed, epoch, SHUFFLE_STREAM)
            order = torch.randperm(n, generator=gen).tolist()
        keys = [(i, epoch, self.augment) for i in order]
        yield from self._load([keys[b * self.batch_size:(b + 1) * self.batch_size]
                               for b in range(len(self))])

    def check_calibration(self, samples: int, length: int | None = None) -> None:
        """Refuse a draw the split cannot give (images have a fixed shape: no length)."""
        check_samples(self.num_samples, samples)

    def calibration(self, samples: int, seed: int, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """`samples` training images drawn at random by `seed` (not augmented), in batches."""
        keys = [(i, 0, False) for i in calibration_indices(self.num_samples, samples, seed).tolist()]
        return list(self._load([keys[b:b + batch_size] for b in range(0, len(keys), batch_size)]))

    def _load(self, batches: list[list[tuple[int, int, bool]]]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=batches, num_workers=self.num_workers,
            collate_fn=collate_images, pin_memory=self.device.type == "cuda")
        for x, y, error in loader:
            if error:
                raise DataError(error)
            x = x.to(self.device, non_blocking=True) * self.scale
            yield x.add_(self.shift), y.to(self.device, non_blocking=True)


class ImageFolderDataset(Dataset):
    """`train/` and `val/` folders of class sub-folders; `val/` serves as the test split."""

    default_val_size: ClassVar[int | float] = 0
    mean = IMAGENET_MEAN
    std = IMAGENET_STD
    options: ClassVar[dict[str, Any]] = {
        "root": None, "image_size": 224, "resize_size": 256, "train_folder": "train",
        "test_folder": "val", "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "split_seed": 0,
    }

    def root(self, data_dir: Path, options: dict[str, Any]) -> Path:
        """The folder holding train/ and val/: the `root` option, else <data dir>/<name>."""
        return Path(options["root"]).expanduser() if options["root"] else data_dir / self.name

    def _sizes(self, options: dict[str, Any]) -> tuple[int, int]:
        image, resize = options["image_size"], options["resize_size"]
        for key, value in (("image_size", image), ("resize_size", resize)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"option {key} must be a positive integer, got {value!r}")
        if resize < image:
            raise ConfigError(f"option resize_size ({resize}) must be >= image_size ({image})")
        return image, resize

    def _stats(self, options: dict[str, Any]) -> tuple[tuple[float, ...], tuple[float, ...]]:
        mean, std = tuple(map(float, options["mean"])), tuple(map(float, options["std"]))
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ConfigError(f"options mean and std must be 3 values (RGB), std > 0; "
                              f"got mean={options['mean']!r}, std={options['std']!r}")
        return mean, std

    def info(self, options: dict[str, Any]) -> DatasetInfo:
        """Classes (fixed, or counted from the `root` option's train folder) and input shape."""
        size, _ = self._sizes(options)
        mean, std = self._stats(options)
        classes = self.num_classes
        train_dir = Path(options["root"] or ".") / options["train_folder"]
        if classes is None and options["root"] and train_dir.is_dir():
            classes = sum(1 for d in train_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
        return DatasetInfo(self.name, classes, (3, size, size), mean, std, None, None, None)

    def build(self, request: Request) -> DataBundle:
        """Scan the folders, hold out the validation images, and make the loaders."""
        options = request.options
        size, resize = self._sizes(options)
        mean, std = self._stats(options)
        root = self.root(request.root, options)
        train_dir, test_dir = root / options["train_folder"], root / options["test_folder"]
        if not (train_dir.is_dir() and test_dir.is_dir()):
            raise DataNotFound(
                f"data set {self.name!r} not found: expected the folders {train_dir} and "
                f"{test_dir}, each with one sub-folder of images per class",
                folder=self.name, downloadable=False, root_option=True)
        classes, train_samples = scan_folder(train_dir)
        _, test_samples = scan_folder(test_dir, classes)
        n_val = resolve_val_size(request.val_size, self.default_val_size, len(train_samples),
                                 self.name)
        train_idx, val_idx = holdout(len(train_samples), n_val, options["split_seed"])

        def loader(samples: list[tuple[str, int]], train: bool) -> FolderLoader:
            return FolderLoader(
                ImageFolderSet(samples, size, resize, request.seed),
                batch_size=request.batch_size if train else request.eval_batch_size,
                shuffle=train, augment=train and request.augment, seed=request.seed,
                device=request.device, mean=mean, std=std, num_workers=request.num_workers)

        train = loader([train_samples[i] for i in train_idx.tolist()], True)
        val = loader([train_samples[i] for i in val_idx.tolist()], False) if n_val else None
        test = loader(test_samples, False)
        info = DatasetInfo(self.name, len(classes), (3, size, size), mean, std, None, None, None)
        return DataBundle(train, val, test, with_counts(info, train.num_samples, n_val,
                                                        test.num_samples))


@register_dataset("imagenet", aliases=("ilsvrc2012",))
class ImageNet(ImageFolderDataset):
    """ILSVRC-2012 as train/ and val/ folders of 1,000 class sub-folders."""

    description = "ImageNet (ILSVRC-2012) from <data-dir>/imagenet/{train,val}/<class>/*.JPEG"
    num_classes = 1000
    input_shape = (3, 224, 224)


@register_dataset("imagefolder", aliases=("image-folder",))
class ImageFolder(ImageFolderDataset):
    """Any train/ and val/ folders of class sub-folders (option `root`)."""

    description = "any folder with train/ and val/ of class sub-folders (option root=...)"
