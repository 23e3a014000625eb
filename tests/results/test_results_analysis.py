"""Aggregation and statistics against values computed by hand."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from shrinkbench.errors import ConfigError
from shrinkbench.results import display_name
from shrinkbench.results.analysis import accuracy_change, aggregate, auc, paired_comparison, pareto_front
from shrinkbench.results.names import canonical_strategy

T975_DF2 = 4.302652729911275  # t table, 97.5% quantile, 2 degrees of freedom
T975_DF5 = 2.570581835636314


def _row(strategy, compression, seed, **values):
    return {"dataset": "mnist", "model": "lenet", "strategy": strategy, "compression": float(compression),
            "seed": seed, **values}


def test_aggregate_mean_std_ci_n():
    df = pd.DataFrame([
        _row("random", 2, 0, post_test_top1_pct=0.80, speedup=2.0),
        _row("random", 2, 1, post_test_top1_pct=0.82, speedup=2.0),
        _row("random", 2, 2, post_test_top1_pct=0.87, speedup=2.0),
        _row("random", 4, 0, post_test_top1_pct=0.50, speedup=4.0),
        _row("random", 8, 0, post_test_top1_pct=0.60, speedup=8.0),
        _row("random", 8, 1, post_test_top1_pct=float("nan"), speedup=8.0),
    ])
    agg = aggregate(df, metrics=["post_test_top1_pct"])
    assert list(agg.columns) == ["dataset", "model", "strategy", "compression", "post_test_top1_pct_mean",
                                 "post_test_top1_pct_std", "post_test_top1_pct_ci95", "post_test_top1_pct_n"]
    assert list(agg["compression"]) == [2.0, 4.0, 8.0]
    first = agg.iloc[0]
    std = math.sqrt((0.03**2 + 0.01**2 + 0.04**2) / 2)
    assert first["post_test_top1_pct_mean"] == pytest.approx(0.83)
    assert first["post_test_top1_pct_std"] == pytest.approx(std)
    assert first["post_test_top1_pct_ci95"] == pytest.approx(T975_DF2 * std / math.sqrt(3))
    assert first["post_test_top1_pct_n"] == 3
    for i in (1, 2):  # one value: no spread, no interval
        assert agg.iloc[i]["post_test_top1_pct_n"] == 1
        assert math.isnan(agg.iloc[i]["post_test_top1_pct_std"]) and math.isnan(agg.iloc[i]["post_test_top1_pct_ci95"])
    assert agg.iloc[2]["post_test_top1_pct_mean"] == pytest.approx(0.60)
    default = aggregate(df)  # default metrics: those present
    assert "speedup_mean" in default.columns and "post_test_top5_pct_mean" not in default.columns
    with pytest.raises(ConfigError, match="'nope'"):
        aggregate(df, metrics=["nope"])


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=2, max_size=8))
def test_aggregate_matches_numpy(values):
    df = pd.DataFrame([_row("random", 2, i, post_test_top1_pct=v) for i, v in enumerate(values)])
    row = aggregate(df, metrics=["post_test_top1_pct"]).iloc[0]
    arr = np.array(values)
    n = len(arr)
    assert row["post_test_top1_pct_mean"] == pytest.approx(arr.mean(), abs=1e-12)
    assert row["post_test_top1_pct_std"] == pytest.approx(arr.std(ddof=1), abs=1e-9)
    half = stats.t.ppf(0.975, n - 1) * arr.std(ddof=1) / math.sqrt(n)
    assert row["post_test_top1_pct_ci95"] == pytest.approx(half, abs=1e-9)


def test_accuracy_change_control_dense_and_none():
    ft = {"finetune.epochs": 2}
    df = pd.DataFrame([
        _row("global_magnitude", 1, 0, post_test_top1_pct=0.95, dense_test_top1_pct=0.99, **ft),
        _row("global_magnitude", 1, 1, post_test_top1_pct=0.93, dense_test_top1_pct=0.99, **ft),
        _row("random", 1, 1, post_test_top1_pct=0.91, dense_test_top1_pct=0.99, **ft),
        _row("random", 2, 0, post_test_top1_pct=0.90, dense_test_top1_pct=0.99, **ft),
        _row("random", 2, 1, post_test_top1_pct=0.90, dense_test_top1_pct=0.99, **ft),
        _row("random", 2, 2, post_test_top1_pct=0.90, dense_test_top1_pct=0.97, **ft),
        _row("random", 4, 0, post_test_top1_pct=0.80, dense_test_top1_pct=float("nan"), **{"finetune.epochs": 5}),
    ])
    out = accuracy_change(df)
    assert list(out["delta_reference"]) == ["control", "control", "control", "control", "control", "dense", "none"]
    expected = [0.0, 0.01, -0.01, -0.05, -0.02, -0.07, float("nan")]
    np.testing.assert_allclose(out["delta_post_test_top1_pct"], expected, atol=1e-12)
    np.testing.assert_allclose(out["reference_post_test_top1_pct"][:3], [0.95, 0.92, 0.92])
    assert "delta_post_test_top1_pct" not in df.columns  # input left alone


def test_auc_on_shared_log_range():
    rows = [_row("a", 1, 0, post_test_top1_pct=1.0, compression_ratio=1.0)]  # the control: excluded
    rows += [_row("a", 2, s, post_test_top1_pct=v, compression_ratio=2.0) for s, v in ((0, 0.88), (1, 0.92))]
    rows += [_row("a", c, 0, post_test_top1_pct=v, compression_ratio=float(c)) for c, v in ((4, 0.8), (8, 0.6))]
    rows += [_row("b", c, 0, post_test_top1_pct=v, compression_ratio=float(c))
             for c, v in ((2 * math.sqrt(2), 0.9), (8, 0.7), (16, 0.5))]
    out = auc(pd.DataFrame(rows)).set_index("strategy")
    # shared log2 range: [max(1, 1.5), min(3, 4)] = [1.5, 3]
    assert out.loc["a", "log2_lo"] == pytest.approx(1.5) and out.loc["a", "log2_hi"] == pytest.approx(3.0)
    area_a = 0.5 * (0.85 + 0.8) / 2 + 1.0 * (0.8 + 0.6) / 2
    assert out.loc["a", "auc"] == pytest.approx(area_a / 1.5)
    assert out.loc["b", "auc"] == pytest.approx(0.8)
    assert list(out["points"]) == [3, 3]


def test_auc_single_point_is_nan():
    df = pd.DataFrame([_row("a", 2, 0, post_test_top1_pct=0.9, compression_ratio=2.0)])
    assert math.isnan(auc(df)["auc"].iloc[0])


def test_pareto_front_by_hand():
    pts = [(1, 0.95), (2, 0.9), (2, 0.85), (4, 0.9), (8, 0.7), (8, 0.7), (16, 0.5), (4, 0.6), (32, float("nan"))]
    df = pd.DataFrame([_row("a", x, i, compression_ratio=float(x), post_test_top1_pct=y) for i, (x, y) in enumerate(pts)])
    front = pareto_front(df)
    assert list(zip(front["compression_ratio"], front["post_test_top1_pct"])) == [
        (1, 0.95), (4, 0.9), (8, 0.7), (8, 0.7), (16, 0.5)
    ]
    df["other"] = ["u"] * 4 + ["v"] * 5
    by_group = pareto_front(df, by=["other"])
    assert list(by_group["seed"]) == [0, 3, 4, 5, 6]
    speed = pareto_front(df.assign(speedup=[1, 1, 1, 1, 1, 1, 1, 1, 9]), x="speedup")
    assert list(speed["seed"]) == [0]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=25))
def test_pareto_front_matches_brute_force(points):
    df = pd.DataFrame({"compression_ratio": [float(p[0]) for p in points],
                       "post_test_top1_pct": [float(p[1]) for p in points]})
    got = set(pareto_front(df).index)

    def dominated(i):
        xi, yi = points[i]
        return any(xj >= xi and yj >= yi and (xj > xi or yj > yi) for xj, yj in points)

    assert got == {i for i in range(len(points)) if not dominated(i)}


def _paired_frame():
    diffs = [0.01, 0.02, 0.03, -0.015, 0.05, 0.025]
    rows = []
    for (c, s), d in zip(itertools.product((2, 4), (0, 1, 2)), diffs):
        rows.append(_row("GlobalMagWeight", c, s, post_test_top1_pct=0.7 + d))
        rows.append(_row("random", c, s, post_test_top1_pct=0.7))
    rows.append(_row("global_magnitude", 1, 0, post_test_top1_pct=0.99))  # controls are not compared
    rows.append(_row("random", 1, 0, post_test_top1_pct=0.5))
    rows.append(_row("random", 8, 0, post_test_top1_pct=0.5))  # unmatched
    return pd.DataFrame(rows), diffs


def test_paired_comparison_by_hand():
    df, diffs = _paired_frame()
    res = paired_comparison(df, "global_magnitude", "RandomPruning")
    assert (res.a, res.b, res.n) == ("global_magnitude", "random", 6)
    mean = 0.02
    std = math.sqrt((0.01**2 + 0 + 0.01**2 + 0.035**2 + 0.03**2 + 0.005**2) / 5)
    se = std / math.sqrt(6)
    assert res.mean_diff == pytest.approx(mean)
    assert res.std_diff == pytest.approx(std)
    assert res.ci95_low == pytest.approx(mean - T975_DF5 * se)
    assert res.ci95_high == pytest.approx(mean + T975_DF5 * se)
    assert res.t_statistic == pytest.approx(mean / se)
    assert res.p_value == pytest.approx(2 * stats.t.sf(mean / se, 5))
    # ranks of |d|: negative difference has rank 2, so W = 2; exact p = 2 * #{subsets of 1..6 with sum <= 2} / 2^6
    assert res.wilcoxon_p == pytest.approx(2 * 3 / 64)
    assert res.to_dict()["n"] == 6
    flipped = paired_comparison(df, "random", "global_magnitude")
    assert flipped.mean_diff == pytest.approx(-mean) and flipped.p_value == pytest.approx(res.p_value)


def test_paired_comparison_small_and_errors():
    df, _ = _paired_frame()
    few = paired_comparison(df[df["compression"] != 4], "global_magnitude", "random")
    assert few.n == 3 and math.isnan(few.wilcoxon_p) and not math.isnan(few.p_value)
    with pytest.raises(ConfigError, match="'layer_gradient' has no runs"):
        paired_comparison(df, "layer_gradient", "random")
    shifted = df.assign(seed=np.where(df["strategy"] == "random", df["seed"] + 10, df["seed"]))
    with pytest.raises(ConfigError, match="no matching pairs"):
        paired_comparison(shifted, "global_magnitude", "random")


def test_display_and_canonical_names():
    pairs = {"global_magnitude": "GlobalMagWeight", "layer_magnitude": "LayerMagWeight",
             "global_gradient": "GlobalMagGrad", "layer_gradient": "LayerMagGrad",
             "global_activation": "GlobalMagAct", "layer_activation": "LayerMagAct", "random": "RandomPruning"}
    for canonical, shown in pairs.items():
        assert display_name(canonical) == shown and display_name(shown) == shown
        assert canonical_strategy(shown) == canonical and canonical_strategy(shown.lower()) == canonical
    assert display_name("my_method") == "my_method" and canonical_strategy("MyMethod") == "MyMethod"
