"""The dense model: trained once per dense id under a file lock, cached in its folder, resumable."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import time
from pathlib import Path
from typing import Any, Iterator

from ..common import CONFIG_FILE, EPOCHS_FILE, LAYERS_FILE, METRICS_FILE, MODEL_FILE
from ..errors import StoreError
from ..metrics import compression_ratio, count_macs, count_parameters, layer_table, model_size
from ..results.files import dense_dir, write_csv, write_json, write_yaml
from .checkpoint import CHECKPOINT, load_checkpoint, model_state, save_checkpoint, save_state_dict
from .components import build_model, example_input, load_data
from .config import Config, dense_config
from .device import autocast_factory, environment, pinned_threads, resolve_device, use_channels_last
from .loops import EpochHook, evaluate_split, fit


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on `path` (fcntl), held for the block; a no-op without fcntl."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process lock
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def read_csv_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV written by write_csv, numbers and JSON lists decoded; [] when there is no file.

    A row with missing or extra cells (a truncated file) or undecodable text raises StoreError.
    """
    if not path.is_file():
        return []

    def cell(text: str) -> Any:
        if text == "":
            return None
        try:
            return json.loads(text)
        except ValueError:
            return text

    try:
        text = path.read_text(encoding="utf-8")
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise StoreError(f"{path} cannot be read: {exc}") from None
    if text and not text.endswith("\n"):  # write_csv ends every line, the last one included
        raise StoreError(f"{path} is truncated: its last line is cut")
    for number, row in enumerate(rows, start=2):
        if None in row or None in row.values():
            raise StoreError(f"{path} is truncated or corrupt: line {number} has "
                             f"{'too many' if None in row else 'too few'} cells")
    return [{k: cell(v) for k, v in row.items()} for row in rows]


def read_epochs(path: Path) -> list[dict[str, Any]]:
    """The rows of an epochs.csv, each with an integer `epoch`; StoreError when it is corrupt."""
    rows = read_csv_rows(path)
    for row in rows:
        if isinstance(row.get("epoch"), bool) or not isinstance(row.get("epoch"), int):
            raise StoreError(f"{path} is corrupt: epoch {row.get('epoch')!r} is not a whole number")
    return rows


def read_metrics(path: Path) -> dict[str, Any] | None:
    """The metrics in a metrics.json, or None when it is missing or unreadable (truncated, not JSON)."""
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None
    return metrics if isinstance(metrics, dict) else None


def finished(folder: Path) -> bool:
    """Whether a run or dense folder is complete: its metrics.json and epochs.csv read back whole.

    A folder whose files were damaged after the fact counts as unfinished, so it is done again.
    """
    if read_metrics(folder / METRICS_FILE) is None:
        return False
    try:
        read_epochs(folder / EPOCHS_FILE)
    except StoreError:
        return False
    return True


def summarize(model: Any, info: Any, device: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Parameter counts, sizes, MACs and the per-layer table of a (possibly pruned) model."""
    example = example_input(info, device)
    params = count_parameters(model)
    size = model_size(model)
    macs = count_macs(model, example)
    stats = {
        "params_total": int(params.total),
        "params_nonzero": int(params.nonzero),
        "compression_ratio": float(compression_ratio(model)),
        "size_dense_bytes": int(size.dense_bytes),
        "size_sparse_bytes": int(size.sparse_bytes),
        "macs_dense": int(macs.dense),
        "macs_sparse": float(macs.sparse),
        "speedup": float(macs.speedup),
    }
    return stats, layer_table(model, example)


def split_metrics(prefix: str, model: Any, bundle: Any, autocast: Any) -> dict[str, float]:
    """`<prefix>_{val,test}_{acc1,acc5,loss}` of the model (val omitted when there is none)."""
    out: dict[str, float] = {}
    for split in ("val", "test"):
        result = evaluate_split(model, getattr(bundle, split), autocast)
        for key, value in (result or {}).items():
            out[f"{prefix}_{split}_{key}"] = value
    return out


def _train(cfg: Config, did: str, folder: Path, progress: bool, on_epoch: EpochHook | None) -> None:
    began = time.perf_counter()
    device = resolve_device(cfg.device)
    recipe = cfg.dense.recipe
    bundle = load_data(cfg, recipe, device)
    model = build_model(cfg, bundle.info, device)
    autocast = autocast_factory(device, cfg.precision)
    ckpt_path = folder / CHECKPOINT
    state = load_checkpoint(ckpt_path, did) or {}
    if state:
        model.load_state_dict(state["model"])
    before = float(state.get("elapsed", 0.0))

    def save(done: int, optimizer: Any, rows: list[dict[str, Any]]) -> None:
        save_checkpoint(ckpt_path, {"id": did, "epoch": done, "model": model_state(model),
                                    "optimizer": optimizer.state_dict(), "rows": rows,
                                    "elapsed": before + time.perf_counter() - began})

    rows = fit(model, recipe, bundle.train, bundle.val, phase="dense", seed=cfg.seed, device=device,
               autocast=autocast, channels_last=use_channels_last(cfg.channels_last, bundle.info.input_shape),
               start_epoch=int(state.get("epoch", 0)), rows=state.get("rows"),
               optimizer_state=state.get("optimizer"), on_epoch=on_epoch, save=save,
               checkpoint_every=cfg.checkpoint_every, progress=progress)
    stats, layers = summarize(model, bundle.info, device)
    from .schedules import dense_cost  # the training spent on it, in the units of pruned runs

    metrics = {**split_metrics("dense", model, bundle, autocast), **stats,
               **dense_cost(recipe, bundle.train, stats["macs_dense"]).as_metrics(),
               "time_dense_s": before + time.perf_counter() - began, "env": environment(device)}
    save_state_dict(folder / MODEL_FILE, model_state(model))
    write_csv(folder / EPOCHS_FILE, rows)
    write_csv(folder / LAYERS_FILE, layers)
    write_json(folder / METRICS_FILE, metrics)  # last: its presence marks the dense model done
    with contextlib.suppress(FileNotFoundError):
        os.unlink(ckpt_path)


def dense_metrics(cfg: Config, out_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The recorded metrics of the cached dense model of `cfg`, or None when it is not trained."""
    if cfg.dense.source != "train":
        return None
    return read_metrics(dense_dir(out_dir, cfg.dense_id, create=False) / METRICS_FILE)


def ensure_dense(cfg: Config, out_dir: str | os.PathLike, *, progress: bool = False,
                 on_epoch: EpochHook | None = None) -> Path:
    """The dense model file of `cfg`: the given checkpoint, or trained once (under a lock) and cached.

    Writes only files (dense/<dense id>/); the scheduler records the 'dense' row. `on_epoch(phase,
    epoch, row)` sees each training epoch as it is trained. Two processes never train the same dense
    model: the second waits for the lock, then loads. `dense_metrics` gives its recorded metrics.
    """
    if cfg.dense.source != "train":
        return Path(cfg.dense.source)
    folder = dense_dir(out_dir, cfg.dense_id)
    if not finished(folder):
        with file_lock(folder / ".lock"):
            if not finished(folder):
                write_yaml(folder / CONFIG_FILE, dense_config(cfg))
                with pinned_threads(cfg.threads):
                    _train(cfg, cfg.dense_id, folder, progress, on_epoch)
    return folder / MODEL_FILE
