"""The quickstart: the main job on the embedded default (digits), a strategy x compression x seed grid."""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any, Callable

from .config import Config

STRATEGIES = ("RandomPruning", "GlobalMagWeight", "LayerMagWeight", "GlobalMagGrad")
COMPRESSIONS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
SEEDS = (0, 1)
DEFAULT_OUT = os.path.join("shrinkbench-out", "quickstart")


def quickstart_configs(base: Config | None = None) -> list[Config]:
    """One config per (seed, strategy, compression), seeds outermost so each dense model is reused."""
    base = base or Config()
    configs = []
    for seed in SEEDS:
        for strategy in STRATEGIES:
            for compression in COMPRESSIONS:
                pruning = dataclasses.replace(base.pruning, strategy=strategy, compression=compression)
                configs.append(dataclasses.replace(base, seed=seed, pruning=pruning))
    return configs


def run_quickstart(out_dir: str | os.PathLike = DEFAULT_OUT, *, progress: bool = True,
                   on_run: Callable[[Config, dict[str, Any]], None] | None = None
                   ) -> list[tuple[Config, dict[str, Any]]]:
    """Run (or find finished) every quickstart run into one store; (config, metrics) per run.

    Runs on one intra-op thread: on 8x8 inputs, threads cost more than they gain, and on a busy
    machine they spin (measured here: 20 s on one thread, several minutes on two under load).
    """
    import torch
    from tqdm.auto import tqdm

    from ..results.store import Store
    from .runner import run_experiment
    from .validate import validate

    configs = [validate(c) for c in quickstart_configs()]
    results = []
    show = progress and sys.stderr.isatty()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with Store(out_dir) as store:
            for cfg in tqdm(configs, desc="quickstart", unit="run", disable=not show, dynamic_ncols=True):
                metrics = run_experiment(cfg, out_dir, store=store, progress=False)
                results.append((cfg, metrics))
                if on_run is not None:
                    on_run(cfg, metrics)
    finally:
        torch.set_num_threads(threads)
    return results


def summary_table(results: list[tuple[Config, dict[str, Any]]], metric: str = "post_test_acc1") -> str:
    """Strategies x compressions: mean over seeds of `metric` (as %), plus the dense reference."""
    from ..results.names import display_name

    cells: dict[tuple[str, float], list[float]] = {}
    dense: list[float] = []
    for cfg, metrics in results:
        key = (display_name(cfg.pruning.strategy), cfg.pruning.compression)
        cells.setdefault(key, []).append(float(metrics.get(metric, float("nan"))))
        if "dense_test_acc1" in metrics and cfg.pruning.compression == COMPRESSIONS[0]:
            dense.append(float(metrics["dense_test_acc1"]))
    strategies = list(dict.fromkeys(k[0] for k in cells))
    compressions = sorted({k[1] for k in cells})
    width = max(len(s) for s in strategies + ["strategy"])
    head = f"{'strategy':<{width}}" + "".join(f"{f'x{c:g}':>9}" for c in compressions)
    lines = [f"{metric} (%; mean of {len(SEEDS)} seeds)", head, "-" * len(head)]
    for s in strategies:
        values = [cells.get((s, c), []) for c in compressions]
        lines.append(f"{s:<{width}}" + "".join(
            f"{100 * sum(v) / len(v):>9.2f}" if v else f"{'-':>9}" for v in values))
    if dense:
        lines.append(f"dense model test top-1: {100 * sum(dense) / len(dense):.2f}%")
    return "\n".join(lines)
