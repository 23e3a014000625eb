"""Run folders and atomic file writes (temporary file in the same folder, fsync, rename)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..common import DENSE_DIR, RUNS_DIR
from ..errors import ShrinkBenchError, StoreError

# Read once at import: os.umask can only be queried by setting it.
_UMASK = os.umask(0)
os.umask(_UMASK)


def json_default(obj: Any) -> Any:
    """JSON encoder fallback: numpy scalars and arrays, paths, sets, tuples."""
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", None) == 0:
        return obj.item()
    if hasattr(obj, "tolist") and callable(obj.tolist):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    raise TypeError(f"value {obj!r} of type {type(obj).__name__} is not JSON serializable")


def to_json(obj: Any, *, canonical: bool = False) -> str:
    """JSON text of `obj`; canonical = sorted keys, no spaces."""
    if canonical:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=json_default)
    return json.dumps(obj, sort_keys=True, indent=2, default=json_default)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, durable: bool = True) -> Path:
    """Write `data` to `path` atomically: a reader sees the old file or the new one, never a mix.

    `durable` also flushes the file and its folder to disk (fsync), so the write survives a power
    cut; without it the write survives a killed process, which is all a resumable checkpoint needs.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if durable:
        _fsync_dir(target.parent)
    return target


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` atomically."""
    return atomic_write_bytes(path, text.encode(encoding))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write `obj` as indented JSON with sorted keys, atomically."""
    return atomic_write_text(path, to_json(obj) + "\n")


def _plain(obj: Any) -> Any:
    """`obj` as plain lists, dicts, strings and numbers (what yaml.safe_dump accepts)."""
    return json.loads(json.dumps(obj, default=json_default))


def write_yaml(path: str | os.PathLike, obj: Any) -> Path:
    """Write `obj` as YAML (yaml.safe_dump, key order kept), atomically."""
    import yaml

    return atomic_write_text(path, yaml.safe_dump(_plain(obj), sort_keys=False))


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=json_default)
    return value


def write_csv(
    path: str | os.PathLike, rows: Iterable[Mapping[str, Any]], columns: Iterable[str] | None = None
) -> Path:
    """Write dict rows as CSV atomically; columns default to the union of keys in first-seen order."""
    rows = list(rows)
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    columns = list(columns)
    buffer = io.StringIO()
    if columns:
        writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: _csv_cell(row.get(key)) for key in columns})
    return atomic_write_text(path, buffer.getvalue())


def _check_id(kind: str, value: str) -> str:
    text = str(value)
    if not text or text in (".", "..") or "/" in text or "\\" in text or "\x00" in text:
        raise StoreError(f"{kind} {value!r} is not a valid folder name (no '/', '\\', '.' or '..')")
    return text


def run_dir(out_dir: str | os.PathLike, run_id: str, create: bool = True) -> Path:
    """The folder of pruned run `run_id`: <out_dir>/runs/<run_id> (created unless create=False)."""
    folder = Path(out_dir) / RUNS_DIR / _check_id("run id", run_id)
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    return folder


def dense_dir(out_dir: str | os.PathLike, dense_id: str, create: bool = True) -> Path:
    """The folder of dense model `dense_id`: <out_dir>/dense/<dense_id> (created unless create=False)."""
    folder = Path(out_dir) / DENSE_DIR / _check_id("dense id", dense_id)
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    return folder


def read_yaml(path: str | os.PathLike, what: str, error: type[ShrinkBenchError]) -> Any:
    """The YAML document in `path` (safe_load; an empty file is None). A missing, unreadable or
    invalid file raises `error` naming it as `what` ("config file", "sweep spec", ...)."""
    import yaml

    file = Path(path)
    label = f"{what} {str(file)!r}"
    if not file.is_file():
        raise error(f"{label} does not exist")
    try:
        return yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "parse error"
        raise error(f"{label}: invalid YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{label} cannot be read: {exc}") from None
