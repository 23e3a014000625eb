"""The one mapping between shrinkbench's data set / model names and the survey's published names."""

from __future__ import annotations

import re
from typing import Iterable

# shrinkbench name -> the survey's name. Extend here (and only here) when the zoo grows.
DATASET_NAMES: dict[str, str] = {
    "mnist": "MNIST",
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "imagenet": "ImageNet",
    "ilsvrc2012": "ImageNet",
    "tinyimagenet": "Tiny ImageNet",
}

MODEL_NAMES: dict[str, str] = {
    "lenet300": "LeNet-300-100",
    "lenet300_100": "LeNet-300-100",
    "lenet5": "LeNet-5",
    "lenet5_caffe": "LeNet-5-Caffe",
    "resnet18": "ResNet-18",
    "resnet20": "ResNet-20",
    "resnet32": "ResNet-32",
    "resnet34": "ResNet-34",
    "resnet44": "ResNet-44",
    "resnet50": "ResNet-50",
    "resnet56": "ResNet-56",
    "resnet101": "ResNet-101",
    "resnet110": "ResNet-110",
    "vgg16": "VGG-16",
    "vgg19": "VGG-19",
    # the survey's name for the CIFAR-10 VGG-16 with batch norm (Zagoruyko's torch model)
    "vgg16_cifar": "VGG-Torch-CIFAR10",
    "vgg_bn_drop": "VGG-Torch-CIFAR10",
    "alexnet": "AlexNet",
    "mobilenet": "MobileNet",
    "mobilenetv2": "MobileNet-v2",
    "mobilenet_v2": "MobileNet-v2",
}


# Where the survey's name would read oddly as a heading of our own results.
DISPLAY_OVERRIDES: dict[str, str] = {"vgg16_cifar": "VGG-16 (CIFAR)", "vgg_bn_drop": "VGG-16 (CIFAR)"}


def _key(name: str) -> str:
    """Case- and punctuation-insensitive form of a name ("ResNet-56" -> "resnet56")."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def _lookup(name: str, table: dict[str, str], known: Iterable[str] | None) -> str | None:
    """The survey's spelling of `name`: the table first, then a punctuation-insensitive match in `known`."""
    for ours, theirs in table.items():
        if _key(ours) == _key(name):
            return theirs
    if known is not None:
        by_key = {_key(k): k for k in known}
        return by_key.get(_key(name))
    return None


def survey_dataset(name: str, known: Iterable[str] | None = None) -> str | None:
    """The survey's name for one of our data sets, or None when it has no counterpart."""
    return _lookup(name, DATASET_NAMES, known)


def survey_model(name: str, known: Iterable[str] | None = None) -> str | None:
    """The survey's name for one of our models, or None when it has no counterpart."""
    return _lookup(name, MODEL_NAMES, known)


def pretty_dataset(name: str) -> str:
    """A reader-facing data set name ("cifar10" -> "CIFAR-10"); unknown names pass through."""
    return survey_dataset(name) or str(name)


def pretty_model(name: str) -> str:
    """A reader-facing model name ("resnet56" -> "ResNet-56"); unknown names pass through."""
    return DISPLAY_OVERRIDES.get(str(name)) or survey_model(name) or str(name)


def pair_title(dataset: str, model: str) -> str:
    """'ResNet-56 on CIFAR-10' from our names."""
    return f"{pretty_model(model)} on {pretty_dataset(dataset)}"


# Reader-facing names of the speed columns of a results frame. `speedup` is the theoretical one (dense
# / remaining multiply-accumulates); where a report also shows the measured one, both say which is which.
METRIC_LABELS: dict[str, str] = {
    "compression_ratio": "Compression ratio",
    "speedup": "Theoretical speedup",
    "speedup_measured": "Measured speedup",
    "speedup_measured_sparse": "Measured speedup, sparse kernels",
    "latency_dense_ms": "Dense latency (ms)",
    "latency_ms": "Pruned latency (ms)",
    "latency_sparse_ms": "Pruned latency, sparse kernels (ms)",
    "latency_dense_iqr_ms": "Dense latency IQR (ms)",
    "latency_iqr_ms": "Pruned latency IQR (ms)",
    "latency_batch": "Batch",
    "latency_threads": "Threads",
    "latency_device": "Device",
    "structured": "Pruning",
    "channels_kept_fraction": "Channels kept (%)",
}


def metric_label(column: str, measured: bool = True) -> str:
    """The display name of a metric column; plain "Speedup" for `speedup` when nothing was measured
    (then there is only one kind of speedup to show)."""
    if column == "speedup" and not measured:
        return "Speedup"
    return METRIC_LABELS.get(column, column)
