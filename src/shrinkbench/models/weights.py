"""Loading pretrained weights safely from a local file or a checksummed URL."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from ..common import MASK_SUFFIX, file_sha256, unwrap_state_dict
from ..download import fetch
from ..errors import CheckpointError, ConfigError, ModelError

_SHOW = 5  # how many offending keys a message lists


def _is_url(source: str | os.PathLike[str]) -> bool:
    return isinstance(source, str) and source.lower().startswith(("http://", "https://"))


def _check_sha256(sha256: str) -> str:
    digest = sha256.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ConfigError(f"sha256 must be 64 hexadecimal digits, got {sha256!r}")
    return digest


def load_failure(exc: BaseException) -> str:
    """One short clause from torch.load's (long, multi-line, ANSI-coloured) error messages."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    found = re.search(r"WeightsUnpickler error:\s*(.*?)(?:\. |\n\n|$)", text, re.S)
    if found:
        detail = " ".join(found.group(1).split())
        if "Unsupported global" in detail:
            return f"it holds objects other than tensors, which safe loading refuses ({detail})"
        return f"it is not a checkpoint that safe loading can read ({detail})"
    text = " ".join(text.split())
    if not text:
        return "the file ends too early" if isinstance(exc, EOFError) else type(exc).__name__
    first = text.split(". ")[0]
    return first if len(first) <= 200 else first[:197] + "..."


def _read(path: Path, label: str) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for corrupt or unsafe files
        raise CheckpointError(f"cannot read weights file {label}: {load_failure(exc)}") from None
    state = unwrap_state_dict(obj, f"weights file {label}")
    if all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOW])
    return shown + (f" (and {len(keys) - _SHOW} more)" if len(keys) > _SHOW else "")


def check_state_dict(
    model: nn.Module, state: Mapping[str, torch.Tensor], label: str, strict: bool = True
) -> None:
    """Raise ModelError if `state` does not fit `model`: missing/unexpected names or a wrong shape."""
    own = model.state_dict()
    if strict:
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if missing or unexpected:
            parts = []
            if missing:
                parts.append(f"missing keys {_listing(missing)}")
            if unexpected:
                parts.append(f"unexpected keys {_listing(unexpected)}")
            hint = ""
            if unexpected and all(k.endswith(MASK_SUFFIX) for k in unexpected):
                hint = "; these are pruning masks: load with shrinkbench.pruning.masks.load_state_dict"
            raise ModelError(
                f"weights {label} do not match the model {type(model).__name__}: "
                + "; ".join(parts) + hint
            )
    for key, value in state.items():
        if key in own and tuple(own[key].shape) != tuple(value.shape):
            raise ModelError(
                f"weights {label} do not match the model {type(model).__name__}: {key!r} has shape "
                f"{tuple(value.shape)}, expected {tuple(own[key].shape)}"
            )


def load_weights(
    model: nn.Module,
    source: str | os.PathLike[str],
    sha256: str | None = None,
    strict: bool = True,
) -> nn.Module:
    """Load a state_dict from a local file or an http(s) URL (which needs `sha256`) into `model`.

    With `strict=False` names that the model lacks or the file lacks are skipped; shapes must still
    agree. Returns the model.
    """
    digest = None if sha256 is None else _check_sha256(sha256)
    if _is_url(source):
        url = str(source)
        if digest is None:
            raise ConfigError(f"loading weights from {url} needs sha256= (the file's expected SHA-256)")
        with tempfile.TemporaryDirectory(prefix="shrinkbench-weights-") as tmp:
            dest = Path(tmp) / "weights.pt"
            fetch(url, dest, sha256=digest, timeout=60.0)
            state = _read(dest, url)
        label = url
    else:
        path = Path(source).expanduser()
        label = str(path)
        if path.is_dir():
            raise CheckpointError(f"weights file {label} is a directory, not a file")
        if not path.is_file():
            raise CheckpointError(f"weights file {label} does not exist")
        if digest is not None:
            actual = file_sha256(path)
            if actual != digest:
                raise CheckpointError(f"weights file {label} has sha256 {actual}, expected {digest}")
        state = _read(path, label)
    check_state_dict(model, state, label, strict)
    model.load_state_dict(state, strict=strict)
    return model
