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

import yaml

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


def finite(obj: Any) -> Any:
    """`obj` with every non-finite float (inf, -inf, nan) replaced by None, numpy values made plain."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (str, int, type(None))):
        return obj
    if isinstance(obj, Mapping):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    try:
        plain = json_default(obj)
    except TypeError:
        return obj  # json.dumps raises the same TypeError, naming the value
    return finite(plain)


def to_json(obj: Any, *, canonical: bool = False, strict: bool = True) -> str:
    """JSON text of `obj`; canonical = sorted keys, no spaces. Strict JSON writes non-finite floats
    as null, never Infinity or NaN; `strict=False` keeps them (the store, read back by Python)."""
    if strict:
        obj = finite(obj)
    if canonical:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=not strict,
                          default=json_default)
    return json.dumps(obj, sort_keys=True, indent=2, allow_nan=not strict, default=json_default)


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


# Limits of what a YAML file may ask for: configs and sweep specs are small and shallow, so these
# refuse only hostile files (alias bombs, self-referencing aliases, nesting that overflows Python).
YAML_MAX_DEPTH = 100
YAML_MAX_ALIAS_NODES = 10_000
_MERGE_TAG = "tag:yaml.org,2002:merge"


class YAMLRefused(yaml.MarkedYAMLError):
    """A YAML document that parses but is refused: duplicate keys, alias bombs, cycles, deep nesting."""


class _Loader(yaml.SafeLoader):
    """safe_load with duplicate keys, alias expansion, alias cycles and nesting depth bounded."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0
        self._open: set[str] = set()
        self._alias_nodes = 0
        self._shape: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded nodes, depth)

    def _expanded(self, node: yaml.Node) -> tuple[int, int]:
        known = self._shape.get(id(node))
        if known is None:
            size, depth = 1, 1
            if isinstance(node, yaml.SequenceNode):
                children = node.value
            elif isinstance(node, yaml.MappingNode):
                children = [n for pair in node.value for n in pair]
            else:
                children = []
            for child in children:
                s, d = self._expanded(child)
                size, depth = size + s, max(depth, d + 1)
            known = self._shape[id(node)] = (size, depth)
        return known

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            if event.anchor in self._open:
                raise YAMLRefused(problem=f"alias *{event.anchor} refers to itself (a cycle)",
                                  problem_mark=event.start_mark)
            node = super().compose_node(parent, index)
            size, depth = self._expanded(node)
            self._alias_nodes += size
            if self._alias_nodes > YAML_MAX_ALIAS_NODES:
                raise YAMLRefused(problem=f"aliases expand to more than {YAML_MAX_ALIAS_NODES:,} "
                                  "values", problem_mark=event.start_mark)
            if self._depth + depth > YAML_MAX_DEPTH:
                raise YAMLRefused(problem=f"nested more than {YAML_MAX_DEPTH} levels deep",
                                  problem_mark=event.start_mark)
            return node
        event = self.peek_event()
        if self._depth >= YAML_MAX_DEPTH:
            raise YAMLRefused(problem=f"nested more than {YAML_MAX_DEPTH} levels deep",
                              problem_mark=event.start_mark)
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            self._open.add(anchor)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
            self._open.discard(anchor)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: the base class refuses it
                    continue
                if duplicate:
                    raise YAMLRefused(problem=f"duplicate key {key!r}", problem_mark=key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _construct_int(loader: _Loader, node: yaml.ScalarNode) -> int | str:
    if ":" in str(node.value):  # YAML 1.1 reads 2:4 as 124 (base 60); YAML 1.2 and people: "2:4"
        return loader.construct_scalar(node)
    try:
        return yaml.SafeLoader.construct_yaml_int(loader, node)
    except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
        raise YAMLRefused(problem="an integer with too many digits",
                          problem_mark=node.start_mark) from None


def _construct_float(loader: _Loader, node: yaml.ScalarNode) -> float | str:
    if ":" in str(node.value):  # a base-60 float (1:30.5) in YAML 1.1: a string, as in YAML 1.2
        return loader.construct_scalar(node)
    return yaml.SafeLoader.construct_yaml_float(loader, node)


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)


def parse_yaml(text: str) -> Any:
    """The YAML document in `text`, read like yaml.safe_load but refusing duplicate keys, alias
    cycles, alias expansion beyond YAML_MAX_ALIAS_NODES values and nesting beyond YAML_MAX_DEPTH
    (as YAMLRefused); other syntax errors raise yaml.YAMLError."""
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    except RecursionError:
        raise YAMLRefused(problem="nested too deeply") from None
    finally:
        loader.dispose()


def yaml_problem(exc: yaml.YAMLError) -> str:
    """One line saying what is wrong with a YAML text and at which line."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or "parse error"
    if isinstance(exc, YAMLRefused):
        return f"{problem}{where}"
    return f"invalid YAML{where}: {problem}"


def read_yaml(path: str | os.PathLike, what: str, error: type[ShrinkBenchError]) -> Any:
    """The YAML document in `path` (`parse_yaml`; an empty file is None). A missing, unreadable,
    invalid or refused file raises `error` naming it as `what` ("config file", "sweep spec", ...)."""
    file = Path(path)
    label = f"{what} {str(file)!r}"
    if file.is_dir():
        raise error(f"{label} is a directory, not a file")
    if not file.is_file():
        raise error(f"{label} does not exist")
    try:
        return parse_yaml(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise error(f"{label}: {yaml_problem(exc)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{label} cannot be read: {exc}") from None
