"""N:M allocation: exact groups for Linear and Conv weights, ties, earlier masks, the name resolver,
and prune()'s compression check against what the pattern gives."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from shrinkbench.errors import CompressionError, PruningError, UnknownNameError
from shrinkbench.pruning import ALLOCATIONS, masked_parameters, nm_compression, prune
from shrinkbench.pruning.nm import nm_allocation, nm_keep, nm_masks, parse_nm


def groups_of(t: torch.Tensor, m: int) -> torch.Tensor:
    """Rows of M consecutive input entries (dim 1) at each other position, computed by hand."""
    if t.dim() == 2:
        return t.reshape(t.shape[0], -1, m).reshape(-1, m)
    return t.permute(0, 2, 3, 1).reshape(-1, m)  # (out, in, kh, kw): input channels last


def random_scores(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


class ConvMLP(nn.Module):
    """Conv(4->8) -> Conv(8->8) -> Linear(8*4*4 -> 16) -> Linear(16 -> 3), every input dim a
    multiple of 4."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.conv1 = nn.Conv2d(4, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3)
        self.fc1 = nn.Linear(8 * 4 * 4, 16)
        self.fc2 = nn.Linear(16, 3)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


# ---- names ----

def test_names_resolve_to_canonical_patterns() -> None:
    assert ALLOCATIONS.canonical("2:4") == "2:4"
    assert ALLOCATIONS.canonical(" 4 : 8 ") == "4:8"
    assert ALLOCATIONS.canonical("1:16") == "1:16"
    assert "2:4" not in ALLOCATIONS.names()  # resolved, not registered one by one
    assert parse_nm("global") is None and parse_nm("2:4") == (2, 4)
    scores = {"w": torch.tensor([[4.0, 3.0, 2.0, 1.0]])}
    assert ALLOCATIONS.get("1:4")(scores, {}, 1)["w"].tolist() == [[True, False, False, False]]


@pytest.mark.parametrize("name", ["4:2", "4:4", "0:4", "2:0"])
def test_invalid_patterns_refused(name: str) -> None:
    with pytest.raises(UnknownNameError, match="1 <= N < M"):
        ALLOCATIONS.canonical(name)


def test_unknown_name_lists_the_pattern() -> None:
    with pytest.raises(UnknownNameError, match=r"N:M \(e\.g\. 2:4\)"):
        ALLOCATIONS.canonical("two-four")
    with pytest.raises(PruningError, match=r"N:M \(e\.g\. 2:4\)"):
        prune(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)), "global_magnitude", 2,
              allocation="two-four")


def test_config_validation_accepts_patterns() -> None:
    from shrinkbench.experiment.validate import NAMES

    assert NAMES.get("allocation")("2:4") == "2:4"
    with pytest.raises(UnknownNameError):
        NAMES.get("allocation")("3:2")


# ---- exact groups ----

@pytest.mark.parametrize("n,m", [(2, 4), (4, 8), (1, 4), (3, 4), (5, 16)])
@pytest.mark.parametrize("shape", [(6, 32), (5, 16, 3, 3), (7, 48, 1, 2)])
def test_every_group_keeps_exactly_n_top_scores(n: int, m: int, shape: tuple[int, ...]) -> None:
    if shape[1] % m:
        pytest.skip("input dim not a multiple of M")
    score = random_scores(shape, seed=n * 100 + m)
    masks = nm_allocation({"w": score}, {}, nm_keep({"w": score}, {}, n, m), n=n, m=m)
    kept, values = groups_of(masks["w"], m), groups_of(score, m)
    assert kept.sum(1).eq(n).all()
    # within each group every kept score beats every dropped one
    low_kept = values.masked_fill(~kept, float("inf")).min(1).values
    high_dropped = values.masked_fill(kept, -float("inf")).max(1).values
    assert (low_kept > high_dropped).all()


def test_conv_groups_run_along_input_channels_at_each_position() -> None:
    # scores rise with the input channel only: every group keeps its last N channels
    score = torch.arange(8.0).view(1, 8, 1, 1).expand(3, 8, 2, 2).contiguous()
    mask = nm_masks({"w": score}, {}, 2, 4)["w"]
    expected = torch.tensor([False, False, True, True] * 2).view(1, 8, 1, 1).expand(3, 8, 2, 2)
    assert torch.equal(mask, expected)


def test_ties_go_to_the_lower_index() -> None:
    score = torch.ones(3, 8)
    mask = nm_masks({"w": score}, {}, 2, 4)["w"]
    assert mask.tolist() == [[True, True, False, False] * 2] * 3
    score = torch.tensor([[1.0, 5.0, 5.0, 5.0, 0.0, 0.0, 0.0, 0.0]])
    assert nm_masks({"w": score}, {}, 2, 4)["w"].tolist() == [[False, True, True, False,
                                                               True, True, False, False]]
    # random scores with many ties: still exactly N per group
    score = torch.randint(0, 3, (16, 64), generator=torch.Generator().manual_seed(1)).float()
    assert groups_of(nm_masks({"w": score}, {}, 2, 4)["w"], 4).sum(1).eq(2).all()


def test_negative_and_infinite_scores() -> None:
    score = torch.tensor([[-1.0, -float("inf"), -0.0, 0.0, float("inf"), -3.0, 2.0, -2.0]])
    mask = nm_masks({"w": score}, {}, 2, 4)["w"]
    assert mask.tolist() == [[False, False, True, True, True, False, True, False]]


def test_earlier_masks_count_as_pruned_in_their_group() -> None:
    gen = torch.Generator().manual_seed(3)
    score = torch.rand(8, 32, generator=gen)
    alive = torch.rand(8, 32, generator=gen) > 0.4
    keep = nm_keep({"w": score}, {"w": alive}, 2, 4)
    expected = int(groups_of(alive, 4).sum(1).clamp(max=2).sum())
    assert keep == expected
    mask = nm_allocation({"w": score}, {"w": alive}, keep, n=2, m=4)["w"]
    assert not bool((mask & ~alive).any())
    per_group = groups_of(mask, 4).sum(1)
    assert torch.equal(per_group, groups_of(alive, 4).sum(1).clamp(max=2))


def test_refusals_name_the_tensor_and_m() -> None:
    with pytest.raises(PruningError, match=r"'fc\.weight'.*multiple of 4"):
        nm_keep({"fc.weight": torch.ones(3, 10)}, {}, 2, 4)
    with pytest.raises(PruningError, match=r"'fc\.bias'.*include_bias=False"):
        nm_keep({"fc.bias": torch.ones(8)}, {}, 2, 4)
    with pytest.raises(PruningError, match="keeps exactly 4 entries"):
        nm_allocation({"w": torch.ones(2, 4)}, {}, 5, n=2, m=4)


# ---- prune() ----

def test_prune_linear_and_conv_with_2_4() -> None:
    model = ConvMLP()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    compression = nm_compression(model, "2:4")
    result = prune(model, "global_magnitude", compression, allocation="2:4")
    assert result.allocation == "2:4"
    total = sum(p.numel() for p in model.parameters())
    prunable = sum(result.sizes.values())
    assert result.nonzero == total - prunable // 2
    assert result.compression_achieved == compression
    masks = {name: mask.bool() for name, _, _, mask in masked_parameters(model)}
    assert set(masks) == {"conv1.weight", "conv2.weight", "fc1.weight"}  # fc2: the classifier
    for name, mask in masks.items():
        assert groups_of(mask, 4).sum(1).eq(2).all(), name
        expected = nm_masks({name: before[name].abs()}, {}, 2, 4)[name]
        assert torch.equal(mask, expected), name
        assert (model.get_parameter(name)[~mask] == 0).all()


def test_mismatched_compression_refused_in_one_line_that_gives_the_value() -> None:
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8), nn.ReLU(),
                          nn.Linear(8, 3))
    gives = nm_compression(model, "2:4")
    assert gives == 835 / (835 - 768 // 2)
    with pytest.raises(CompressionError) as err:
        prune(copy.deepcopy(model), "global_magnitude", 2, allocation="2:4")
    message = str(err.value)
    assert "\n" not in message
    assert "keeps 50% of 768 prunable weights (384)" in message and "compression 1.8514" in message
    assert repr(gives) in message
    # a value two elements off: refused too
    with pytest.raises(CompressionError):
        prune(copy.deepcopy(model), "global_magnitude", 1.84, allocation="2:4")
    # within one element of the pattern's count: accepted, and the pattern's count is kept
    near = 835 / (835 - 384 + 1)
    result = prune(copy.deepcopy(model), "global_magnitude", near, allocation="2:4")
    assert result.nonzero == 835 - 384


def test_earlier_masks_respected_by_prune() -> None:
    model = ConvMLP()
    prune(model, "global_magnitude", 1.3)
    before = {name: mask.bool().clone() for name, _, _, mask in masked_parameters(model)}
    compression = nm_compression(model, "2:4")
    result = prune(model, "layer_magnitude", compression, allocation="2:4")
    assert result.compression_achieved == pytest.approx(compression)
    for name, _, _, mask in masked_parameters(model):
        mask = mask.bool()
        assert not bool((mask & ~before[name]).any())
        alive = groups_of(before[name], 4).sum(1)
        assert torch.equal(groups_of(mask, 4).sum(1), alive.clamp(max=2))


def test_prune_refuses_what_cannot_be_grouped() -> None:
    odd = nn.Sequential(nn.Linear(6, 8), nn.Linear(8, 2))
    with pytest.raises(PruningError, match=r"'0\.weight'.*multiple of 4"):
        prune(odd, "global_magnitude", 2, allocation="2:4")
    with pytest.raises(PruningError, match=r"'0\.weight'.*multiple of 4"):
        nm_compression(odd, "2:4")
    assert nm_compression(odd, "2:4", ignore=["0"]) == 1.0  # nothing left to prune
    with pytest.raises(PruningError, match="include_bias=False"):
        prune(nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 2)), "global_magnitude", 2,
              allocation="2:4", include_bias=True)
    transposed = nn.Sequential(nn.ConvTranspose2d(8, 8, 3), nn.Flatten(), nn.Linear(800, 2))
    with pytest.raises(PruningError, match=r"'0\.weight' is a transposed convolution"):
        prune(transposed, "global_magnitude", 2, allocation="2:4")
    with pytest.raises(PruningError, match="not an N:M pattern"):
        nm_compression(odd, "global")


def test_layer_rates_refused_with_nm() -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 2))
    with pytest.raises(PruningError, match="layerwise"):
        prune(model, "global_magnitude", nm_compression(model, "2:4"), allocation="2:4",
              layer_rates={"0.weight": 0.5})
