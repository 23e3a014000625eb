"""Run and dense-model ids: hashes of the canonical config, so that the same config is the same run.

Each section's canonical JSON is computed once and kept on the (immutable) section, so the ids of
the many configs of a sweep, which share most of their sections, cost one small join and a hash.
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any

from ..common import DENSE_SECTIONS, file_sha256
from .validate import section_fields, to_plain

ID_LENGTH = 16

# Fields that change no number a run produces: left out of the run id and the dense id.
UNHASHED = ("data.data_dir", "data.download", "data.num_workers", "device", "checkpoint_every",
            "plugins")
_UNHASHED_IN = {"data": {"data_dir", "download", "num_workers"}}
_UNHASHED_TOP = {key for key in UNHASHED if "." not in key}
_CACHE = "_sb_json"
# Fields added after run ids were first published: hashed only when they differ from their
# default, so that every earlier run keeps its id (and a finished run is still found).
_HASHED_IF_SET = {"pruning": {"target": "compression", "round_to": 1, "allocation": None,
                               "classifier_rate": 1.0, "calibration_samples": None,
                               "calibration_length": None, "calibration_seed": None}}
_SECTIONS_IF_SET = ("latency", "schedule")


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces: the text that is hashed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _section_json(name: str, section: Any) -> str:
    cached = section.__dict__.get(_CACHE)
    if cached is None:
        tree = to_plain(section)
        for key in _UNHASHED_IN.get(name, ()):
            tree.pop(key, None)
        for key, default in _HASHED_IF_SET.get(name, {}).items():
            if tree.get(key) == default:
                tree.pop(key, None)
        if name == "dense" and tree["source"] != "train":
            tree = {"source": "sha256:" + file_sha256(tree["source"])}  # the bytes, not the path
        cached = canonical_json(tree)
        section.__dict__[_CACHE] = cached
    return cached


_SCALARS: dict[tuple[type, Any], str] = {}


def _scalar_json(value: Any) -> str:
    key = (type(value), value) if isinstance(value, (int, float, str, bool, type(None))) else None
    if key is None:
        return canonical_json(to_plain(value))
    text = _SCALARS.get(key)
    if text is None:
        text = _SCALARS[key] = canonical_json(value)
    return text


def hashed_parts(cfg: Any) -> dict[str, str]:
    """Top-level key (sorted) -> canonical JSON of what is hashed under it."""
    parts = {}
    sections = section_fields(type(cfg))
    for name in _hashed_names(type(cfg)):
        value = getattr(cfg, name)
        if name in _SECTIONS_IF_SET and value == type(value)():
            continue
        parts[name] = _section_json(name, value) if name in sections else _scalar_json(value)
    return parts


@functools.lru_cache(maxsize=None)
def _hashed_names(cls: type) -> tuple[str, ...]:
    return tuple(sorted(name for name in cls.__dataclass_fields__ if name not in _UNHASHED_TOP))


def _digest(parts: dict[str, str], keys: Any) -> str:
    text = "{" + ",".join(f'"{k}":{parts[k]}' for k in keys) + "}"  # keys: sorted identifiers
    return hashlib.sha256(text.encode()).hexdigest()[:ID_LENGTH]


def hashed_tree(cfg: Any) -> dict[str, Any]:
    """The canonical config as hashed (unhashed fields dropped, a dense checkpoint by its content)."""
    return {k: json.loads(v) for k, v in hashed_parts(cfg).items()}


def compute_ids(cfg: Any) -> tuple[str, str]:
    """(run id, dense id) of a built config."""
    parts = hashed_parts(cfg)
    return _digest(parts, parts), _digest(parts, [k for k in parts if k in DENSE_SECTIONS])
