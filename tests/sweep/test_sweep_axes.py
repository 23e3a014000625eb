"""Grid and zip expansion of sweep axes (plain data, no experiment needed)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shrinkbench.errors import SweepError
from shrinkbench.sweep.axes import parse_axes


def test_grid_is_crossed_last_key_fastest():
    axes = parse_axes({"pruning.strategy": ["a", "b"], "seed": [0, 1, 2]})
    points = list(axes.points())
    assert len(axes) == 6
    assert points[:4] == [
        {"pruning.strategy": "a", "seed": 0},
        {"pruning.strategy": "a", "seed": 1},
        {"pruning.strategy": "a", "seed": 2},
        {"pruning.strategy": "b", "seed": 0},
    ]


def test_zip_varies_keys_together_and_crosses_the_grid():
    axes = parse_axes(
        {"seed": [0, 1]},
        {"data.name": ["mnist", "cifar10"], "model.name": ["lenet300", "resnet56"]},
    )
    points = list(axes.points())
    assert len(points) == 4
    pairs = {(p["data.name"], p["model.name"]) for p in points}
    assert pairs == {("mnist", "lenet300"), ("cifar10", "resnet56")}
    assert points[0] == {"data.name": "mnist", "model.name": "lenet300", "seed": 0}
    assert points[3] == {"data.name": "cifar10", "model.name": "resnet56", "seed": 1}


def test_several_zip_groups_are_crossed():
    axes = parse_axes(None, [{"a": [1, 2], "b": [3, 4]}, {"c": [5, 6, 7]}])
    assert len(axes) == 6
    assert {(p["a"], p["b"], p["c"]) for p in axes.points()} == {
        (a, b, c) for a, b in ((1, 3), (2, 4)) for c in (5, 6, 7)
    }


def test_no_axes_is_one_point():
    axes = parse_axes()
    assert len(axes) == 1
    assert list(axes.points()) == [{}]


@pytest.mark.parametrize(
    "grid, zips, needle",
    [
        ({"seed": 3}, None, "'seed' must map to a list"),
        ({"seed": []}, None, "'seed' has an empty list"),
        ({"seed": "abc"}, None, "'seed' must map to a list"),
        ({"a..b": [1]}, None, "'a..b' is not a dotted config key"),
        (None, {"data.name": ["a", "b"], "model.name": ["x"]}, "data.name has 2, model.name has 1"),
        ({"seed": [1]}, {"seed": [1]}, "'seed' is varied twice"),
        ({"pruning": [{}], "pruning.compression": [2]}, None, "overlap"),
        (["seed"], None, "'grid' must be a mapping"),
        (None, 5, "'zip' must be a mapping"),
    ],
)
def test_bad_axes_raise_naming_the_key(grid, zips, needle):
    with pytest.raises(SweepError, match=None) as info:
        parse_axes(grid, zips)
    assert needle in str(info.value)


@given(st.lists(st.integers(1, 4), min_size=0, max_size=4), st.integers(0, 3))
def test_point_count_is_the_product_and_points_are_distinct(sizes, zip_len):
    grid = {f"k{i}": list(range(n)) for i, n in enumerate(sizes)}
    zips = {"z.a": list(range(zip_len)), "z.b": list(range(zip_len))} if zip_len else None
    axes = parse_axes(grid, zips)
    points = list(axes.points())
    assert len(points) == len(axes) == math.prod(sizes) * (zip_len or 1)
    assert len({tuple(sorted(p.items())) for p in points}) == len(points)
    assert all(p.get("z.a") == p.get("z.b") for p in points)
