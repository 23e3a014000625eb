"""The model registry: decorator registration, `create`, `list_models`, `model_info`."""

from __future__ import annotations

import fnmatch
import inspect
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from ..errors import ModelError
from ..registry import Registry

# Every constructor has this one signature:
#   fn(num_classes: int, input_shape: tuple[int, ...], generator: torch.Generator | None = None,
#      **options) -> nn.Module
# where input_shape is (channels, height, width) of one example and the options are keyword-only
# settings of that model (e.g. dropout). The constructor sets `shrinkbench_classifier`.
ModelFn = Callable[..., nn.Module]

_RESERVED = ("num_classes", "input_shape", "generator")


@dataclass(frozen=True)
class ModelInfo:
    """What the zoo knows about a model before building it."""

    name: str
    family: str
    default_input_shape: tuple[int, ...]
    default_num_classes: int
    description: str
    # The smallest height and width it takes: its total downsampling (a ResNet-50 halves its input
    # five times), below which its feature maps collapse and it computes nothing meaningful.
    min_size: int = 1


@dataclass(frozen=True)
class ModelEntry:
    """A registered constructor with its info."""

    info: ModelInfo
    fn: ModelFn

    def options(self) -> dict[str, Any]:
        """The constructor's own keyword options and their defaults."""
        params = inspect.signature(self.fn).parameters.values()
        return {
            p.name: p.default
            for p in params
            if p.name not in _RESERVED and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        }


MODELS: Registry[ModelEntry] = Registry("model")


def register_model(
    name: str,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    family: str,
    description: str | None = None,
    aliases: tuple[str, ...] = (),
    min_size: int = 1,
) -> Callable[[ModelFn], ModelFn]:
    """Decorator registering a model constructor under `name` with its default input and classes,
    and the smallest input height and width (`min_size`) it is meant for."""

    def decorator(fn: ModelFn) -> ModelFn:
        doc = description or (inspect.getdoc(fn) or "").split("\n")[0]
        info = ModelInfo(name, family, tuple(input_shape), int(num_classes), doc, int(min_size))
        MODELS.add(name, ModelEntry(info, fn), aliases=aliases)
        return fn

    return decorator


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted, optionally filtered by an fnmatch pattern (case-insensitive)."""
    names = MODELS.names()
    if pattern is None:
        return names
    return [n for n in names if fnmatch.fnmatchcase(n.lower(), pattern.lower())]


def model_info(name: str) -> ModelInfo:
    """The registration info of a model (name or alias)."""
    return MODELS.get(name).info


def _resolve_shape(
    name: str, info: ModelInfo, in_channels: int | None, input_shape: Any
) -> tuple[int, ...]:
    shape = info.default_input_shape if input_shape is None else input_shape
    try:
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise ModelError(
            f"model {name!r}: input_shape must be a tuple of ints like (C, H, W), got {input_shape!r}"
        ) from None
    if not shape or any(s <= 0 for s in shape):
        raise ModelError(f"model {name!r}: input_shape {shape} must be non-empty and positive")
    if in_channels is not None:
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels <= 0:
            raise ModelError(f"model {name!r}: in_channels must be a positive int, got {in_channels!r}")
        if input_shape is not None and shape[0] != in_channels:
            raise ModelError(
                f"model {name!r}: in_channels={in_channels} disagrees with input_shape={shape}"
            )
        shape = (in_channels, *shape[1:])
    return shape


def check_input_size(name: str, input_shape: tuple[int, ...]) -> None:
    """Refuse an input (C, H, W) smaller than the model's `min_size`, naming the models that fit."""
    info = MODELS.get(name).info
    shape = tuple(input_shape)
    if len(shape) >= 3 and min(shape[1:]) < info.min_size:
        fits = [n for n in MODELS.names() if MODELS.get(n).info.min_size <= min(shape[1:])
                and len(MODELS.get(n).info.default_input_shape) == len(shape)]  # images, not tokens
        raise ModelError(
            f"model {info.name!r} needs inputs of at least {info.min_size}x{info.min_size}, not "
            f"{'x'.join(map(str, shape[1:]))} (its feature maps would shrink to nothing); models "
            f"for inputs this small: {', '.join(fits) or 'none'}"
        )


def create(
    name: str,
    num_classes: int | None = None,
    in_channels: int | None = None,
    input_shape: tuple[int, ...] | None = None,
    *,
    generator: torch.Generator | None = None,
    **kw: Any,
) -> nn.Module:
    """Build a zoo model; unset sizes come from its registration, `kw` are the model's options."""
    entry = MODELS.get(name)
    info = entry.info
    classes = info.default_num_classes if num_classes is None else num_classes
    if isinstance(classes, bool) or not isinstance(classes, int) or classes <= 0:
        raise ModelError(f"model {info.name!r}: num_classes must be a positive int, got {classes!r}")
    shape = _resolve_shape(info.name, info, in_channels, input_shape)
    check_input_size(info.name, shape)
    options = entry.options()
    unknown = sorted(set(kw) - set(options))
    if unknown:
        valid = ", ".join(sorted(options)) or "none"
        raise ModelError(
            f"model {info.name!r} has no option {unknown[0]!r}; its options: {valid}"
        )
    model = entry.fn(num_classes=classes, input_shape=shape, generator=generator, **kw)
    classifier = getattr(model, "shrinkbench_classifier", None)
    if classifier is None or classifier not in dict(model.named_modules()):
        raise RuntimeError(f"zoo model {info.name!r} does not name its classifier")  # a bug
    return model
