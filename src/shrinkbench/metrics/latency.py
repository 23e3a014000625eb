"""Wall-clock latency of forward passes: the measured counterpart of the theoretical speedup."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from shrinkbench.errors import ConfigError
from shrinkbench.metrics._common import ExampleInput, as_inputs, eval_mode, forward


def measure_latency(
    model: nn.Module, example_input: ExampleInput, warmup: int = 3, repeats: int = 10
) -> dict[str, float]:
    """Mean, standard deviation and median seconds of one eval-mode forward pass on the example input."""
    if warmup < 0 or repeats < 1:
        raise ConfigError(
            f"measure_latency needs warmup >= 0 and repeats >= 1, got warmup={warmup}, repeats={repeats}"
        )
    inputs = as_inputs(example_input, model)
    on_cuda = any(t.is_cuda for t in inputs)
    times = []
    with eval_mode(model), torch.no_grad():
        for i in range(warmup + repeats):
            if on_cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            forward(model, inputs)
            if on_cuda:
                torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return {
        "mean_s": statistics.fmean(times),
        "std_s": statistics.stdev(times) if len(times) > 1 else 0.0,
        "median_s": statistics.median(times),
    }
