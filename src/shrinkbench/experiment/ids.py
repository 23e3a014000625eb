"""Run and dense-model ids: hashes of the canonical config, so the same config is the same run."""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from .config import UNHASHED, Config
from .validate import to_plain, validate

ID_LENGTH = 16


@lru_cache(maxsize=64)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's content (memoized by path, size and mtime)."""
    stat = Path(path).stat()
    return _file_digest(os.fspath(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


def _drop(tree: dict[str, Any], dotted: str) -> None:
    """Remove a dotted key, copying the dicts on its path (the caller's tree is left as it was)."""
    *parents, leaf = dotted.split(".")
    for key in parents:
        if not isinstance(tree.get(key), dict):
            return
        tree[key] = dict(tree[key])
        tree = tree[key]
    tree.pop(leaf, None)


DENSE_KEYS = ("data", "model", "dense", "seed", "precision", "channels_last")


def hashed_plain(plain: dict[str, Any]) -> dict[str, Any]:
    """A canonical plain config as hashed: unhashed fields dropped, a dense checkpoint by its content."""
    tree = dict(plain)
    for dotted in UNHASHED:
        _drop(tree, dotted)
    if tree["dense"]["source"] != "train":
        tree["dense"] = {"source": "sha256:" + file_sha256(tree["dense"]["source"])}
    return tree


def hashed_dict(cfg: Config) -> dict[str, Any]:
    """The canonical config as hashed (see hashed_plain)."""
    return hashed_plain(to_plain(validate(cfg)))


def _digest(tree: dict[str, Any]) -> str:
    text = json.dumps(tree, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:ID_LENGTH]


def ids_from_plain(plain: dict[str, Any]) -> tuple[str, str]:
    """(run id, dense id) of an already validated, canonical plain config (as config_to_dict gives):
    the same hashes as run_id and dense_id without validating again, for expanding big sweeps."""
    tree = hashed_plain(plain)
    return _digest(tree), _digest({key: tree[key] for key in DENSE_KEYS})


def run_id(cfg: Config) -> str:
    """The run's id: a hash of its canonical config without output paths and device."""
    return _digest(hashed_dict(cfg))


def dense_tree(cfg: Config) -> dict[str, Any]:
    """What fixes the trained dense model: data, model, dense recipe, seed and numerics."""
    tree = hashed_dict(cfg)
    return {key: tree[key] for key in DENSE_KEYS}


def dense_id(cfg: Config) -> str:
    """The dense model's id: every pruned run of the same (data, model, recipe, seed) shares it."""
    return _digest(dense_tree(cfg))
