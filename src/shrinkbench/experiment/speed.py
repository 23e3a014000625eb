"""A run's measured speed: the final model and the dense model timed side by side in one process."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..metrics.latency import compare_latency
from ..metrics.sparse_exec import csr_layers, sparse_linear
from .config import Config
from .loops import derive_seed


def latency_input(cfg: Config, info: Any, device: torch.device) -> torch.Tensor:
    """The timed batch: `latency.batch_size` seeded random examples of the data set's shape."""
    gen = torch.Generator().manual_seed(derive_seed(cfg.seed, "latency"))
    return torch.randn(cfg.latency.batch_size, *info.input_shape, generator=gen).to(device)


def measure_speed(cfg: Config, model: nn.Module, dense: nn.Module, info: Any,
                  device: torch.device) -> dict[str, Any]:
    """`latency_dense_ms`, `latency_ms` (medians), their IQRs, and `speedup_measured` (dense /
    pruned, same batch, threads and device, interleaved), plus how they were measured."""
    lat = cfg.latency
    x = latency_input(cfg, info, device)
    models: dict[str, nn.Module] = {"dense": dense, "pruned": model}
    if lat.sparse and device.type == "cpu":
        sparse = sparse_linear(model)
        if csr_layers(sparse):
            models["sparse"] = sparse
    times = compare_latency(models, x, warmup=lat.warmup, repeats=lat.repeats)
    out: dict[str, Any] = {
        **times["dense"].to_metrics("latency_dense"),
        **times["pruned"].to_metrics("latency"),
        "latency_batch": lat.batch_size,
        "latency_threads": times["dense"].threads,
        "latency_device": times["dense"].device,
        "speedup_measured": times["dense"].median_ms / times["pruned"].median_ms,
    }
    if "sparse" in times:
        out.update(times["sparse"].to_metrics("latency_sparse"))
        out["speedup_measured_sparse"] = times["dense"].median_ms / times["sparse"].median_ms
    return out
