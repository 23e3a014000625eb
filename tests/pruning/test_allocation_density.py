"""Allocations by value: ERK densities, uniform, relative per-tensor rates, and prune()'s override."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from pruning_helpers import SmallConvNet, conv_batch
from torch import nn

from shrinkbench.errors import PruningError
from shrinkbench.pruning import ALLOCATIONS, Strategy, masked_parameters, prune
from shrinkbench.pruning.allocation import (
    erk_allocation,
    layerwise_allocation,
    rated_layerwise_allocation,
)

X, Y = conv_batch()


def distinct_scores(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random distinct scores per tensor (no ties)."""
    gen = torch.Generator().manual_seed(seed)
    return {n: torch.rand(s, generator=gen, dtype=torch.float64).float() for n, s in shapes.items()}


def counts(masks: dict[str, torch.Tensor]) -> dict[str, int]:
    return {n: int(m.count_nonzero()) for n, m in masks.items()}


def assert_top_within(scores: dict[str, torch.Tensor], masks: dict[str, torch.Tensor],
                      alive: dict[str, torch.Tensor | None] | None = None) -> None:
    """In each tensor, every kept (alive) entry scores above every dropped alive entry."""
    for name, mask in masks.items():
        live = torch.ones_like(mask) if not alive or alive.get(name) is None else alive[name].bool()
        kept, dropped = scores[name][mask], scores[name][live & ~mask]
        assert not bool((mask & ~live).any()), name
        if kept.numel() and dropped.numel():
            assert float(kept.min()) > float(dropped.max()), name


# ---- relative rates (Frankle & Carbin: the output layer pruned at half the rate) ----

def test_rated_sizes_1000_100_rates_1_and_half() -> None:
    scores = distinct_scores({"a": (1000,), "b": (100,)})
    masks = rated_layerwise_allocation(scores, {}, 550, {"b": 0.5})
    # remove 550 = f * (1 * 1000 + 0.5 * 100) -> f = 550/1050: a loses 523.81, b 26.19;
    # floors 523 + 26 = 549, the one left goes to the larger remainder (a): a 524, b 26.
    assert counts(masks) == {"a": 1000 - 524, "b": 100 - 26}
    assert_top_within(scores, masks)


def test_rated_with_masks_and_a_zero_rate() -> None:
    scores = distinct_scores({"a": (1000,), "b": (100,), "c": (10,)}, seed=1)
    alive = {"a": torch.arange(1000) % 5 != 0, "b": None, "c": None}  # a: 800 alive
    masks = rated_layerwise_allocation(scores, alive, 600, {"b": 0.5, "c": 0})
    # remove 910 - 600 = 310 in proportion to 1*800, 0.5*100, 0*10 = 800, 50, 0 (pool 850):
    # a 291.76, b 18.24 -> 291 + 18 = 309, the last to a (remainder .76): a 292, b 18, c 0.
    assert counts(masks) == {"a": 800 - 292, "b": 100 - 18, "c": 10}
    assert_top_within(scores, masks, alive)


def test_rated_caps_a_tensor_at_what_it_has() -> None:
    scores = distinct_scores({"a": (1000,), "b": (100,)}, seed=2)
    masks = rated_layerwise_allocation(scores, {}, 900, {"b": 100.0})
    # remove 200: b's share 200 * 10000/11000 = 181.8 exceeds its 100: b loses all, a the other 100
    assert counts(masks) == {"a": 900, "b": 0}


def test_rated_without_rates_is_uniform_in_what_is_alive() -> None:
    scores = distinct_scores({"a": (300,), "b": (100,)}, seed=3)
    masks = rated_layerwise_allocation(scores, {}, 200, {})
    assert counts(masks) == {"a": 150, "b": 50}


@pytest.mark.parametrize("rates, match", [
    ({"b": -0.5}, "finite number >= 0"),
    ({"b": float("nan")}, "finite number >= 0"),
    ({"b": float("inf")}, "finite number >= 0"),
    ({"b": True}, "must be a number"),
    ({"b": "1"}, "must be a number"),
    ({"z": 1.0}, "'z', which is not a pruned tensor"),
    ({"a": 0, "b": 0}, "fewer than the 550 that must go"),
])
def test_rated_refusals(rates: dict, match: str) -> None:
    scores = distinct_scores({"a": (1000,), "b": (100,)})
    with pytest.raises(PruningError, match=match):
        rated_layerwise_allocation(scores, {}, 550, rates)


# ---- ERK (Evci et al. 2020) ----

def erk_counts_direct(shapes: dict[str, tuple[int, ...]], alive: dict[str, int],
                      keep: int) -> dict[str, float]:
    """Kept entries per tensor by the RigL formula: density eps * (sum of dims)/(prod of dims),
    capped at the alive fraction; eps re-solved after each cap (real numbers, no rounding)."""
    capped: dict[str, float] = {}
    while True:
        free = [n for n in shapes if n not in capped]
        if not free:
            return capped
        budget = keep - sum(capped.values())
        raw = {n: sum(shapes[n]) / math.prod(shapes[n]) for n in free}
        eps = budget / sum(raw[n] * math.prod(shapes[n]) for n in free)
        over = [n for n in free if eps * raw[n] * math.prod(shapes[n]) > alive[n]]
        if not over:
            return {**capped, **{n: eps * raw[n] * math.prod(shapes[n]) for n in free}}
        for n in over:
            capped[n] = alive[n]


SHAPES = {
    "conv1.weight": (16, 3, 3, 3),
    "conv2.weight": (32, 16, 3, 3),
    "conv3.weight": (64, 32, 3, 3),
    "fc.weight": (10, 64),
    "fc.bias": (10,),
}


@pytest.mark.parametrize("keep", [1, 500, 2000, 9000, 20000, 29000])
def test_erk_counts_match_the_formula(keep: int) -> None:
    scores = distinct_scores(SHAPES, seed=4)
    sizes = {n: math.prod(s) for n, s in SHAPES.items()}
    keep = min(keep, sum(sizes.values()))
    masks = erk_allocation(scores, {}, keep)
    got = counts(masks)
    want = erk_counts_direct(SHAPES, sizes, keep)
    assert sum(got.values()) == keep
    for name in SHAPES:
        assert math.floor(want[name] + 1e-9) <= got[name] <= math.ceil(want[name] - 1e-9), name
    assert_top_within(scores, masks)


def test_erk_exact_values_with_caps() -> None:
    shapes = {"a": (30, 20), "b": (10, 30), "c": (4, 2, 3, 3)}  # sums of dims 50, 40, 12
    scores = distinct_scores(shapes, seed=5)
    # eps = 2 per unit of summed dims: 100, 80, 24 (no cap reached)
    assert counts(erk_allocation(scores, {}, 204)) == {"a": 100, "b": 80, "c": 24}
    # eps = 8 would give 400, 320, 96: b (300 entries) and c (72) are dense, a takes the rest
    assert counts(erk_allocation(scores, {}, 772)) == {"a": 400, "b": 300, "c": 72}
    # with a mask, the cap is what is alive: b has 150 alive
    alive = {"b": torch.arange(300).view(10, 30) % 2 == 0}
    masks = erk_allocation(scores, alive, 622)
    assert counts(masks) == {"a": 400, "b": 150, "c": 72}
    assert_top_within(scores, masks, alive)


def test_uniform_is_layerwise() -> None:
    assert ALLOCATIONS.canonical("uniform") == "layerwise"
    assert ALLOCATIONS.get("uniform") is layerwise_allocation
    assert "erk" in ALLOCATIONS.names()


# ---- prune(): allocation= and layer_rates= ----

def test_allocation_override_equals_the_layerwise_strategy() -> None:
    a, b = SmallConvNet(0), SmallConvNet(0)
    ra = prune(a, "global_magnitude", 5, allocation="uniform")
    rb = prune(b, "layer_magnitude", 5)
    assert ra.kept == rb.kept and ra.allocation == rb.allocation == "layerwise"
    for (_, _, _, ma), (_, _, _, mb) in zip(masked_parameters(a), masked_parameters(b)):
        assert torch.equal(ma, mb)


@pytest.mark.parametrize("compression", [2, 7.5, 16])
def test_erk_through_prune_is_exact(compression: float) -> None:
    model = SmallConvNet(0)
    result = prune(model, "global_magnitude", compression, allocation="erk")
    assert result.nonzero == math.floor(result.total / compression)
    shapes = {n: tuple(m.shape) for n, _, _, m in masked_parameters(model)}
    want = erk_counts_direct(shapes, {n: math.prod(s) for n, s in shapes.items()},
                             sum(result.kept.values()))
    for name, kept in result.kept.items():
        assert abs(kept - want[name]) < 1, name


def mlp() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("fc1", nn.Linear(40, 20))
    model.add_module("relu", nn.ReLU())
    model.add_module("fc2", nn.Linear(20, 10))
    model.add_module("relu2", nn.ReLU())
    model.add_module("fc3", nn.Linear(10, 5))
    return model


def test_layer_rates_classifier_at_half_rate_twice() -> None:
    model = mlp()  # weights 800, 200, 50; biases 35; 1085 in all
    rates = {"fc3.weight": 0.5}
    result = prune(model, "layer_magnitude", 2, include_classifier=True, layer_rates=rates)
    # keep floor(1085/2) - 35 = 507, remove 543 in proportion to 800, 200, 25 (pool 1025):
    # 423.80, 105.95, 13.24 -> 423 + 105 + 13 = 541, the two left to fc2 (.95) and fc1 (.80)
    assert result.kept == {"fc1.weight": 800 - 424, "fc2.weight": 200 - 106, "fc3.weight": 50 - 13}
    result = prune(model, "layer_magnitude", 4, include_classifier=True, layer_rates=rates)
    # keep floor(1085/4) - 35 = 236 of 376 + 94 + 37 alive: remove 271 in proportion to
    # 376, 94, 18.5 (pool 488.5): 208.59, 52.15, 10.26 -> 208 + 52 + 10 = 270, one more to fc1
    assert result.kept == {"fc1.weight": 376 - 209, "fc2.weight": 94 - 52, "fc3.weight": 37 - 10}
    assert result.nonzero == 271


def test_prune_refusals() -> None:
    model = SmallConvNet(0)
    with pytest.raises(PruningError, match="unknown allocation 'ekr'; choose from: erk, global"):
        prune(model, "global_magnitude", 4, allocation="ekr")
    with pytest.raises(PruningError, match="allocation must be a name"):
        prune(model, "global_magnitude", 4, allocation=3)  # type: ignore[arg-type]
    with pytest.raises(PruningError, match="allocation applies to single weights"):
        prune(model, "layer_channel_l1", 2, inputs=X, allocation="erk")
    with pytest.raises(PruningError, match="layer_rates applies to single weights"):
        prune(model, "layer_channel_l1", 2, inputs=X, layer_rates={})
    with pytest.raises(PruningError, match="needs the layerwise allocation"):
        prune(model, "global_magnitude", 4, layer_rates={"fc1.weight": 0.5})
    with pytest.raises(PruningError, match="needs the layerwise allocation"):
        prune(model, "layer_magnitude", 4, allocation="erk", layer_rates={"fc1.weight": 0.5})
    with pytest.raises(PruningError, match="'fc2.weight', which is not a pruned parameter "
                                           r"\(the classifier is pruned with include_classifier"):
        prune(model, "layer_magnitude", 4, layer_rates={"fc2.weight": 0.5})
    with pytest.raises(PruningError, match="finite number >= 0"):
        prune(model, "layer_magnitude", 4, layer_rates={"fc1.weight": -1})
    assert not list(masked_parameters(model))  # nothing was pruned by a refused request


def test_score_context_carries_keep_alive_and_allocation() -> None:
    seen: dict = {}

    def probe(params, ctx):
        scores = {n: torch.rand(p.shape, generator=torch.Generator().manual_seed(0))
                  for n, p in params.items()}
        chosen = ctx.allocate(scores, 100)
        seen.update(keep=ctx.keep, alive={n: a.clone() for n, a in ctx.alive.items()},
                    chosen=counts(chosen), same=all(torch.equal(chosen[n], m) for n, m in
                                                    erk_allocation(scores, ctx.alive, 100).items()))
        return {n: p.detach().abs() for n, p in params.items()}

    model = SmallConvNet(0)
    prune(model, "global_magnitude", 2)
    masks = {n: m.clone() for n, _, _, m in masked_parameters(model)}
    result = prune(model, Strategy("probe", probe), 4, allocation="erk")
    assert seen["keep"] == sum(result.kept.values())
    assert set(seen["alive"]) == set(masks)
    assert all(torch.equal(seen["alive"][n], masks[n]) for n in masks)
    assert sum(seen["chosen"].values()) == 100 and seen["same"]


def test_override_does_not_change_scores_only_shares() -> None:
    model = SmallConvNet(1)
    ref = copy.deepcopy(model)
    prune(model, "global_magnitude", 6, allocation="global")
    prune(ref, "global_magnitude", 6)
    for (_, _, _, ma), (_, _, _, mb) in zip(masked_parameters(model), masked_parameters(ref)):
        assert torch.equal(ma, mb)


def test_small_selection_by_sort_equals_the_histogram_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from shrinkbench.pruning import allocation

    gen = torch.Generator().manual_seed(9)
    for _ in range(100):
        sizes = torch.randint(0, 200, (3,), generator=gen).tolist()
        scores = [torch.randint(-4, 4, (n,), generator=gen).float() / 2 for n in sizes]  # ties
        scores[0][:3] = -math.inf
        alive = [torch.rand(n, generator=gen) > 0.3 for n in sizes]
        keys = [allocation.score_keys("t", s, a) for s, a in zip(scores, alive)]
        k = int(torch.randint(0, sum(sizes) + 1, (1,), generator=gen))
        by_sort = allocation.select_top(keys, k)
        monkeypatch.setattr(allocation, "_SMALL", -1)
        by_histogram = allocation.select_top(keys, k)
        monkeypatch.undo()
        assert all(torch.equal(a, b) for a, b in zip(by_sort, by_histogram))
        assert sum(int(m.sum()) for m in by_sort) == min(k, sum(sizes))
