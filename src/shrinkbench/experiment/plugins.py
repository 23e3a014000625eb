"""Plugins: user modules that register strategies, models or data sets, imported in every process.

A plugin is an importable module name (`my_lab.methods`) or a `.py` file. Configs and sweep specs
list them under `plugins:`, the CLI takes `--plugin`, and installed packages can declare them in
the `shrinkbench.plugins` entry-point group. Each process imports each plugin once: the driver
before it builds a config, a worker before it runs a job.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Iterable

from ..data import DATASETS
from ..errors import ConfigError
from ..models import MODELS
from ..pruning import STRATEGIES
from .validate import NO_STRATEGY

ENTRY_POINT_GROUP = "shrinkbench.plugins"
_LOADED: dict[str, Any] = {}
_ENTRY_POINTS_LOADED = False


def _is_file(spec: str) -> bool:
    return spec.endswith(".py") or os.sep in spec or "/" in spec


def resolve_plugins(specs: Iterable[str], base_dir: str | os.PathLike | None = None) -> tuple[str, ...]:
    """Plugin names as every process can use them: files as absolute paths, duplicates dropped."""
    out: dict[str, None] = {}
    for spec in specs:
        if not isinstance(spec, str) or not spec.strip():
            raise ConfigError(f"plugins: expected a module name or a .py file, got {spec!r}")
        spec = spec.strip()
        if _is_file(spec):
            path = Path(spec).expanduser()
            if not path.is_absolute():
                path = Path(base_dir or ".") / path
            if path.is_dir():
                raise ConfigError(f"plugins: {str(path)!r} is a directory, not a .py file")
            if not path.is_file():
                raise ConfigError(f"plugins: file {str(path)!r} does not exist")
            spec = str(path.resolve())
        out[spec] = None
    return tuple(out)


def _import_file(path: str) -> Any:
    text = Path(path).read_bytes()
    digest = hashlib.sha256(path.encode() + b"\0" + text).hexdigest()[:12]
    name = f"shrinkbench_plugin_{Path(path).stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"plugins: file {path!r} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    folder = str(Path(path).parent)
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)  # so that the plugin can import its neighbours
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    finally:
        if added:
            sys.path.remove(folder)
    return module


def load_plugin(spec: str) -> Any:
    """Import one plugin (once per process); an error names the plugin."""
    if spec in _LOADED:
        return _LOADED[spec]
    try:
        module = _import_file(spec) if _is_file(spec) else importlib.import_module(spec)
    except ConfigError:
        raise
    except ModuleNotFoundError as exc:
        if _is_file(spec) or exc.name != spec.split(".")[0] and exc.name != spec:
            raise ConfigError(f"plugins: {spec!r} failed to import: {exc}") from None
        if Path(spec).is_dir():
            raise ConfigError(f"plugins: {spec!r} is a directory and no importable module; give a "
                              ".py file or a module name") from None
        raise ConfigError(f"plugins: no module named {spec!r} (give an importable module or a .py "
                          "file)") from None
    except ValueError as exc:  # e.g. a name registered twice
        raise ConfigError(f"plugins: {spec!r}: {exc}") from None
    except (Exception, SystemExit) as exc:  # the plugin's own code failed: a user error, one line
        where = ""
        if isinstance(exc, SyntaxError) and exc.lineno:
            where = f" (line {exc.lineno})"
        detail = " ".join(str(exc).split())[:200]
        raise ConfigError(f"plugins: {spec!r} failed to import{where}: {type(exc).__name__}: "
                          f"{detail}") from None
    _LOADED[spec] = module
    return module


def load_entry_points() -> list[str]:
    """Import the plugins that installed packages declare in the `shrinkbench.plugins` group."""
    global _ENTRY_POINTS_LOADED
    names = []
    if _ENTRY_POINTS_LOADED:
        return names
    _ENTRY_POINTS_LOADED = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        key = f"entry point {ep.name} ({ep.value})"
        if key in _LOADED:
            continue
        try:
            _LOADED[key] = ep.load()
        except Exception as exc:
            raise ConfigError(f"plugins: {key} failed to import: {exc}") from None
        names.append(key)
    return names


def load_plugins(specs: Iterable[str] = ()) -> None:
    """Import the entry-point plugins and then `specs` (each once per process)."""
    load_entry_points()
    for spec in specs:
        load_plugin(spec)


def defined_in_main(obj: Any) -> bool:
    """Whether `obj` (a registered function or class) was defined in the `__main__` script, which
    spawned worker processes and Ray workers do not run."""
    for attr in ("score", "fn", "factory", "cls"):
        obj = getattr(obj, attr, obj)
    return getattr(obj, "__module__", None) in ("__main__", "__mp_main__")


def _registered(cfg: Any) -> Iterable[tuple[str, str, Any]]:
    """(config field, name, registry) of the names a run uses."""
    yield "data.name", cfg.data.name, DATASETS
    yield "model.name", cfg.model.name, MODELS
    if cfg.pruning.strategy != NO_STRATEGY:
        yield "pruning.strategy", cfg.pruning.strategy, STRATEGIES


def check_registered(cfg: Any) -> None:
    """In a worker: every name the run uses is registered here (its plugins were imported)."""
    for path, name, registry in _registered(cfg):
        if name not in registry:
            raise ConfigError(
                f"{path}: {name!r} is not registered in this worker process (pid {os.getpid()}): "
                "the code that registers it was not imported here; name its module or file with "
                "--plugin (or `plugins:` in the config) so that every worker imports it")


def check_portable(cfg: Any) -> None:
    """Before sending runs to other processes: refuse names registered by the `__main__` script,
    which workers do not run."""
    for path, name, registry in _registered(cfg):
        if name in registry and defined_in_main(registry.get(name)):
            raise ConfigError(
                f"{path}: {name!r} is registered in the __main__ script, which worker processes do "
                "not run; move it into a module or .py file and name it with --plugin (or "
                "`plugins:` in the config), or use the local executor")
