"""One pruning run: dense -> prune -> evaluate -> fine-tune with masks held -> evaluate; resumable."""

from __future__ import annotations

import contextlib
import os
import time
import traceback
from pathlib import Path
from typing import Any

from torch import nn

from ..results.files import run_dir, write_csv, write_json, write_yaml
from ..results.store import DB_NAME, Store
from .checkpoint import CHECKPOINT, load_checkpoint, model_state, save_checkpoint, save_state_dict
from .components import build_model, load_data, preflight
from .config import Config, config_to_dict
from .dense import (CONFIG_FILE, EPOCHS_FILE, LAYERS_FILE, METRICS_FILE, MODEL_FILE, dense_metrics,
                    ensure_dense, file_lock, read_csv_rows, split_metrics, summarize)
from .device import autocast_factory, environment, resolve_device, use_channels_last
from .ids import run_id
from .loops import EpochHook, derive_seed, fit, seeded_rng
from .validate import validate

PHASE = "finetune"


def _prune(cfg: Config, model: nn.Module, bundle: Any, device: Any) -> Any:
    """Prune in place with scores from the first `score_batches` training batches of the seed's order.

    Scores see the model in eval mode: batch-norm statistics stay those of the dense model, and
    dropout draws nothing.
    """
    from ..pruning import prune

    p = cfg.pruning
    batches = []
    if p.score_batches:
        bundle.train.set_epoch(0)
        for x, y in bundle.train:
            batches.append((x, y))
            if len(batches) == p.score_batches:
                break
    model.eval()
    try:
        with seeded_rng(derive_seed(cfg.seed, "prune"), device):
            return prune(model, p.strategy, p.compression, batches=batches,
                         loss_fn=nn.CrossEntropyLoss(), seed=cfg.seed,
                         include_classifier=p.include_classifier, include_bias=p.include_bias,
                         ignore=tuple(p.ignore))
    finally:
        model.train()


def _cached(folder: Path, on_epoch: EpochHook | None) -> dict[str, Any]:
    """A finished run's metrics from its folder, its epochs replayed through `on_epoch`."""
    import json

    if on_epoch is not None:
        for row in read_csv_rows(folder / EPOCHS_FILE):
            on_epoch(PHASE, int(row["epoch"]), row)
    return json.loads((folder / METRICS_FILE).read_text())


def _run(cfg: Config, rid: str, folder: Path, out_dir: str | os.PathLike, progress: bool,
         on_epoch: EpochHook | None) -> dict[str, Any]:
    from ..models import load_weights
    from ..pruning.masks import load_state_dict

    began = time.perf_counter()
    write_yaml(folder / CONFIG_FILE, config_to_dict(cfg))
    device = resolve_device(cfg.device)
    autocast = autocast_factory(device, cfg.precision)
    ckpt_path = folder / CHECKPOINT
    state = load_checkpoint(ckpt_path, rid) or {}
    if state:
        bundle = load_data(cfg, cfg.finetune, device)
        model = build_model(cfg, bundle.info, device)
        load_state_dict(model, state["model"])
        metrics, layers = dict(state["metrics"]), list(state["layers"])
    else:
        tick = time.perf_counter()
        dense_file = ensure_dense(cfg, out_dir, progress=progress)
        bundle = load_data(cfg, cfg.finetune, device)
        model = build_model(cfg, bundle.info, device)
        load_weights(model, dense_file)
        cached = dense_metrics(cfg, out_dir)
        if cached is not None:
            metrics = {k: v for k, v in cached.items() if k.startswith("dense_")}
        else:
            metrics = split_metrics("dense", model, bundle, autocast)
        metrics["time_dense_s"] = time.perf_counter() - tick
        tick = time.perf_counter()
        _prune(cfg, model, bundle, device)
        metrics["time_prune_s"] = time.perf_counter() - tick
        metrics.update(split_metrics("pre", model, bundle, autocast))
        stats, layers = summarize(model, bundle.info, device)
        metrics.update(stats)
    before = float(state.get("elapsed", 0.0))
    tuned_before = float(state.get("time_finetune_s", 0.0))
    tuning = time.perf_counter()

    def save(done: int, optimizer: Any, rows: list[dict[str, Any]]) -> None:
        now = time.perf_counter()
        save_checkpoint(ckpt_path, {
            "id": rid, "epoch": done, "model": model_state(model),
            "optimizer": None if optimizer is None else optimizer.state_dict(), "rows": rows,
            "metrics": metrics, "layers": layers, "elapsed": before + now - began,
            "time_finetune_s": tuned_before + (now - tuning if done else 0.0)})

    if not state and cfg.checkpoint_every:
        save(0, None, [])  # pruned and measured: a restart skips straight to fine-tuning
    rows = fit(model, cfg.finetune, bundle.train, bundle.val, phase=PHASE, seed=cfg.seed,
               device=device, autocast=autocast,
               channels_last=use_channels_last(cfg.channels_last, bundle.info.input_shape),
               start_epoch=int(state.get("epoch", 0)), rows=state.get("rows"),
               optimizer_state=state.get("optimizer"), on_epoch=on_epoch, save=save,
               checkpoint_every=cfg.checkpoint_every, progress=progress)
    metrics["time_finetune_s"] = tuned_before + time.perf_counter() - tuning
    metrics.update(split_metrics("post", model, bundle, autocast))
    metrics["time_total_s"] = before + time.perf_counter() - began
    metrics["env"] = environment(device)
    save_state_dict(folder / MODEL_FILE, model_state(model))
    write_csv(folder / EPOCHS_FILE, rows)
    write_csv(folder / LAYERS_FILE, layers)
    write_json(folder / METRICS_FILE, metrics)  # last: its presence marks the run done
    with contextlib.suppress(FileNotFoundError):
        os.unlink(ckpt_path)
    return metrics


def _execute(cfg: Config, out_dir: str | os.PathLike, *, progress: bool, on_epoch: EpochHook | None,
             force: bool) -> dict[str, Any]:
    rid = run_id(cfg)
    folder = run_dir(out_dir, rid)
    with file_lock(folder / ".lock"):
        if force:
            for name in (METRICS_FILE, CHECKPOINT):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(folder / name)
        if (folder / METRICS_FILE).is_file():
            return _cached(folder, on_epoch)
        return _run(cfg, rid, folder, out_dir, progress, on_epoch)


def execute(cfg: Config, out_dir: str | os.PathLike, *, progress: bool = False,
            on_epoch: EpochHook | None = None, force: bool = False) -> dict[str, Any]:
    """One run without the SQLite store (e.g. on a Ray worker); returns its flat metrics.

    Everything else lands in the run folder (model, epochs.csv, layers.csv, metrics.json);
    `on_epoch(phase, epoch, row)` sees each fine-tuning epoch, replayed when the run was already
    finished (then read back from its folder, not redone, unless `force`). The dense model is
    trained first when needed, without a store row: call `ensure_dense` beforehand for that.
    """
    return _execute(preflight(cfg), out_dir, progress=progress, on_epoch=on_epoch, force=force)


def _finished(out_dir: str | os.PathLike, rid: str, store: Store | None) -> dict[str, Any] | None:
    if store is None:
        if not (Path(out_dir) / DB_NAME).is_file():
            return None
        with Store(out_dir, create=False) as probe:
            row = probe.get(rid)
    else:
        row = store.get(rid)
    return row["metrics"] if row and row["status"] == "done" else None


def run_experiment(cfg: Config, out_dir: str | os.PathLike, *, store: Store | None = None,
                   force: bool = False, progress: bool = True) -> dict[str, Any]:
    """One run recorded in the store of `out_dir` (dense row too); returns its metrics.

    A finished run is returned from the store, not redone, unless `force`; an interrupted one
    resumes from its last checkpoint. Config, data and model errors are raised before anything is
    written.
    """
    cfg = validate(cfg)
    rid = run_id(cfg)
    if not force:
        done = _finished(out_dir, rid, store)
        if done is not None:
            return done
    cfg = preflight(cfg)
    own = store is None
    if own:
        store = Store(out_dir)
    try:
        ensure_dense(cfg, out_dir, store=store, progress=progress)
        store.register(rid, "prune", config_to_dict(cfg))
        if force:
            store.delete_epochs(rid, PHASE)
        store.start(rid)

        def on_epoch(phase: str, epoch: int, row: dict[str, Any]) -> None:
            store.add_epoch(rid, phase, epoch, row)

        try:
            metrics = _execute(cfg, out_dir, progress=progress, on_epoch=on_epoch, force=force)
        except BaseException as exc:
            store.fail(rid, f"{type(exc).__name__}: {exc}", traceback.format_exc())
            raise
        store.finish(rid, metrics)
        return metrics
    finally:
        if own:
            store.close()
