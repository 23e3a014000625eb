"""Aggregation and statistics against values computed by hand."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from shrinkbench.errors import ConfigError
from shrinkbench.results import display_name
from shrinkbench.results.analysis import (accuracy_change, aggregate, auc, compare_per_compression, holm,
                                          paired_comparison, pareto_front)
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
    assert (res.a, res.b, res.n) == ("GlobalMagWeight", "RandomPruning", 6)
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
    with pytest.raises(ConfigError, match="'LayerMagGrad' has no runs"):
        paired_comparison(df, "layer_gradient", "random")
    shifted = df.assign(seed=np.where(df["strategy"] == "random", df["seed"] + 10, df["seed"]))
    with pytest.raises(ConfigError, match="no matching pairs"):
        paired_comparison(shifted, "global_magnitude", "random")


def _holm_by_hand(p):
    """Holm's step-down procedure written out: sort, scale by m - i, carry the running maximum, cap at 1."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    out, running = [0.0] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, (len(p) - rank) * p[i])
        out[i] = min(1.0, running)
    return out


def test_holm_by_hand():
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(holm([0.001, 0.2]), [0.002, 0.2])
    np.testing.assert_allclose(holm([0.5, 0.6]), [1.0, 1.0])
    out = holm([0.01, float("nan"), 0.04, 0.03])  # an untestable comparison is not in the family
    assert math.isnan(out[1]) and list(out[[0, 2, 3]]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([]).shape == (0,)
    rng = np.random.default_rng(0)
    p = list(rng.uniform(0, 0.2, 9))
    np.testing.assert_allclose(holm(p), _holm_by_hand(p))


def _per_compression_frame():
    rng = np.random.default_rng(7)
    rows = []
    for model, offset in (("lenet", 0.0), ("conv", 5.0)):
        for c in (2, 4):
            for seed in range(4):
                for strategy, drop in (("GlobalMagWeight", 1.0), ("LayerMagWeight", 1.5), ("RandomPruning", 6.0)):
                    if strategy == "LayerMagWeight" and c == 4 and model == "conv":
                        continue  # not run there: no comparison with it at that point
                    value = 95 - offset - drop * c + rng.normal(0, 1.0)
                    rows.append({**_row(strategy, c, seed, post_test_top1_pct=value), "model": model})
        rows.append({**_row("Unpruned", 1, 0, post_test_top1_pct=97.0), "model": model})  # controls: left out
    rows.append({**_row("RandomPruning", 2, 0, post_test_top1_pct=50.0), "model": "lenet"})  # a rerun: averaged
    return pd.DataFrame(rows)


def test_compare_per_compression_against_scipy_and_holm_by_hand():
    df = _per_compression_frame()
    out = compare_per_compression(df)
    assert list(out.columns[:7]) == ["dataset", "model", "compression", "a", "b", "n", "mean_a"]
    assert len(out) == 3 + 3 + 3 + 1  # conv at 4x has two strategies; controls never compared
    assert set(out["a"]) | set(out["b"]) == {"GlobalMagWeight", "LayerMagWeight", "RandomPruning"}
    for (model,), group in out.groupby(["model"]):
        p_values = []
        for _, r in group.iterrows():
            at = df[(df["model"] == model) & (df["compression"] == r["compression"])]
            a, b = (at[at["strategy"] == s].groupby("seed")["post_test_top1_pct"].mean() for s in (r["a"], r["b"]))
            assert r["n"] == 4 and r["a"] < r["b"]
            test = stats.ttest_rel(a.to_numpy(), b.to_numpy())
            d = (a - b).to_numpy()
            half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2.0
            assert r["mean_diff"] == pytest.approx(d.mean())
            assert r["mean_a"] == pytest.approx(a.mean()) and r["mean_b"] == pytest.approx(b.mean())
            assert (r["ci95_low"], r["ci95_high"]) == pytest.approx((d.mean() - half, d.mean() + half))
            assert r["t_statistic"] == pytest.approx(test.statistic)
            assert r["p_value"] == pytest.approx(test.pvalue, rel=1e-9)
            p_values.append(test.pvalue)
        # Holm over the family of one (dataset, model) pair, not over all the rows
        assert group["p_holm"].tolist() == pytest.approx(_holm_by_hand(p_values))
        assert group["significant"].tolist() == [p < 0.05 for p in _holm_by_hand(p_values)]
    rerun = df[(df["model"] == "lenet") & (df["strategy"] == "RandomPruning") & (df["compression"] == 2)]
    row = out[(out["model"] == "lenet") & (out["compression"] == 2) & (out["b"] == "RandomPruning")
              & (out["a"] == "GlobalMagWeight")].iloc[0]
    assert row["mean_b"] == pytest.approx(rerun.groupby("seed")["post_test_top1_pct"].mean().mean())


def test_compare_per_compression_edge_cases():
    rows = [_row(s, 2, seed, post_test_top1_pct=v) for seed in range(3)
            for s, v in (("a", 90.0 + seed), ("b", 90.0 + seed), ("c", 89.0 + seed))]
    rows += [_row("a", 4, 0, post_test_top1_pct=80.0), _row("b", 4, 0, post_test_top1_pct=70.0)]
    out = compare_per_compression(pd.DataFrame(rows)).set_index(["compression", "a", "b"])
    same = out.loc[(2.0, "a", "b")]  # identical runs: no effect, nothing to test
    assert same["mean_diff"] == 0 and math.isnan(same["p_value"]) and math.isnan(same["p_holm"])
    assert not same["significant"]
    shifted = out.loc[(2.0, "a", "c")]  # a constant difference of 1 pp on each of 3 seeds
    assert shifted["mean_diff"] == pytest.approx(1.0)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy warns about the zero spread
        assert stats.ttest_rel([90.0, 91, 92], [89.0, 90, 91]).pvalue == 0.0  # the t-test's answer
    # ... is not used: with no spread, the exact two-sided sign test: 3 of 3 positive, p = 2 / 2**3
    assert shifted["p_value"] == 0.25 and not shifted["significant"]
    assert stats.binomtest(3, 3, 0.5).pvalue == pytest.approx(0.25)
    one = out.loc[(4.0, "a", "b")]  # one seed: a difference but no interval and no test
    assert one["n"] == 1 and one["mean_diff"] == 10.0 and math.isnan(one["ci95_low"])
    assert math.isnan(one["p_value"]) and not one["significant"]
    # the family holds the 2 finite p-values only
    assert out["p_holm"].notna().sum() == 2
    empty = compare_per_compression(pd.DataFrame(rows).iloc[0:0])
    assert empty.empty and "p_holm" in empty.columns
    with pytest.raises(ConfigError, match="'post_test_top1_pct'"):
        compare_per_compression(pd.DataFrame(rows).drop(columns="post_test_top1_pct"))


def test_display_and_canonical_names():
    pairs = {"global_magnitude": "GlobalMagWeight", "layer_magnitude": "LayerMagWeight",
             "global_gradient": "GlobalMagGrad", "layer_gradient": "LayerMagGrad",
             "global_activation": "GlobalMagAct", "layer_activation": "LayerMagAct", "random": "RandomPruning"}
    for canonical, shown in pairs.items():
        assert display_name(canonical) == shown and display_name(shown) == shown
        assert canonical_strategy(shown) == canonical and canonical_strategy(shown.lower()) == canonical
    assert display_name("my_method") == "my_method" and canonical_strategy("MyMethod") == "MyMethod"
