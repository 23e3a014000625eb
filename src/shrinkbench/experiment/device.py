"""Device choice, bf16 autocast, channels-last, and the environment a run records."""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from typing import Any, ContextManager, Callable

import numpy
import torch
from torch import nn

from .. import __version__


def resolve_device(name: str) -> torch.device:
    """`auto` -> CUDA when available, else CPU; anything else as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast_factory(device: torch.device, precision: str) -> Callable[[], ContextManager[Any]]:
    """A zero-argument context factory: bf16 autocast on `device`, or a no-op for fp32."""
    if precision == "bf16":
        return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def use_channels_last(enabled: bool, input_shape: tuple[int, ...]) -> bool:
    """Channels-last applies only to image batches (C, H, W examples)."""
    return bool(enabled) and len(input_shape) == 3


def place_model(model: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    """Move the model to `device`, in channels-last memory format when asked."""
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def environment(device: torch.device) -> dict[str, Any]:
    """Versions, platform and device of this process, as plain strings and numbers."""
    env: dict[str, Any] = {
        "shrinkbench": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count() or 0,
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "device_name": platform.processor() or platform.machine(),
        "cuda": torch.version.cuda or "",
    }
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
        env["cudnn"] = str(torch.backends.cudnn.version())
    return env


@contextlib.contextmanager
def pinned_threads(threads: int):
    """Torch's intra-op thread count set to `threads` inside, the caller's restored after.

    CPU kernels split their reductions by thread, so a run's numbers depend on this count in the
    last bits; pinning it per run makes them a function of the run id alone, whatever the executor,
    the worker count or OMP_NUM_THREADS.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
