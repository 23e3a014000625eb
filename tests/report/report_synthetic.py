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


# --- a store of pruning schedules -------------------------------------------------------------------
# LeNet-300-100 on MNIST, GlobalMagWeight pruned one-shot, iteratively, gradually and as a lottery
# ticket (rewind to init) with its reinit and random controls, and the unpruned control, with the
# metrics each run records (as experiment.scheduled writes them). Costs in closed form: forward MACs
# per example FORWARD, EXAMPLES per epoch, STEPS_PER_EPOCH optimizer steps per epoch; a step at
# density d costs 3 * FORWARD * d per example.
FORWARD = sum(m for _, m in LAYERS["lenet300"].values())
EXAMPLES = 10_000
STEPS_PER_EPOCH = 100
DENSE_EPOCHS = 10
FINETUNE_EPOCHS = 2
RATE = 0.2
SCHEDULES = {  # key -> (schedule.kind, control, schedule_name as the runner writes it, accuracy slope)
    "oneshot": ("oneshot", "none", "one-shot", 0.010),
    "iterative": ("iterative", "none", "iterative 20%/round", 0.006),
    "gradual": ("gradual", "none", "gradual", 0.008),
    "lottery": ("lottery", "none", "lottery (rewind init)", 0.004),
    "reinit": ("lottery", "reinit", "lottery (rewind init) reinit control", 0.030),
    "random": ("lottery", "random", "lottery (rewind init) random control", 0.040),
    "init": ("oneshot", "none", "one-shot at init", 0.020),  # pruned at initialization
}


def epoch_macs(density: float, epochs: float = 1.0) -> float:
    """Training MACs of `epochs` epochs at a whole-model MAC density."""
    return 3.0 * FORWARD * density * EXAMPLES * epochs


DENSE_MACS = epoch_macs(1.0, DENSE_EPOCHS)


def round_compressions(target: float, rate: float = RATE) -> list[float]:
    """The compression after each round of pruning `rate` of the remaining weights, the last at the target."""
    out, kept = [], 1.0
    while 1.0 / kept < target - 1e-9:
        kept = max(kept * (1.0 - rate), 1.0 / target)
        out.append(1.0 / kept)
    return out


def gradual_path(target: float, steps: int = FINETUNE_EPOCHS * STEPS_PER_EPOCH,
                 every: int = 25) -> tuple[list[int], list[float]]:
    """Zhu & Gupta's cubic schedule from step 0 to three quarters of `steps`, every `every` steps."""
    end = 3 * steps // 4
    at = list(range(0, end + 1, every))
    final = 1.0 - 1.0 / target
    return at, [final * (1.0 - (1.0 - s / end) ** 3) for s in at]


def schedule_run(kind: str, c: float) -> dict:
    """Path, rounds and cost of one schedule at compression `c` (test accuracy added by the caller)."""
    if c == 1:
        return {"path_step": [0], "path_compression": [1.0], "train_epochs": DENSE_EPOCHS + FINETUNE_EPOCHS,
                "train_macs": DENSE_MACS + epoch_macs(1.0, FINETUNE_EPOCHS)}
    if kind == "oneshot":
        return {"path_step": [0], "path_compression": [c], "train_epochs": DENSE_EPOCHS + FINETUNE_EPOCHS,
                "train_macs": DENSE_MACS + epoch_macs(1 / c, FINETUNE_EPOCHS)}
    if kind == "init":  # no dense model: the dense recipe trains the sparse network, then fine-tuning
        return {"path_step": [0], "path_compression": [c], "train_epochs": DENSE_EPOCHS + FINETUNE_EPOCHS,
                "train_macs": epoch_macs(1 / c, DENSE_EPOCHS + FINETUNE_EPOCHS)}
    if kind == "iterative":
        rounds = round_compressions(c)
        return {"path_step": [k * FINETUNE_EPOCHS * STEPS_PER_EPOCH for k in range(len(rounds))],
                "path_compression": rounds, "rounds": rounds,
                "train_epochs": DENSE_EPOCHS + FINETUNE_EPOCHS * len(rounds),
                "train_macs": DENSE_MACS + sum(epoch_macs(1 / r, FINETUNE_EPOCHS) for r in rounds)}
    if kind == "gradual":
        steps, sparsity = gradual_path(c)
        compressions = [1 / (1 - s) for s in sparsity]
        per_step = [compressions[max(i for i, s in enumerate(steps) if s <= t)]
                    for t in range(FINETUNE_EPOCHS * STEPS_PER_EPOCH)]
        return {"path_step": steps, "path_compression": compressions,
                "train_epochs": DENSE_EPOCHS + FINETUNE_EPOCHS,
                "train_macs": DENSE_MACS + sum(epoch_macs(1 / r, 1 / STEPS_PER_EPOCH) for r in per_step)}
    if kind == "random":  # random pruning to the ticket's sparsity at the rewound weights, trained once
        return {"path_step": [0], "path_compression": [c], "rounds": [c], "train_epochs": 2 * DENSE_EPOCHS,
                "train_macs": DENSE_MACS + epoch_macs(1 / c, DENSE_EPOCHS)}
    rounds = round_compressions(c)  # lottery: each round retrains the rewound ticket with the dense recipe
    out = {"path_step": [k * DENSE_EPOCHS * STEPS_PER_EPOCH for k in range(len(rounds))],
           "path_compression": rounds, "rounds": rounds,
           "train_epochs": DENSE_EPOCHS * (1 + len(rounds)),
           "train_macs": DENSE_MACS + sum(epoch_macs(1 / r, DENSE_EPOCHS) for r in rounds)}
    if kind == "reinit":
        # the ticket's path and cost up to its final mask, then that mask trained once from a new
        # initialization: the same cost as the ticket, whose last round trains the same mask; one round
        out["rounds"] = [c]
    return out


def build_schedule_store(out: Path, seeds=(0, 1), compressions=(1, 4, 8),
                         schedules=("oneshot", "iterative", "gradual", "lottery", "reinit", "random")) -> Path:
    """A store of GlobalMagWeight on LeNet-300-100 under each schedule in `schedules` (compression 1:
    the unpruned control, one-shot), with the path, round and cost metrics a scheduled run records."""
    layers = LAYERS["lenet300"]
    total = sum(p for p, _ in layers.values())
    top1, top5 = DENSE_ACC["lenet300"]
    with Store(out) as store:
        for name in schedules:
            kind, control, schedule_name, slope = SCHEDULES[name]
            for c in compressions:
                if c == 1 and name != "oneshot":
                    continue  # the one control serves every schedule
                for seed in seeds:
                    run_id = f"lenet300-{name}-{c}-{seed}"
                    config = _config("mnist", "lenet300", "global_magnitude" if c != 1 else "none", c, seed)
                    config["schedule"] = {"kind": kind if c != 1 else "oneshot",
                                          "at_init": name == "init" and c != 1,
                                          "rate": RATE, "rewind": "0it", "control": control}
                    store.register(run_id, "prune", config)
                    store.start(run_id)
                    run = schedule_run(name if c != 1 else "oneshot", c)
                    drop = slope * np.log2(c) ** 1.6
                    post1 = top1 - drop + 0.001 * seed
                    kept = int(round(total / c))
                    metrics = {
                        "dense_test_acc1": top1, "dense_test_acc5": top5, "pre_test_acc1": post1 - 0.05,
                        "post_test_acc1": post1, "post_val_acc1": post1, "post_test_acc5": top5,
                        "params_total": total, "params_nonzero": kept, "compression_ratio": total / kept,
                        "macs_dense": FORWARD, "macs_sparse": FORWARD / c, "speedup": c,
                        "schedule": kind if c != 1 else "oneshot",
                        "schedule_name": schedule_name if c != 1 else "one-shot",
                        "path_step": run["path_step"], "path_compression": run["path_compression"],
                        "path_sparsity": [1 - 1 / r for r in run["path_compression"]],
                        "train_epochs": float(run["train_epochs"]),
                        "train_steps": int(round(run["train_epochs"] * STEPS_PER_EPOCH)),
                        "train_macs": float(run["train_macs"]),
                    }
                    if run.get("rounds"):  # the last round ends where the run ends
                        metrics["round_compression"] = run["rounds"]
                        metrics["round_test_acc1"] = [top1 - slope * np.log2(r) ** 1.6 + 0.001 * seed
                                                      for r in run["rounds"][:-1]] + [post1]
                        metrics["round_val_acc1"] = metrics["round_test_acc1"]
                    store.finish(run_id, metrics)
    return out
