"""Strategies and prune(): exact compression, scores by hand, torch parity, errors, registration."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.utils.prune as torch_prune
from hypothesis import given, settings
from hypothesis import strategies as st
from pruning_helpers import SmallConvNet, conv_batch
from torch import nn

import shrinkbench
from shrinkbench.errors import CompressionError, PruningError, UnknownNameError
from shrinkbench.pruning import (
    STRATEGIES,
    ScoreContext,
    densities,
    list_strategies,
    masked_parameters,
    prunable_parameters,
    prune,
    register_strategy,
    strategy_info,
)
from shrinkbench.pruning.scores import activation_score, gradient_score

BUILTIN = {
    "global_magnitude": "GlobalMagWeight",
    "layer_magnitude": "LayerMagWeight",
    "global_gradient": "GlobalMagGrad",
    "layer_gradient": "LayerMagGrad",
    "global_activation": "GlobalMagAct",
    "layer_activation": "LayerMagAct",
    "random": "RandomPruning",
}
X, Y = conv_batch()


def counted_nonzero(model: nn.Module) -> int:
    """All parameters minus the entries that masks remove (the paper's definition)."""
    total = sum(p.numel() for p in model.parameters())
    return total - sum(int((m == 0).sum()) for *_, m in masked_parameters(model))


def test_builtin_names_and_aliases_are_listed() -> None:
    assert set(BUILTIN) <= set(list_strategies())
    info = {name: (aliases, score, allocation) for name, aliases, score, allocation in
            strategy_info()}
    for name, alias in BUILTIN.items():
        assert alias in info[name][0]
        assert STRATEGIES.get(alias).name == name
        assert info[name][2] == ("layerwise" if name.startswith("layer") else "global")
    assert info["global_gradient"][1] == "gradient" and info["random"][1] == "random"
    with pytest.raises(UnknownNameError, match="GlobalMagWeight"):
        STRATEGIES.get("GlobalMagWeigth")


@pytest.mark.parametrize("strategy", sorted(BUILTIN))
@pytest.mark.parametrize("compression", [1, 1.25, 2, 3, 4.7, 8, 12.5, 20])
def test_compression_is_met_exactly(strategy: str, compression: float) -> None:
    model = SmallConvNet(0)
    result = prune(model, BUILTIN[strategy], compression, inputs=X, targets=Y)
    total = sum(p.numel() for p in model.parameters())
    assert result.strategy == strategy
    assert result.total == total
    assert result.nonzero == math.floor(total / compression) == counted_nonzero(model)
    assert result.compression_achieved == pytest.approx(total / result.nonzero)
    assert result.kept == {n: int(m.count_nonzero()) for n, _, _, m in masked_parameters(model)}
    assert result.sizes == {n: p.numel() for n, p in prunable_parameters(model).items()}


@settings(max_examples=25, deadline=None)
@given(
    strategy=st.sampled_from(sorted(BUILTIN)),
    compression=st.floats(1, 15),
    include_bias=st.booleans(),
    include_classifier=st.booleans(),
)
def test_compression_exact_with_overrides(
    strategy: str, compression: float, include_bias: bool, include_classifier: bool
) -> None:
    model = SmallConvNet(1)
    result = shrinkbench.prune(
        model, strategy, compression, inputs=X, targets=Y, include_bias=include_bias,
        include_classifier=include_classifier,
    )
    assert counted_nonzero(model) == result.nonzero == math.floor(result.total / compression)
    assert ("fc2.weight" in result.kept) == include_classifier
    assert ("conv1.bias" in result.kept) == include_bias


@settings(max_examples=25, deadline=None)
@given(
    first=st.sampled_from(sorted(BUILTIN)),
    second=st.sampled_from(sorted(BUILTIN)),
    c1=st.floats(1, 8),
    extra=st.floats(1, 2.5),
)
def test_pruning_twice_only_removes_more(first: str, second: str, c1: float, extra: float) -> None:
    model = SmallConvNet(2)
    prune(model, first, c1, inputs=X, targets=Y, seed=1)
    before = {n: m.clone() for n, _, _, m in masked_parameters(model)}
    c2 = c1 * extra
    result = prune(model, second, c2, inputs=X, targets=Y, seed=2)
    assert result.nonzero == math.floor(result.total / c2) == counted_nonzero(model)
    for name, _, _, mask in masked_parameters(model):
        assert bool((mask <= before[name]).all()), name


def test_lower_compression_than_current_raises() -> None:
    model = SmallConvNet(0)
    prune(model, "global_magnitude", 8)
    with pytest.raises(CompressionError, match="current compression"):
        prune(model, "global_magnitude", 4)


@pytest.mark.parametrize("bad", [0.5, 0, -2, float("nan"), float("inf"), "8", True])
def test_invalid_compression_raises(bad: object) -> None:
    with pytest.raises(CompressionError, match="compression must be"):
        prune(SmallConvNet(0), "global_magnitude", bad)  # type: ignore[arg-type]


def test_unreachable_compression_raises() -> None:
    model = SmallConvNet(0)
    # 181 unprunable parameters (biases, BN, classifier) of 3757: total/c must stay >= 181.
    prune(copy.deepcopy(model), "global_magnitude", 3757 / 181)
    with pytest.raises(CompressionError, match=r"unprunable parameters alone \(181\)"):
        prune(model, "global_magnitude", 21)
    # Counting more parameters as prunable makes it reachable.
    prune(model, "global_magnitude", 21, include_bias=True, include_classifier=True)


def _fill_distinct(model: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))


@pytest.mark.parametrize("compression", [1.5, 4, 10])
def test_global_magnitude_matches_torch_global_unstructured(compression: float) -> None:
    ours = SmallConvNet(0)
    _fill_distinct(ours, 5)
    theirs = copy.deepcopy(ours)
    result = prune(ours, "GlobalMagWeight", compression)
    layers = [theirs.conv1, theirs.conv2, theirs.fc1]
    pruned = sum(result.sizes.values()) - sum(result.kept.values())
    torch_prune.global_unstructured(
        [(m, "weight") for m in layers], torch_prune.L1Unstructured, amount=pruned
    )
    for name in ("conv1", "conv2", "fc1"):
        assert torch.equal(getattr(ours, name).weight_mask, getattr(theirs, name).weight_mask)


@pytest.mark.parametrize("compression", [1.5, 4, 10])
def test_layer_magnitude_matches_torch_l1_unstructured(compression: float) -> None:
    ours = SmallConvNet(0)
    _fill_distinct(ours, 6)
    theirs = copy.deepcopy(ours)
    result = prune(ours, "LayerMagWeight", compression)
    fractions = {n: result.kept[n] / result.sizes[n] for n in result.kept}
    assert max(fractions.values()) - min(fractions.values()) < 1 / 200
    for name in ("conv1", "conv2", "fc1"):
        layer = getattr(theirs, name)
        amount = result.sizes[f"{name}.weight"] - result.kept[f"{name}.weight"]
        torch_prune.l1_unstructured(layer, "weight", amount=amount)
        assert torch.equal(getattr(ours, name).weight_mask, layer.weight_mask)


def test_ties_are_kept_in_flat_index_order() -> None:
    model = nn.Sequential(nn.Linear(4, 3, bias=False), nn.Linear(3, 2, bias=False))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.5)
    result = prune(model, "global_magnitude", 2, include_classifier=True)  # keep 18 // 2
    assert result.kept == {"0.weight": 9, "1.weight": 0}
    assert model[0].weight_mask.flatten().tolist() == [1.0] * 9 + [0.0] * 3


def tiny_linear() -> nn.Linear:
    lin = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, -2.0, 3.0], [-0.5, 0.25, 4.0]]))
    return lin


def test_gradient_scores_by_hand_and_grads_restored() -> None:
    lin = tiny_linear()
    x1, y1 = torch.tensor([[1.0, 2.0, -1.0]]), torch.tensor([[1.0, -1.0]])
    x2, y2 = torch.tensor([[0.0, 1.0, 1.0], [2.0, 0.0, 0.0]]), torch.tensor([[2.0, 0.0], [1, 1]])
    sentinel = torch.full((2, 3), 7.0)
    lin.weight.grad = sentinel.clone()

    def loss_fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (out * y).sum()  # dL/dW = y^T x

    ctx = ScoreContext(lin, "global_gradient", [(x1, y1), (x2, y2)], loss_fn)
    scores = gradient_score({"weight": lin.weight}, ctx)
    w = lin.weight.detach()
    expected = (w * (y1.T @ x1)).abs() + (w * (y2.T @ x2)).abs()
    assert torch.allclose(scores["weight"], expected)
    assert torch.equal(lin.weight.grad, sentinel)
    # End to end: the kept entries are the highest hand-computed scores.
    result = prune(lin, "global_gradient", 2, batches=[(x1, y1), (x2, y2)], loss_fn=loss_fn,
                   include_classifier=True)
    assert result.kept == {"weight": 3}
    top = torch.zeros(6)
    top[expected.flatten().topk(3).indices] = 1
    assert torch.equal(lin.weight_mask.flatten(), top)


def test_gradient_scores_restore_requires_grad() -> None:
    model = SmallConvNet(0)
    model.fc1.weight.requires_grad_(False)
    prune(model, "global_gradient", 4, inputs=X, targets=Y)
    assert not model.fc1.weight.requires_grad and model.fc1.weight.grad is None
    assert all(p.grad is None for p in model.parameters())


def test_activation_scores_linear_by_hand() -> None:
    lin = tiny_linear()
    x1 = torch.tensor([[1.0, -2.0, 0.0], [3.0, 2.0, -4.0]])
    x2 = torch.tensor([[-2.0, 0.0, 2.0]])
    ctx = ScoreContext(lin, "global_activation", [(x1, None), (x2, None)])
    scores = activation_score({"weight": lin.weight}, ctx)
    mean_abs = torch.tensor([6.0 / 3, 4.0 / 3, 6.0 / 3])
    assert torch.allclose(scores["weight"], lin.weight.detach().abs() * mean_abs)


@pytest.mark.parametrize(
    "conv",
    [nn.Conv2d(4, 6, 3, groups=2), nn.Conv1d(4, 4, 2, groups=4), nn.ConvTranspose2d(4, 6, 2)],
)
def test_activation_scores_conv_by_hand(conv: nn.Module) -> None:
    dims = conv.weight.dim() - 2
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, *([5] * dims), generator=gen)
    scores = activation_score({"weight": conv.weight}, ScoreContext(conv, "t", [(x, None)]))
    channel_mean = [float(x[:, c].abs().mean()) for c in range(4)]
    w = conv.weight.detach()
    expected = torch.empty_like(w)
    for a in range(w.shape[0]):
        for b in range(w.shape[1]):
            if conv.transposed:
                channel = a
            else:
                per_group_out = conv.out_channels // conv.groups
                channel = (a // per_group_out) * (conv.in_channels // conv.groups) + b
            expected[a, b] = w[a, b].abs() * channel_mean[channel]
    assert torch.allclose(scores["weight"], expected, rtol=1e-5)


def test_activation_scores_reject_custom_modules() -> None:
    class Custom(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(3))

    model = Custom()
    with pytest.raises(PruningError, match="belongs to Custom"):
        activation_score({"w": model.w}, ScoreContext(model, "t", [(torch.ones(3), None)]))


@pytest.mark.parametrize("strategy", ["global_gradient", "LayerMagGrad", "GlobalMagAct"])
def test_data_dependent_strategies_without_data_raise(strategy: str) -> None:
    with pytest.raises(PruningError, match="needs data: pass inputs="):
        prune(SmallConvNet(0), strategy, 4)


def test_gradient_without_targets_raises() -> None:
    with pytest.raises(PruningError, match="needs targets"):
        prune(SmallConvNet(0), "global_gradient", 4, inputs=X)


def test_random_is_seeded() -> None:
    masks = []
    for seed in (3, 3, 4):
        model = SmallConvNet(0)
        prune(model, "RandomPruning", 4, seed=seed)
        masks.append(torch.cat([m.flatten() for *_, m in masked_parameters(model)]))
    assert torch.equal(masks[0], masks[1])
    assert not torch.equal(masks[0], masks[2])


def smallest_first(params: dict, ctx: ScoreContext) -> dict:
    """Keeps the smallest weights (a deliberately odd strategy)."""
    return {name: -p.detach().abs() for name, p in params.items()}


register_strategy("test_smallest_first", smallest_first, "layerwise", aliases=["TestSmallest"])


@register_strategy("test_first_entries")
def first_entries(params: dict, ctx: ScoreContext) -> dict:
    """Keeps the lowest flat indices."""
    return {name: -torch.arange(p.numel(), dtype=torch.float32).view(p.shape)
            for name, p in params.items()}


def test_user_registered_strategy_end_to_end() -> None:
    assert ("test_smallest_first", ("TestSmallest",), "smallest_first", "layerwise") in (
        strategy_info()
    )
    model = SmallConvNet(0)
    weights = {n: p.detach().abs().clone() for n, p in prunable_parameters(model).items()}
    result = prune(model, "TestSmallest", 4)
    assert result.strategy == "test_smallest_first"
    for name, _, _, mask in masked_parameters(model):
        kept, dropped = weights[name][mask == 1], weights[name][mask == 0]
        assert kept.max() <= dropped.min()
    model = SmallConvNet(0)
    result = prune(model, "test_first_entries", 2)
    assert densities(model) == {"conv1.weight": 1.0, "conv2.weight": 1.0,
                                "fc1.weight": result.kept["fc1.weight"] / 3072}
    assert model.fc1.weight_mask.flatten()[: result.kept["fc1.weight"]].all()


def test_bad_score_function_output_raises() -> None:
    register_strategy("test_broken", lambda params, ctx: {})
    with pytest.raises(PruningError, match="gave nothing as the score of 'conv1.weight'"):
        prune(SmallConvNet(0), "test_broken", 2)


def test_no_prunable_parameters_raises() -> None:
    with pytest.raises(PruningError, match="include_classifier=True"):
        prune(nn.Sequential(nn.Linear(3, 2)), "global_magnitude", 2)


def test_inputs_and_batches_together_raise() -> None:
    with pytest.raises(PruningError, match="not both"):
        prune(SmallConvNet(0), "global_gradient", 2, inputs=X, targets=Y, batches=[(X, Y)])


@pytest.mark.parametrize("strategy", ["global_gradient", "global_activation"])
def test_scoring_leaves_batchnorm_statistics_alone(strategy: str) -> None:
    model = SmallConvNet(0).train()
    before = {k: v.clone() for k, v in model.bn1.state_dict().items()}
    prune(model, strategy, 4, inputs=X, targets=Y)
    assert model.training
    assert all(torch.equal(model.bn1.state_dict()[k], v) for k, v in before.items())


def test_prune_result_str_and_model_mode_kept() -> None:
    model = SmallConvNet(0).eval()
    result = prune(model, "global_gradient", 4, inputs=X, targets=Y)
    assert not model.training
    assert str(result).startswith("global_gradient: compression 4")
