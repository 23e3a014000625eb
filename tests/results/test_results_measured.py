"""Measured speed in the results layer: frame columns and units, medians per operating point, the kinds
of pruning, and the runs that got slower while needing fewer MACs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from shrinkbench.results import load
from shrinkbench.results.analysis import (MEASURED_MAX, THEORETICAL_MIN, aggregate, has_measured_speed,
                                          is_structured, measured_by_kind, measured_speed,
                                          slower_than_dense)
from shrinkbench.results.frame import MEASURED_KEYS, frame_metric_name, frame_metric_value
from shrinkbench.results.store import Store


def _config(strategy, compression, seed):
    return {"data": {"name": "mnist"}, "model": {"name": "lenet300"},
            "pruning": {"strategy": strategy, "compression": compression}, "seed": seed}


def test_measured_metrics_load_as_numbers_with_their_names(tmp_path):
    with Store(tmp_path) as s:
        s.register("old", "prune", _config("random", 2, 0))
        s.start("old"), s.finish("old", {"speedup": 2.0, "post_test_acc1": 0.9})
    old = load(tmp_path)
    assert not set(MEASURED_KEYS) & set(old.columns)  # a store from before latencies: no new columns
    assert not has_measured_speed(old)
    with Store(tmp_path) as s:
        s.register("new", "prune", _config("random", 4, 0))
        s.start("new"), s.finish("new", {
            "speedup": 4.0, "speedup_measured": 1.25, "latency_dense_ms": 5.0, "latency_ms": 4.0,
            "latency_iqr_ms": 0.5, "latency_batch": 32, "latency_threads": 2, "latency_device": "cpu",
            "structured": True, "channels_kept_fraction": 0.5, "latency_sparse_ms": None})
    df = load(tmp_path).set_index("run_id")
    assert df.loc["new", "structured"] == 1.0 and isinstance(df.loc["new", "structured"], float)
    assert df.loc["new", "speedup_measured"] == pytest.approx(1.25)
    assert df.loc["new", "latency_device"] == "cpu" and df.loc["new", "latency_threads"] == 2
    assert math.isnan(df.loc["new", "latency_sparse_ms"])  # null in the store
    assert math.isnan(df.loc["old", "speedup_measured"])
    assert has_measured_speed(df)
    # names keep their unit suffixes; values pass unchanged except true/false and unreadable strings
    assert [frame_metric_name(k) for k in MEASURED_KEYS] == list(MEASURED_KEYS)
    assert frame_metric_value("structured", False) == 0.0
    assert frame_metric_value("latency_ms", "3.5") == 3.5
    assert math.isnan(frame_metric_value("latency_ms", "fast"))
    assert frame_metric_value("latency_device", "cuda:0") == "cuda:0"


def _run(strategy, compression, seed, speedup, measured, structured=None, **more):
    row = {"run_id": f"{strategy}-{compression}-{seed}", "dataset": "mnist", "model": "lenet",
           "strategy": strategy, "compression": float(compression), "seed": seed, "speedup": speedup,
           "speedup_measured": measured, "latency_dense_ms": 4.0,
           "latency_ms": 4.0 / measured if measured else np.nan,
           "latency_batch": 32, "latency_threads": 1, "latency_device": "cpu", **more}
    if structured is not None:
        row["structured"] = structured
    return row


@pytest.fixture
def runs():
    return pd.DataFrame([
        _run("Unpruned", 1, 0, 1.0, 1.01, 0.0),
        _run("GlobalMagWeight", 4, 0, 4.1, 0.98, 0.0),
        _run("GlobalMagWeight", 4, 1, 4.1, 1.02, 0.0),
        _run("GlobalMagWeight", 4, 2, 4.1, 0.90, 0.0, latency_threads=4.0),  # slower: flagged
        _run("Channels", 4, 0, 4.0, 2.5, 1.0, channels_kept_fraction=0.5),
        _run("Channels", 4, 1, 4.0, 2.9, 1.0, channels_kept_fraction=0.5, latency_device="cuda"),
        _run("Channels", 2, 0, 1.05, 0.5, 1.0),  # 1.05 is within the margin: not flagged
        _run("Channels", 8, 0, 8.0, 0.95, 1.0),  # 0.95 is within the margin: not flagged
        _run("Channels", 16, 0, 16.0, math.inf, 1.0),  # a broken timing: ignored
    ])


def test_measured_speed_medians_per_operating_point(runs):
    table = measured_speed(runs, by=("strategy", "compression")).set_index(["strategy", "compression"])
    mag = table.loc[("GlobalMagWeight", 4.0)]
    assert mag["n"] == 3 and mag["structured"] == 0.0
    assert mag["speedup_measured_median"] == pytest.approx(0.98)
    assert (mag["speedup_measured_min"], mag["speedup_measured_max"]) == (0.90, 1.02)
    assert mag["latency_ms_median"] == pytest.approx(4.0 / 0.98)
    assert mag["speedup_median"] == pytest.approx(4.1)
    assert mag["latency_threads"] == (1, 4) and mag["latency_device"] == ("cpu",)
    chan = table.loc[("Channels", 4.0)]
    assert chan["speedup_measured_median"] == pytest.approx(2.7) and chan["structured"] == 1.0
    assert chan["channels_kept_fraction_median"] == 0.5 and chan["latency_device"] == ("cpu", "cuda")
    assert ("Channels", 16.0) not in table.index  # no finite measured speedup
    assert measured_speed(runs.drop(columns="speedup_measured")).empty


def test_slower_runs_are_beyond_both_margins(runs):
    assert (THEORETICAL_MIN, MEASURED_MAX) == (1.05, 0.95)
    flagged = slower_than_dense(runs)
    assert list(flagged["run_id"]) == ["GlobalMagWeight-4-2"]
    assert flagged.iloc[0]["speedup"] == 4.1 and flagged.iloc[0]["speedup_measured"] == 0.90
    assert list(slower_than_dense(runs, theoretical_min=1.0, measured_max=0.99)["run_id"]) == [
        "Channels-2-0", "Channels-8-0", "GlobalMagWeight-4-0", "GlobalMagWeight-4-2"]
    assert slower_than_dense(runs.drop(columns="speedup_measured")).empty


def test_kinds_of_pruning_leave_out_the_control(runs):
    kinds = measured_by_kind(runs).set_index("kind")
    assert kinds.loc["unstructured", "runs"] == 3  # the control (compression 1) is not pruning
    assert kinds.loc["unstructured", "measured_median"] == pytest.approx(0.98)
    assert kinds.loc["unstructured", "theoretical_max"] == pytest.approx(4.1)
    assert kinds.loc["structured", "runs"] == 4  # the infinite timing is not counted
    assert kinds.loc["structured", "measured_max"] == pytest.approx(2.9)
    # `structured` absent (or NaN) counts as unstructured masks
    without = runs.drop(columns="structured")
    assert not is_structured(without).any()
    assert list(measured_by_kind(without)["kind"]) == ["unstructured"]
    assert list(is_structured(runs.assign(structured=[np.nan] + [1.0] * 8))) == [False] + [True] * 8


def test_no_measured_speed_when_absent_or_not_finite(runs):
    assert has_measured_speed(runs)
    assert not has_measured_speed(runs.drop(columns="speedup_measured"))
    assert not has_measured_speed(runs.assign(speedup_measured=[math.inf, -1.0, 0.0, None, *[np.nan] * 5]))
    # the default aggregate takes the measured speedup along when it is there, and only then
    assert "speedup_measured_mean" in aggregate(runs).columns
    assert "speedup_measured_mean" not in aggregate(runs.drop(columns="speedup_measured")).columns


def test_strategies_aimed_at_different_targets_are_not_compared_at_one_value():
    import pandas as pd

    from shrinkbench.results.analysis import compare_per_compression, target_of

    rows = [{"dataset": "d", "model": "m", "strategy": s, "compression": 2.0, "seed": seed,
             "post_test_top1_pct": 90.0 + seed + (0.5 if "L1" in s else 0)}
            for s in ("GlobalMagWeight", "LayerChannelL1 (speedup)", "GlobalChannelL2 (speedup)")
            for seed in range(3)]
    table = compare_per_compression(pd.DataFrame(rows))
    assert [(r.a, r.b) for r in table.itertuples()] == [("GlobalChannelL2 (speedup)", "LayerChannelL1 (speedup)")]
    assert target_of("LayerChannelL1 (channels)") == "channels" and target_of("Random") == "compression"
