"""The dense model: trained once per dense id under a file lock, cached, resumable."""

from __future__ import annotations

import contextlib
import json
import os
import time
import traceback
from pathlib import Path
from typing import Any, Iterator

from ..results.files import dense_dir, write_csv, write_json, write_yaml
from .checkpoint import CHECKPOINT, load_checkpoint, model_state, save_checkpoint, save_state_dict
from .config import Config, config_to_dict
from .loops import EpochHook, evaluate_split, fit

MODEL_FILE = "model.pt"
METRICS_FILE = "metrics.json"
EPOCHS_FILE = "epochs.csv"
LAYERS_FILE = "layers.csv"
CONFIG_FILE = "config.yaml"
DENSE_SECTIONS = ("data", "model", "dense", "seed", "device", "precision", "channels_last")


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


def dense_config(cfg: Config) -> dict[str, Any]:
    """The part of the config that defines the dense model (as stored for its 'dense' row)."""
    tree = config_to_dict(cfg)
    return {key: tree[key] for key in DENSE_SECTIONS}


def read_csv_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV written by write_csv, numbers and JSON lists decoded."""
    import csv

    if not path.is_file():
        return []

    def cell(text: str) -> Any:
        if text == "":
            return None
        try:
            return json.loads(text)
        except ValueError:
            return text

    with open(path, newline="", encoding="utf-8") as handle:
        return [{k: cell(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def summarize(model: Any, info: Any, device: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Parameter counts, sizes, MACs and the per-layer table of a (possibly pruned) model."""
    from ..metrics import compression_ratio, count_macs, count_parameters, layer_table, model_size
    from .components import example_input

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
    from .components import build_model, load_data
    from .device import autocast_factory, environment, resolve_device, use_channels_last

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
    metrics = {**split_metrics("dense", model, bundle, autocast), **stats,
               "time_dense_s": before + time.perf_counter() - began, "env": environment(device)}
    save_state_dict(folder / MODEL_FILE, model_state(model))
    write_csv(folder / EPOCHS_FILE, rows)
    write_csv(folder / LAYERS_FILE, layers)
    write_json(folder / METRICS_FILE, metrics)  # last: its presence marks the dense model done
    with contextlib.suppress(FileNotFoundError):
        os.unlink(ckpt_path)


def _record(store: Any, did: str, cfg: Config, folder: Path) -> None:
    """Put a dense model found on disk into the store as a done 'dense' row, with its epochs."""
    if store.status(did) == "done":
        return
    store.register(did, "dense", dense_config(cfg))
    for row in read_csv_rows(folder / EPOCHS_FILE):
        store.add_epoch(did, "dense", int(row["epoch"]), row)
    store.finish(did, json.loads((folder / METRICS_FILE).read_text()))


def dense_metrics(cfg: Config, out_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The recorded metrics of the cached dense model of `cfg`, or None when it is not trained."""
    from .ids import dense_id

    if cfg.dense.source != "train":
        return None
    path = dense_dir(out_dir, dense_id(cfg), create=False) / METRICS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def ensure_dense(cfg: Config, out_dir: str | os.PathLike, *, store: Any = None,
                 progress: bool = False, on_epoch: EpochHook | None = None) -> Path:
    """The dense model file of `cfg`: the given checkpoint, or trained once (under a lock) and cached.

    With a `store`, the training is recorded as a kind='dense' run (live, or from the files when
    another process trained it). `on_epoch(phase, epoch, row)` sees each training epoch (replayed
    from the files when the model was already trained). Two processes never train the same dense
    model: the second waits for the lock, then loads. `dense_metrics` gives its recorded metrics.
    """
    from .ids import dense_id

    if cfg.dense.source != "train":
        return Path(cfg.dense.source)
    did = dense_id(cfg)
    folder = dense_dir(out_dir, did)
    done = folder / METRICS_FILE
    trained = False
    if not done.is_file():
        with file_lock(folder / ".lock"):
            if not done.is_file():
                write_yaml(folder / CONFIG_FILE, dense_config(cfg))
                if store is not None:
                    store.register(did, "dense", dense_config(cfg))
                    store.start(did)

                def hook(phase: str, epoch: int, row: dict[str, Any]) -> None:
                    if store is not None:
                        store.add_epoch(did, phase, epoch, row)
                    if on_epoch is not None:
                        on_epoch(phase, epoch, row)
                try:
                    _train(cfg, did, folder, progress, hook)
                    trained = True
                except BaseException as exc:
                    if store is not None:
                        store.fail(did, f"{type(exc).__name__}: {exc}", traceback.format_exc())
                    raise
    if on_epoch is not None and not trained:
        for row in read_csv_rows(folder / EPOCHS_FILE):
            on_epoch("dense", int(row["epoch"]), row)
    if store is not None:
        _record(store, did, cfg, folder)
    return folder / MODEL_FILE
