"""Resumable checkpoints: written to a temporary name and renamed, read with weights_only=True."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..models.weights import load_failure
from ..results.files import atomic_write_bytes

CHECKPOINT = "checkpoint.pt"
FORMAT = 1


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write `state` (tensors, state dicts, plain data) atomically. Not fsynced: the rename already
    survives a killed process, and a checkpoint lost to a power cut only makes the run start over."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buffer)
    return atomic_write_bytes(path, buffer.getvalue(), durable=False)


def save_state_dict(path: str | os.PathLike, state: dict[str, torch.Tensor]) -> Path:
    """Write a plain state dict atomically (loadable by models.load_weights / masks.load_state_dict)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def load_state(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """torch.load with weights_only=True; unreadable files raise CheckpointError naming the file."""
    file = Path(path)
    if file.is_dir():
        raise CheckpointError(f"checkpoint {str(file)!r} is a directory, not a file")
    if not file.is_file():
        raise CheckpointError(f"checkpoint {str(file)!r} does not exist")
    try:
        return torch.load(file, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        raise CheckpointError(f"checkpoint {str(file)!r} cannot be loaded: {load_failure(exc)}") from None


def load_checkpoint(path: str | os.PathLike, run: str) -> dict[str, Any] | None:
    """The resumable state of run/dense id `run`, or None when there is none (or it is unusable)."""
    file = Path(path)
    if not file.is_file():
        return None
    try:
        state = load_state(file)
    except CheckpointError:
        return None  # e.g. written by another version: start the run over
    if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("id") != run:
        return None
    return state


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict on the CPU, contiguous (masks included, as buffers)."""
    return {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
