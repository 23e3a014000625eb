"""One pruning run: dense -> prune -> evaluate -> fine-tune with masks held -> evaluate; resumable.

It writes only its run folder (runs/<run id>/); the scheduler records the store rows.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

from torch import nn

from ..common import CONFIG_FILE, EPOCHS_FILE, LAYERS_FILE, METRICS_FILE, MODEL_FILE
from ..errors import StoreError
from ..models import load_weights
from ..pruning import prune
from ..pruning.masks import load_state_dict
from ..pruning.structured import apply_architecture, architecture, remove_channels, slim_payload
from ..results.files import run_dir, write_csv, write_json, write_yaml
from .checkpoint import CHECKPOINT, load_checkpoint, model_state, save_checkpoint, save_state_dict
from .components import build_model, lm_protocol, takes_tokens, load_data, preflight
from .config import Config, config_to_dict
from .dense import (dense_metrics, ensure_dense, file_lock, finished, read_epochs, read_metrics,
                    split_metrics, summarize)
from .device import autocast_factory, environment, pinned_threads, resolve_device, use_channels_last
from .loops import EpochHook, derive_seed, fit, seeded_rng, task_loss
from .schedules import Cost, classifier_rates, dense_cost, schedule_name
from .scheduled import check_masks_hold, run_scheduled, score_batches
from .speed import measure_speed
from .validate import strategy_shown

PHASE = "finetune"


def _prune(cfg: Config, model: nn.Module, bundle: Any, device: Any) -> Any:
    """Prune in place with scores from the calibration examples (`scheduled.score_batches`).

    Scores see the model in eval mode: batch-norm statistics stay those of the dense model, and
    dropout draws nothing. The unpruned control (compression 1) is not pruned at all.
    """
    p = cfg.pruning
    if cfg.is_control:
        return None
    batches = score_batches(cfg, bundle.train)
    model.eval()
    try:
        with seeded_rng(derive_seed(cfg.seed, "prune"), device):
            return prune(model, p.strategy, p.compression, batches=batches,
                         loss_fn=task_loss, seed=cfg.seed,
                         include_classifier=p.include_classifier, include_bias=p.include_bias,
                         ignore=tuple(p.ignore), options=p.options, target=p.target,
                         round_to=p.round_to, allocation=p.allocation,
                         layer_rates=classifier_rates(cfg, model))
    finally:
        model.train()


def _remove(model: nn.Module, result: Any, stats: dict[str, Any], bundle: Any,
            device: Any) -> tuple[nn.Module, dict[str, Any]]:
    """The slim model of a channel-pruning run and the metrics it changes: counted on the slim
    model itself (a masked model's attention products stay dense), against the dense counts."""
    model = remove_channels(model, result.example, graph=result.graph)  # checked on real examples
    slim, _ = summarize(model, bundle.info, device)
    return model, {
        "channels_total": int(result.channels_total),
        "channels_kept": int(result.channels_kept),
        "channels_kept_fraction": result.channels_kept / max(result.channels_total, 1),
        "params_nonzero": slim["params_nonzero"], "macs_sparse": slim["macs_sparse"],
        "size_sparse_bytes": slim["size_sparse_bytes"],
        "compression_ratio": stats["params_total"] / max(slim["params_nonzero"], 1),
        "speedup": stats["macs_dense"] / max(slim["macs_sparse"], 1),
    }


def oneshot_cost(cfg: Config, metrics: dict[str, Any], train: Any) -> dict[str, Any]:
    """Training cost and sparsity path of a one-shot run: the dense training at dense MACs, then
    fine-tuning at the pruned model's MACs; one pruning step, before fine-tuning."""
    # a dense model given as a checkpoint: its training is not known, so only fine-tuning counts
    dense = (dense_cost(cfg.dense.recipe, train, metrics["macs_dense"]) if cfg.dense.source == "train"
             else Cost())
    tuned = dense_cost(cfg.finetune, train, metrics["macs_sparse"])
    total = Cost(dense.epochs + tuned.epochs, dense.steps + tuned.steps, dense.macs + tuned.macs)
    out: dict[str, Any] = {**total.as_metrics(), "schedule": "oneshot",
                           "schedule_name": schedule_name(cfg)}
    if cfg.is_control:
        out.update(path_step=[], path_sparsity=[], path_compression=[])
    else:
        out.update(path_step=[0], path_sparsity=[1.0 - metrics["params_nonzero"] / max(metrics["params_total"], 1)],
                   path_compression=[metrics["compression_ratio"]])
    return out


def _cached(folder: Path, on_epoch: EpochHook | None) -> dict[str, Any]:
    """A finished run's metrics from its folder, its epochs replayed through `on_epoch`."""
    metrics = read_metrics(folder / METRICS_FILE)
    if metrics is None:
        raise StoreError(f"{folder / METRICS_FILE} cannot be read")
    if on_epoch is not None:
        for row in read_epochs(folder / EPOCHS_FILE):
            on_epoch(row.get("phase") or PHASE, row["epoch"], row)
    return metrics


def _run(cfg: Config, folder: Path, out_dir: str | os.PathLike, progress: bool,
         on_epoch: EpochHook | None) -> dict[str, Any]:
    rid = cfg.run_id
    began = time.perf_counter()
    write_yaml(folder / CONFIG_FILE, config_to_dict(cfg))
    if not cfg.schedule.is_default:
        return run_scheduled(cfg, folder, out_dir, progress, on_epoch)
    device = resolve_device(cfg.device)
    autocast = autocast_factory(device, cfg.precision)
    ckpt_path = folder / CHECKPOINT
    state = load_checkpoint(ckpt_path, rid) or {}
    if state:
        dense_file = ensure_dense(cfg, out_dir, progress=progress)  # cached: found, not trained
        bundle = load_data(cfg, cfg.finetune, device)
        model = build_model(cfg, bundle.info, device)
        if state.get("architecture"):
            apply_architecture(model, state["architecture"], state["model"])
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
        result = _prune(cfg, model, bundle, device)
        metrics["time_prune_s"] = time.perf_counter() - tick
        metrics.update(split_metrics("pre", model, bundle, autocast))
        stats, layers = summarize(model, bundle.info, device)
        metrics.update(stats)
        metrics["structured"] = 1.0 if result is not None and result.structured else 0.0
        if result is not None and result.structured:
            tick = time.perf_counter()
            model, changed = _remove(model, result, stats, bundle, device)
            metrics.update(changed)
            metrics["time_prune_s"] += time.perf_counter() - tick
    before = float(state.get("elapsed", 0.0))
    tuned_before = float(state.get("time_finetune_s", 0.0))
    tuning = time.perf_counter()

    def save(done: int, optimizer: Any, rows: list[dict[str, Any]]) -> None:
        now = time.perf_counter()
        save_checkpoint(ckpt_path, {
            "id": rid, "epoch": done, "model": model_state(model), "architecture": architecture(model),
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
    check_masks_hold(model)
    metrics["time_finetune_s"] = tuned_before + time.perf_counter() - tuning
    if cfg.finetune.epochs == 0 and not metrics.get("structured"):
        # no fine-tuning: the model evaluated before it is the model after (one-shot protocol)
        metrics.update({"post_" + k[4:]: v for k, v in list(metrics.items()) if k.startswith("pre_")})
    else:
        metrics.update(split_metrics("post", model, bundle, autocast))
    if cfg.latency.enabled:
        dense = build_model(cfg, bundle.info, device)
        load_weights(dense, dense_file)
        metrics.update(measure_speed(cfg, model, dense, bundle.info, device))
    metrics.update(oneshot_cost(cfg, metrics, bundle.train))
    if takes_tokens(bundle.info):
        metrics.update(lm_protocol(cfg, bundle))
    metrics["time_total_s"] = before + time.perf_counter() - began
    metrics["env"] = environment(device)
    metrics["strategy_name"] = strategy_shown(cfg.pruning.strategy)  # what every table calls it
    arch = architecture(model)  # a slim model: its sizes travel with its weights
    save_state_dict(folder / MODEL_FILE,
                    slim_payload(model, model_state(model)) if arch else model_state(model))
    write_csv(folder / EPOCHS_FILE, rows)
    write_csv(folder / LAYERS_FILE, layers)
    write_json(folder / METRICS_FILE, metrics)  # last: its presence marks the run done
    with contextlib.suppress(FileNotFoundError):
        os.unlink(ckpt_path)
    return metrics


def clear_run(out_dir: str | os.PathLike, cfg: Config) -> None:
    """Forget a run's results and checkpoint, so that it is done again from its dense model."""
    folder = run_dir(out_dir, cfg.run_id, create=False)
    for name in (METRICS_FILE, CHECKPOINT):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(folder / name)


def execute(cfg: Config, out_dir: str | os.PathLike, *, progress: bool = False,
            on_epoch: EpochHook | None = None, force: bool = False) -> dict[str, Any]:
    """One pruned run in `out_dir`'s files (no store row); returns its flat metrics.

    Checks the machine first (preflight), runs on `cfg.threads` intra-op threads, trains the dense
    model when it is not cached yet, and writes the run folder (model, epochs.csv, layers.csv,
    metrics.json). A finished run is read back from its folder (its epochs replayed through
    `on_epoch`), not redone, unless `force`; an interrupted one resumes from its checkpoint.
    """
    preflight(cfg)
    folder = run_dir(out_dir, cfg.run_id)
    with file_lock(folder / ".lock"), pinned_threads(cfg.threads):
        if force:
            clear_run(out_dir, cfg)
        if finished(folder):  # a damaged metrics.json or epochs.csv: the run is done again
            return _cached(folder, on_epoch)
        return _run(cfg, folder, out_dir, progress, on_epoch)
