"""Measured latency: known sleep times come back as medians, side-by-side ratios, settings restored."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from shrinkbench.errors import ConfigError
from shrinkbench.metrics import Latency, compare_latency, latency_at_batches, measure_latency
from shrinkbench.pruning.masks import attach_mask


class Sleeper(nn.Module):
    """Sleeps a known time in forward, recording (its name, training flag, batch) for each call."""

    def __init__(self, seconds: float, name: str = "", calls: list | None = None) -> None:
        super().__init__()
        self.seconds, self.name = seconds, name
        self.calls = [] if calls is None else calls
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((self.name, self.training, int(x.shape[0]), torch.is_grad_enabled()))
        time.sleep(self.seconds)
        return x * self.scale


def test_median_of_a_10ms_forward_is_10ms():
    result = measure_latency(Sleeper(0.01), torch.zeros(4, 3), warmup=1, repeats=5)
    assert isinstance(result, Latency)
    # sleep never returns early; wake-ups on a loaded 2-core machine add a few ms
    assert 9.5 <= result.median_ms <= 20.0
    assert 9.5 <= result.min_ms <= result.median_ms
    assert 0.0 <= result.iqr_ms <= result.median_ms
    assert result.mean_ms >= result.min_ms
    assert (result.repeats, result.batch, result.device) == (5, 4, "cpu")
    assert result.threads == torch.get_num_threads()
    assert result.throughput == pytest.approx(4 / (result.median_ms / 1e3))
    assert result.to_metrics("dense_latency") == {
        "dense_latency_ms": result.median_ms, "dense_latency_iqr_ms": result.iqr_ms,
    }


def test_warmup_plus_repeats_forwards_in_eval_mode_without_grad_and_modes_restored():
    calls: list = []
    net = nn.Sequential(Sleeper(0.0, "a", calls), nn.Dropout()).train()
    net[1].eval()  # a mixed model: each submodule gets its own flag back
    result = measure_latency(net, torch.randn(2, 3), warmup=2, repeats=5)
    assert calls == [("a", False, 2, False)] * 7
    assert result.repeats == 5
    assert net.training and net[0].training and not net[1].training
    assert torch.is_grad_enabled()


def test_threads_are_set_for_the_measurement_and_restored():
    before = torch.get_num_threads()
    seen = []

    class Probe(nn.Module):
        def forward(self, x):
            seen.append(torch.get_num_threads())
            return x

    target = 1 if before != 1 else 2
    result = measure_latency(Probe(), torch.zeros(1, 2), warmup=1, repeats=2, threads=target)
    assert seen == [target] * 3 and result.threads == target
    assert torch.get_num_threads() == before


def test_threads_are_restored_when_the_forward_fails():
    before = torch.get_num_threads()

    class Broken(nn.Module):
        def forward(self, x):
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        measure_latency(Broken(), torch.zeros(1, 2), threads=1 if before != 1 else 2)
    assert torch.get_num_threads() == before


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"warmup": -1}, "warmup"), ({"repeats": 0}, "repeats"), ({"repeats": 2.5}, "repeats"),
        ({"threads": 0}, "threads"), ({"threads": True}, "threads"), ({"min_time_s": -1.0}, "min_time_s"),
    ],
)
def test_bad_arguments_are_config_errors_naming_the_field(kwargs, field):
    for call in (
        lambda: measure_latency(nn.Identity(), torch.zeros(1, 2), **kwargs),
        lambda: compare_latency({"a": nn.Identity()}, torch.zeros(1, 2), **kwargs),
        lambda: latency_at_batches(nn.Identity(), torch.zeros(1, 2), [1], **kwargs),
    ):
        with pytest.raises(ConfigError, match=field) as info:
            call()
        assert "\n" not in str(info.value)


def test_bad_models_and_batch_sizes_are_config_errors():
    with pytest.raises(ConfigError, match="non-empty mapping"):
        compare_latency({}, torch.zeros(1, 2))
    for sizes in ([], [0], [2, -1], [1.5], 3):
        with pytest.raises(ConfigError, match="batch sizes"):
            latency_at_batches(nn.Identity(), torch.zeros(1, 2), sizes)


def test_min_time_adds_repeats_up_to_ten_times_repeats():
    result = measure_latency(Sleeper(0.002), torch.zeros(1, 2), warmup=0, repeats=2, min_time_s=0.03)
    assert 2 < result.repeats <= 20
    assert result.repeats * result.mean_ms >= 30.0 or result.repeats == 20
    capped = measure_latency(nn.Identity(), torch.zeros(1, 2), warmup=0, repeats=3, min_time_s=60.0)
    assert capped.repeats == 30


def test_compare_gives_the_ratio_of_known_sleep_times():
    results = compare_latency(
        {"slow": Sleeper(0.02), "fast": Sleeper(0.005)}, torch.zeros(8, 2), warmup=1, repeats=5,
    )
    assert list(results) == ["slow", "fast"]
    ratio = results["slow"].median_ms / results["fast"].median_ms
    assert 2.0 <= ratio <= 4.5  # 20 ms / 5 ms; late wake-ups on a loaded machine add to both alike
    assert results["slow"].batch == results["fast"].batch == 8
    assert results["slow"].repeats == results["fast"].repeats == 5


def test_compare_warms_each_model_up_then_interleaves_in_rotating_order():
    calls: list = []
    models = {name: Sleeper(0.0, name, calls) for name in "abc"}
    compare_latency(models, torch.zeros(1, 2), warmup=2, repeats=4)
    order = "".join(name for name, *_ in calls)
    assert order == "aabbcc" + "abc" + "bca" + "cab" + "abc"


def test_compare_with_min_time_runs_whole_rounds_until_every_model_has_it():
    results = compare_latency(
        {"slow": Sleeper(0.004), "fast": nn.Identity()}, torch.zeros(1, 2),
        warmup=0, repeats=2, min_time_s=0.05,
    )
    slow, fast = results["slow"], results["fast"]
    assert slow.repeats == fast.repeats > 2
    # "fast" takes microseconds a pass: the cap of 10 x repeats ends it, unless the machine stalled it
    assert fast.repeats == 20 or fast.mean_ms * fast.repeats >= 50.0


def test_latency_at_batches_slices_and_tiles_the_example_batch():
    calls: list = []
    batch = torch.arange(6.0).reshape(3, 2)
    seen = []

    class Record(nn.Module):
        def forward(self, x, y):
            seen.append((x.clone(), y.clone()))
            calls.append(x.shape[0])
            return x

    results = latency_at_batches(Record(), (batch, torch.ones(5)), [1, 3, 7], warmup=0, repeats=2)
    assert list(results) == [1, 3, 7]
    assert {b: r.batch for b, r in results.items()} == {1: 1, 3: 3, 7: 7}
    assert calls == [1, 3, 7, 3, 7, 1]  # interleaved, rotating
    by_size = {x.shape[0]: (x, y) for x, y in seen}
    assert torch.equal(by_size[1][0], batch[:1])
    assert torch.equal(by_size[7][0], torch.cat([batch, batch, batch[:1]]))
    assert all(y.shape == (5,) for _, y in by_size.values())  # not of the batch's size: left as is
    single = latency_at_batches(nn.Identity(), torch.zeros(1, 4), [16])
    assert single[16].batch == 16 and single[16].throughput == pytest.approx(16e3 / single[16].median_ms)


def test_a_masked_model_is_measured_and_keeps_its_masks():
    net = nn.Sequential(nn.Linear(4, 3))
    attach_mask(net[0], "weight", torch.tensor([[1.0, 0, 0, 0]] * 3))
    result = measure_latency(net, torch.randn(2, 4), warmup=1, repeats=3)
    assert result.median_ms > 0 and result.repeats == 3
    assert int(torch.count_nonzero(net[0].weight)) <= 3
