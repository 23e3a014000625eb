"""A synthetic results store (no training): plausible metrics for a small grid of runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shrinkbench.results.files import run_dir, write_csv, write_json
from shrinkbench.results.store import Store

STRATEGIES = {"global_magnitude": 0.010, "layer_magnitude": 0.018, "random": 0.060}
COMPRESSIONS = (1, 2, 4, 8, 16, 32)
LAYERS = {  # name -> (params, macs per input)
    "lenet300": {"fc1": (784 * 300, 784 * 300), "fc2": (300 * 100, 300 * 100), "fc3": (100 * 10, 1000)},
    "resnet56": {f"layer{i}.conv": (9 * 16 * 16 * (1 + i // 3), 9 * 16 * 16 * 1024) for i in range(12)},
}
DENSE_ACC = {"lenet300": (0.980, 0.999), "resnet56": (0.930, 0.997)}
DATASETS = {"lenet300": "mnist", "resnet56": "cifar10"}


def _config(dataset: str, model: str, strategy: str, compression: float, seed: int) -> dict:
    return {
        "data": {"name": dataset, "batch_size": 128},
        "model": {"name": model},
        "pruning": {"strategy": strategy, "compression": compression},
        "finetune": {"epochs": 2, "lr": 0.01, "optimizer": "sgd"},
        "seed": seed,
    }


def build_store(out: Path, models=("lenet300",), seeds=(0, 1, 2), failed: int = 2,
                compressions=COMPRESSIONS, datasets: dict[str, str] | None = None,
                strategies: dict[str, float] | None = None, finetune_epochs: int = 2,
                structured: tuple[str, ...] | None = None, slow: dict[str, float] | None = None,
                sparse: bool = False) -> Path:
    """Write a store with done runs (metrics, fine-tuning epochs, layers.csv) and `failed` failed runs.

    `datasets` maps a model to another data set name (e.g. {"resnet56": "cifar100"}); `strategies`
    replaces the strategies and their accuracy slopes. With `structured` (the strategies that remove
    channels; may be empty) every run also records measured latencies (see `latency_metrics`); `slow`
    forces the measured speedup of the named runs; `sparse` adds sparse-kernel latencies.
    """
    rng = np.random.default_rng(1234)
    timing = np.random.default_rng(99)  # its own stream: accuracies match the store without latencies
    dataset_of = {**DATASETS, **(datasets or {})}
    with Store(out) as store:
        for model in models:
            dataset = dataset_of[model]
            top1, top5 = DENSE_ACC[model]
            layers = LAYERS[model]
            total = sum(p for p, _ in layers.values())
            for strategy, slope in (strategies or STRATEGIES).items():
                for c in compressions:
                    for seed in seeds:
                        run_id = f"{model}-{strategy}-{c}-{seed}"
                        store.register(run_id, "prune", _config(dataset, model, strategy, c, seed))
                        store.start(run_id)
                        drop = slope * np.log2(c) ** 1.6
                        noise = rng.normal(0, 0.004 + 0.3 * drop / (1 + 10 * drop))
                        pre1 = float(np.clip(top1 - 3 * drop + noise, 0.1, 1.0))
                        post1 = float(np.clip(top1 - drop + noise, 0.1, 1.0))
                        pre5 = float(np.clip(top5 - 1.5 * drop + noise / 2, 0.5, 1.0))
                        post5 = float(np.clip(top5 - 0.5 * drop + noise / 2, 0.5, 1.0))
                        density = _densities(layers, c, strategy)
                        kept = {n: int(round(p * density[n])) for n, (p, _) in layers.items()}
                        macs_dense = sum(m for _, m in layers.values())
                        macs_sparse = sum(m * density[n] for n, (_, m) in layers.items())
                        metrics = {
                            "dense_test_acc1": top1, "dense_test_acc5": top5, "dense_test_loss": 0.1,
                            "dense_val_acc1": top1, "dense_val_acc5": top5, "dense_val_loss": 0.1,
                            "pre_test_acc1": pre1, "pre_test_acc5": pre5, "pre_test_loss": 0.5,
                            "pre_val_acc1": pre1, "pre_val_acc5": pre5, "pre_val_loss": 0.5,
                            "post_test_acc1": post1, "post_test_acc5": post5, "post_test_loss": 0.2,
                            "post_val_acc1": post1, "post_val_acc5": post5, "post_val_loss": 0.2,
                            "params_total": total, "params_nonzero": sum(kept.values()),
                            "compression_ratio": total / sum(kept.values()),
                            "macs_dense": macs_dense, "macs_sparse": macs_sparse,
                            "speedup": macs_dense / macs_sparse,
                            "time_total_s": 12.5, "time_finetune_s": 10.0,
                            "env": {"python": "3.11.0", "torch": "2.3.0", "host": "testhost",
                                    "cpu": "x86_64"},
                        }
                        if structured is not None:
                            metrics.update(latency_metrics(
                                metrics["speedup"], strategy in structured and c != 1, c, timing,
                                (slow or {}).get(run_id), sparse))
                        for epoch in range(1, finetune_epochs + 1):  # recovering towards post1
                            val1 = pre1 + (post1 - pre1) * epoch / finetune_epochs
                            store.add_epoch(run_id, "finetune", epoch,
                                            {"lr": 0.01, "train_acc1": val1, "train_loss": 0.3,
                                             "val_acc1": val1, "val_acc5": min(1.0, val1 + 0.02),
                                             "val_loss": 0.3})
                        store.finish(run_id, metrics)
                        rows = [{"name": n, "kind": "Linear", "shape": "[1]", "params": p,
                                 "nonzero": kept[n], "density": kept[n] / p,
                                 "macs_dense": m, "macs_sparse": m * density[n]}
                                for n, (p, m) in layers.items()]
                        write_csv(run_dir(out, run_id) / "layers.csv", rows)
                        write_json(run_dir(out, run_id) / "metrics.json", metrics)
        for i in range(failed):
            run_id = f"failed-{i}"
            model = models[0]
            store.register(run_id, "prune", _config(dataset_of[model], model, "random", 64 * (i + 1), 0))
            store.start(run_id)
            store.fail(run_id, f"CompressionError: compression {64 * (i + 1)} cannot be reached <&>",
                       "Traceback (most recent call last):\n  ...")
    return out


def _densities(layers: dict, c: float, strategy: str) -> dict[str, float]:
    """Uniform density for layerwise strategies; the large layers pruned harder for global ones."""
    if strategy != "global_magnitude" or c == 1:
        return {n: 1 / c for n in layers}
    sizes = np.array([p for p, _ in layers.values()], dtype=float)
    weights = (sizes.max() / sizes) ** 0.5
    d = weights / (weights * sizes).sum() * sizes.sum() / c
    return {n: float(min(x, 1.0)) for n, x in zip(layers, d)}


def latency_metrics(theoretical: float, structured: bool, compression: float, rng: np.random.Generator,
                    measured: float | None = None, sparse: bool = False) -> dict:
    """Plausible measured-speed metrics: masks run at the dense speed (+-3%), removed channels at
    theoretical ** 0.7; `measured` forces the measured speedup (a run slower than its dense model)."""
    dense = 2.0
    if measured is None:
        measured = theoretical ** 0.7 if structured else 1.0 + float(rng.uniform(-0.03, 0.03))
    out = {"latency_dense_ms": dense, "latency_dense_iqr_ms": 0.05, "latency_ms": dense / measured,
           "latency_iqr_ms": 0.05, "speedup_measured": measured, "latency_batch": 32, "latency_threads": 1,
           "latency_device": "cpu", "structured": structured}  # a bool, as JSON may carry it
    if structured:
        out["channels_kept_fraction"] = 1 / compression ** 0.5
    if sparse:
        out["latency_sparse_ms"] = dense / (0.5 * theoretical)
        out["speedup_measured_sparse"] = 0.5 * theoretical
    return out
