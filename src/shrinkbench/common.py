"""Names and small helpers shared by several layers (stdlib only, no torch)."""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from typing import Any, Mapping, MutableMapping

from .errors import CheckpointError, ConfigError, ShrinkBenchError

MODEL_FILE = "model.pt"
METRICS_FILE = "metrics.json"
EPOCHS_FILE = "epochs.csv"
LAYERS_FILE = "layers.csv"
CONFIG_FILE = "config.yaml"
CHECKPOINT_FILE = "checkpoint.pt"

RUNS_DIR = "runs"
DENSE_DIR = "dense"
DB_NAME = "results.sqlite"

MASK_SUFFIX = "_mask"

DENSE_SECTIONS: tuple[str, ...] = ("data", "model", "dense", "seed", "threads", "precision", "channels_last")

METRIC_KEYS: tuple[str, ...] = (
    *(f"{stage}_{split}_{m}" for stage in ("dense", "pre", "post") for split in ("val", "test")
      for m in ("acc1", "acc5", "loss")),
    "params_total",
    "params_nonzero",
    "compression_ratio",
    "size_dense_bytes",
    "size_sparse_bytes",
    "macs_dense",
    "macs_sparse",
    "speedup",
    "time_dense_s",
    "time_prune_s",
    "time_finetune_s",
    "time_total_s",
)

# Metrics that are measurements of this machine at this moment (wall time, latency), not results:
# the same run id gives the same numbers everywhere except these.
MEASURED_PREFIXES: tuple[str, ...] = ("time_", "latency_", "speedup_measured", "env")


def is_measured(key: str) -> bool:
    """Whether a metric is a wall-clock measurement (excluded from bit-for-bit comparisons)."""
    return key.startswith(MEASURED_PREFIXES)


STATE_DICT_KEYS: tuple[str, ...] = ("state_dict", "model")

_BLOCK = 1 << 20


@lru_cache(maxsize=256)
def _digest(path: str, size: int, mtime_ns: int, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def file_digest(path: str | os.PathLike[str], algorithm: str) -> str:
    """Hex digest of a file's content, memoized by (resolved path, size, mtime_ns, algorithm)."""
    resolved = os.path.realpath(path)
    stat = os.stat(resolved)
    return _digest(resolved, stat.st_size, stat.st_mtime_ns, algorithm)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's content, memoized by (resolved path, size, mtime_ns)."""
    return file_digest(path, "sha256")


def _is_tensor(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype")


def unwrap_state_dict(
    obj: Any, source: str, error: type[ShrinkBenchError] = CheckpointError
) -> dict[str, Any]:
    """The state dict (str -> tensor) in a loaded checkpoint: `obj`, or its 'state_dict' or 'model' entry.

    `source` names the checkpoint in the message of `error`, e.g. "weights file /tmp/a.pt".
    """
    if isinstance(obj, Mapping):
        for key in STATE_DICT_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise error(
            f"{source} holds no state_dict (expected a dict of tensors, "
            f"or a dict with a 'state_dict' or 'model' entry)"
        )
    for key, value in obj.items():
        if not isinstance(key, str) or not _is_tensor(value):
            raise error(f"{source} is not a state_dict: entry {key!r} is not a tensor")
        problem = _not_dense(value)
        if problem:
            raise error(f"{source}: entry {key!r} is {problem}; expected dense tensors")
    return dict(obj)


def _not_dense(tensor: Any) -> str | None:
    """What keeps `tensor` from being an ordinary dense tensor with data (None when it is one)."""
    if getattr(tensor, "is_meta", False):
        return "a meta tensor (it has a shape but no data)"
    layout = str(getattr(tensor, "layout", "torch.strided"))
    if layout != "torch.strided":
        return f"a sparse tensor (layout {layout})"
    return None


def get_dotted(tree: Any, dotted: str, default: Any = None) -> Any:
    """The value at `a.b.c` in nested mappings, or `default` when a part of the path is missing."""
    node = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def set_dotted(tree: MutableMapping[str, Any], dotted: str, value: Any) -> None:
    """Set `a.b.c` in nested dicts in place, creating missing (or None) sections.

    Raises ConfigError naming the key when it has an empty part or a non-dict value is in the way.
    """
    parts = dotted.split(".")
    if not all(parts):
        raise ConfigError(f"{dotted!r} is not a dotted key (expected e.g. finetune.lr)")
    node = tree
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, MutableMapping):
            raise ConfigError(f"{'.'.join(parts[:i + 1])}: is not a section, cannot set {dotted!r}")
        node = child
    node[parts[-1]] = value


def flatten_dotted(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one dict with dotted keys: {"a": {"b": 1}} -> {"a.b": 1} (empty sections vanish)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten_dotted(value, name))
        else:
            out[name] = value
    return out
