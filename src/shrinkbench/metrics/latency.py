"""Wall-clock latency of forward passes: the measured counterpart of the theoretical speedup.

Models compared with each other are measured in one process, interleaved round by round in a
rotating order, so that drift of the machine (frequency scaling, other load) touches all alike.
On CUDA a pass is timed with a pair of CUDA events after a synchronize; elsewhere with
`time.perf_counter`, the device synchronized before and after.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from shrinkbench.errors import ConfigError
from shrinkbench.metrics._common import ExampleInput, as_inputs, batch_size, eval_mode, forward

# When `min_time_s` asks for more passes than `repeats`, at most this many times `repeats` are run.
MAX_REPEAT_FACTOR = 10


@dataclass(frozen=True)
class Latency:
    """Milliseconds per eval-mode forward pass of one batch: median, spread and how it was measured."""

    median_ms: float
    iqr_ms: float
    mean_ms: float
    min_ms: float
    repeats: int
    batch: int
    threads: int | None
    device: str

    @property
    def throughput(self) -> float:
        """Examples per second at the median latency."""
        return self.batch / (self.median_ms / 1e3) if self.median_ms > 0 else math.inf

    def to_metrics(self, prefix: str = "latency") -> dict[str, float]:
        """Flat floats for a results row: `{prefix}_ms` (median) and `{prefix}_iqr_ms`."""
        return {f"{prefix}_ms": self.median_ms, f"{prefix}_iqr_ms": self.iqr_ms}


def _check(warmup: int, repeats: int, threads: int | None, min_time_s: float) -> None:
    """Raise ConfigError naming the first bad argument."""
    def is_int(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if not is_int(warmup) or warmup < 0:
        raise ConfigError(f"latency: warmup must be an int >= 0, got {warmup!r}")
    if not is_int(repeats) or repeats < 1:
        raise ConfigError(f"latency: repeats must be an int >= 1, got {repeats!r}")
    if threads is not None and (not is_int(threads) or threads < 1):
        raise ConfigError(f"latency: threads must be None or an int >= 1, got {threads!r}")
    if isinstance(min_time_s, bool) or not isinstance(min_time_s, (int, float)) or not (
        0 <= min_time_s < math.inf
    ):
        raise ConfigError(f"latency: min_time_s must be a finite number >= 0, got {min_time_s!r}")


@contextmanager
def _threads(threads: int | None) -> Iterator[None]:
    """Run the block with `threads` intra-op threads (unchanged when None), restoring the setting."""
    before = torch.get_num_threads()
    if threads is not None and threads != before:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


@contextmanager
def _no_gc() -> Iterator[None]:
    """Keep the garbage collector from pausing inside timed passes (a full collect first would cost
    0.15 s with torch loaded, for nothing: no collection runs while it is off)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _synchronize(device: torch.device) -> None:
    """Wait for the work queued on an asynchronous device (no-op on CPU)."""
    if device.type == "cpu":
        return
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif hasattr(torch, "accelerator") and torch.accelerator.is_available():
        torch.accelerator.synchronize(device)


def _time_pass(model: nn.Module, inputs: tuple[torch.Tensor, ...], device: torch.device) -> float:
    """Seconds of one forward pass."""
    if device.type == "cuda" and torch.cuda.is_available():
        with torch.cuda.device(device):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(device)  # nothing queued before `start` is counted
            start.record()
            forward(model, inputs)
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
    _synchronize(device)
    begin = time.perf_counter()
    forward(model, inputs)
    _synchronize(device)
    return time.perf_counter() - begin


def _summary(times: list[float], batch: int, threads: int | None, device: torch.device) -> Latency:
    """A Latency from the seconds of each measured pass."""
    ms = [t * 1e3 for t in times]
    if len(ms) > 1:
        q1, _, q3 = statistics.quantiles(ms, n=4, method="inclusive")
        iqr = max(q3 - q1, 0.0)
    else:
        iqr = 0.0
    return Latency(
        median_ms=statistics.median(ms), iqr_ms=iqr, mean_ms=statistics.fmean(ms), min_ms=min(ms),
        repeats=len(ms), batch=batch, threads=threads, device=str(device),
    )


def _measure(
    cases: Sequence[tuple[nn.Module, tuple[torch.Tensor, ...]]],
    warmup: int,
    repeats: int,
    threads: int | None,
    min_time_s: float,
) -> list[Latency]:
    """Warm every case up, then time them in interleaved rounds (order rotating each round) until
    each has `repeats` passes and `min_time_s` of measured time, or MAX_REPEAT_FACTOR x repeats."""
    devices = [inputs[0].device for _, inputs in cases]
    times: list[list[float]] = [[] for _ in cases]
    with ExitStack() as stack:
        stack.enter_context(_threads(threads))
        stack.enter_context(torch.no_grad())
        for model in {id(m): m for m, _ in cases}.values():
            stack.enter_context(eval_mode(model))
        used_threads = torch.get_num_threads()
        stack.enter_context(_no_gc())
        for (model, inputs), device in zip(cases, devices):
            for _ in range(warmup):
                _time_pass(model, inputs, device)
        n = len(cases)
        for r in range(repeats * MAX_REPEAT_FACTOR):
            if r >= repeats and min(sum(t) for t in times) >= min_time_s:
                break
            for k in range(n):
                i = (r + k) % n
                times[i].append(_time_pass(cases[i][0], cases[i][1], devices[i]))
    return [
        _summary(t, batch_size(inputs), None if device.type == "cuda" else used_threads, device)
        for t, (_, inputs), device in zip(times, cases, devices)
    ]


def measure_latency(
    model: nn.Module,
    example_input: ExampleInput,
    *,
    warmup: int = 3,
    repeats: int = 10,
    threads: int | None = None,
    min_time_s: float = 0.0,
) -> Latency:
    """Latency of one eval-mode, no-grad forward pass of the model on the example input."""
    _check(warmup, repeats, threads, min_time_s)
    inputs = as_inputs(example_input, model)
    return _measure([(model, inputs)], warmup, repeats, threads, min_time_s)[0]


def compare_latency(
    models: Mapping[str, nn.Module],
    example_input: ExampleInput,
    *,
    warmup: int = 3,
    repeats: int = 10,
    threads: int | None = None,
    min_time_s: float = 0.0,
) -> dict[str, Latency]:
    """Latency of each named model on the same input, measured interleaved in one process."""
    _check(warmup, repeats, threads, min_time_s)
    if not isinstance(models, Mapping) or not models:
        raise ConfigError("compare_latency needs a non-empty mapping of name -> model")
    names = list(models)
    cases = [(models[name], as_inputs(example_input, models[name])) for name in names]
    return dict(zip(names, _measure(cases, warmup, repeats, threads, min_time_s)))


def _resize_batch(inputs: tuple[torch.Tensor, ...], size: int) -> tuple[torch.Tensor, ...]:
    """The inputs with `size` examples: the first ones of the batch, or the batch tiled (every
    tensor with the batch's leading size alike; others as given)."""
    n = batch_size(inputs)
    copies = -(-size // n)

    def resize(t: torch.Tensor) -> torch.Tensor:
        if t.dim() == 0 or t.shape[0] != n:
            return t
        if copies > 1:
            t = t.repeat(copies, *([1] * (t.dim() - 1)))
        return t[:size].contiguous()

    return tuple(resize(t) for t in inputs)


def latency_at_batches(
    model: nn.Module,
    example_input: ExampleInput,
    batch_sizes: Sequence[int],
    *,
    warmup: int = 3,
    repeats: int = 10,
    threads: int | None = None,
    min_time_s: float = 0.0,
) -> dict[int, Latency]:
    """Latency at each batch size, the example batch sliced or tiled to it, measured interleaved."""
    _check(warmup, repeats, threads, min_time_s)
    try:
        sizes = list(dict.fromkeys(batch_sizes))
    except TypeError:  # not an iterable of hashables
        sizes = []
    if not sizes or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in sizes):
        raise ConfigError(f"latency_at_batches needs batch sizes that are ints >= 1, got {batch_sizes!r}")
    inputs = as_inputs(example_input, model)
    cases = [(model, _resize_batch(inputs, b)) for b in sizes]
    return dict(zip(sizes, _measure(cases, warmup, repeats, threads, min_time_s)))
