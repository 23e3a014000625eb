"""Prunable-parameter selection and the exact top-k allocation."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pruning_helpers import SmallConvNet
from torch import nn

from shrinkbench.errors import PruningError
from shrinkbench.pruning import prunable_parameters
from shrinkbench.pruning.allocation import (
    global_allocation,
    layer_quotas,
    layerwise_allocation,
    score_keys,
    select_top,
)


def reference_top(values: list[float], k: int) -> list[bool]:
    """The k largest values, ties kept in index order, by a full sort."""
    order = sorted(range(len(values)), key=lambda i: (-values[i], i))
    keep = [False] * len(values)
    for i in order[:k]:
        keep[i] = True
    return keep


float32s = st.floats(width=32, allow_nan=False)
tie_prone = st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.5, float("inf"), float("-inf"), 1e-30])


@settings(max_examples=150, deadline=None)
@given(
    chunks=st.lists(st.lists(st.one_of(float32s, tie_prone), min_size=0, max_size=30),
                    min_size=1, max_size=4),
    fraction=st.floats(0, 1),
)
def test_select_top_matches_a_stable_full_sort(chunks: list[list[float]], fraction: float) -> None:
    flat = [v for chunk in chunks for v in chunk]
    k = round(fraction * len(flat))
    keys = [score_keys("t", torch.tensor(c, dtype=torch.float32), None) for c in chunks]
    got = torch.cat(select_top(keys, k)).tolist()
    assert sum(got) == k
    assert got == reference_top(flat, k)


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.sampled_from([0.0, 0.5, 1.0, 3.0]), min_size=2, max_size=40),
    dead_bits=st.lists(st.booleans(), min_size=40, max_size=40),
    fraction=st.floats(0, 1),
)
def test_dead_entries_are_never_kept(
    values: list[float], dead_bits: list[bool], fraction: float
) -> None:
    scores = torch.tensor(values)
    alive = ~torch.tensor(dead_bits[: len(values)])
    k = round(fraction * int(alive.sum()))
    keep = select_top([score_keys("t", scores, alive)], k)[0]
    assert int(keep.sum()) == k
    assert not bool((keep & ~alive).any())
    alive_values = [v if a else float("-inf") for v, a in zip(values, alive.tolist())]
    assert keep.tolist() == reference_top(alive_values, k)


def test_large_tensor_selection_is_exact_with_many_ties() -> None:
    gen = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 50, (200_000,), generator=gen).float()
    k = 123_457
    keep = select_top([score_keys("t", scores, None)], k)[0]
    assert int(keep.sum()) == k
    order = torch.sort(-scores, stable=True).indices[:k]
    expected = torch.zeros_like(keep)
    expected[order] = True
    assert torch.equal(keep, expected)


def test_nan_scores_raise() -> None:
    with pytest.raises(PruningError, match="'layer.weight' contain NaN"):
        score_keys("layer.weight", torch.tensor([1.0, float("nan")]), None)


@settings(max_examples=80, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 500), min_size=1, max_size=6),
    cap_fracs=st.lists(st.floats(0, 1), min_size=6, max_size=6),
    fraction=st.floats(0, 1),
)
def test_layer_quotas_sum_exactly_and_respect_caps(
    sizes: list[int], cap_fracs: list[float], fraction: float
) -> None:
    caps = [round(s * f) for s, f in zip(sizes, cap_fracs)]
    keep = round(fraction * sum(caps))
    quotas = layer_quotas(sizes, caps, keep)
    assert sum(quotas) == keep
    assert all(0 <= q <= c for q, c in zip(quotas, caps))
    if caps == sizes:  # no earlier pruning: the same fraction everywhere, to one element
        assert all(abs(q - keep * s / sum(sizes)) < 1 for q, s in zip(quotas, sizes))


def test_global_and_layerwise_allocations_reshape_and_count() -> None:
    scores = {"a": torch.arange(12.0).view(3, 4), "b": torch.arange(6.0).view(2, 3) * 10}
    alive = {"a": None, "b": None}
    g = global_allocation(scores, alive, 5)
    assert g["a"].shape == (3, 4) and g["b"].shape == (2, 3)
    # The 5 largest are 50, 40, 30, 20 in b and 11 in a.
    assert g["a"].flatten().tolist() == [False] * 11 + [True]
    assert g["b"].flatten().tolist() == [False, False, True, True, True, True]
    lw = layerwise_allocation(scores, alive, 9)
    assert int(lw["a"].sum()) == 6 and int(lw["b"].sum()) == 3
    assert lw["a"].flatten().tolist() == [False] * 6 + [True] * 6


def test_default_prunable_parameters() -> None:
    model = SmallConvNet()
    assert list(prunable_parameters(model)) == ["conv1.weight", "conv2.weight", "fc1.weight"]
    both = prunable_parameters(model, include_classifier=True, include_bias=True)
    assert list(both) == [
        "conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias",
        "fc2.weight", "fc2.bias",
    ]
    assert list(prunable_parameters(model, ignore=["conv*"])) == ["fc1.weight"]
    assert list(prunable_parameters(model, ignore=["conv2.weight"])) == [
        "conv1.weight", "fc1.weight"
    ]


def test_classifier_attribute_overrides_last_linear() -> None:
    model = SmallConvNet()
    model.shrinkbench_classifier = "fc1"
    assert list(prunable_parameters(model)) == ["conv1.weight", "conv2.weight", "fc2.weight"]
    model.shrinkbench_classifier = "head"
    with pytest.raises(PruningError, match="shrinkbench_classifier='head'"):
        prunable_parameters(model)


def test_unknown_ignore_entry_raises() -> None:
    with pytest.raises(PruningError, match="ignore entry 'fc9'"):
        prunable_parameters(SmallConvNet(), ignore=["fc9"])


def test_shared_parameters_are_listed_once() -> None:
    a = nn.Linear(3, 3)
    b = nn.Linear(3, 3)
    b.weight = a.weight
    model = nn.Sequential(a, b, nn.Linear(3, 2))
    assert list(prunable_parameters(model)) == ["0.weight"]
