"""Masks without global side effects: opt-in holding, torch.compile, replaced parameters, tied
weights, NaN at pruned positions, LBFGS, keep_vars state dicts, the end-of-run check."""

from __future__ import annotations

import io

import pytest
import torch
from pruning_helpers import SmallConvNet, conv_batch, pruned_entries_zero, train
from torch import nn

import shrinkbench.pruning  # noqa: F401  (importing it must change nothing in torch)
from shrinkbench.errors import PruningError
from shrinkbench.pruning import attach_mask, hold, load_state_dict, prune


def step(model: nn.Module, opt: torch.optim.Optimizer, seed: int = 0, dtype=torch.float32) -> None:
    x, y = conv_batch(seed=seed)
    opt.zero_grad()
    nn.functional.cross_entropy(model(x.to(dtype)), y).backward()
    opt.step()


def test_importing_installs_no_global_optimizer_hook():
    from torch.optim.optimizer import _global_optimizer_post_hooks, _global_optimizer_pre_hooks

    assert not _global_optimizer_post_hooks and not _global_optimizer_pre_hooks


def test_without_hold_an_optimizer_is_plain_torch():
    model = SmallConvNet(0)
    prune(model, "global_magnitude", 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    step(model, opt)
    assert not pruned_entries_zero(model)  # the user did not ask: nothing re-applies the masks
    with hold(opt, model):
        assert pruned_entries_zero(model)  # holding starts from exact zeros
        step(model, opt, 1)
        assert pruned_entries_zero(model)
    step(model, opt, 2)  # released
    assert not pruned_entries_zero(model)


@pytest.mark.parametrize("masked", [False, True])
def test_torch_compile_of_an_optimizer_step(masked):
    model = nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    if masked:
        prune(model, "global_magnitude", 2)
        hold(opt, model)
    compiled = torch.compile(opt.step, backend="eager")
    for i in range(3):
        opt.zero_grad()
        model(torch.randn(4, 10, generator=torch.Generator().manual_seed(i))).sum().backward()
        compiled()
    if masked:
        assert torch.all(model[0].weight[model[0].weight_mask == 0] == 0)
        assert model[0].weight[model[0].weight_mask == 1].abs().min() > 0


@pytest.mark.parametrize("future", ["swap", "overwrite"])
def test_masks_hold_when_torch_replaces_parameters(future):
    setter = {"swap": torch.__future__.set_swap_module_params_on_conversion,
              "overwrite": torch.__future__.set_overwrite_module_params_on_conversion}[future]
    getter = {"swap": torch.__future__.get_swap_module_params_on_conversion,
              "overwrite": torch.__future__.get_overwrite_module_params_on_conversion}[future]
    before = getter()
    setter(True)
    try:
        model = SmallConvNet(0)
        prune(model, "global_magnitude", 4)
        model.double()
        assert model.fc1.weight.dtype == torch.float64 and model.fc1.weight_mask.dtype == torch.float64
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        with hold(opt, model):
            for i in range(3):
                step(model, opt, i, torch.float64)
        assert pruned_entries_zero(model)
    finally:
        setter(before)


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(12, 12)
        self.b = nn.Linear(12, 12)
        self.b.weight = self.a.weight
        self.head = nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.b(torch.relu(self.a(x))))


@pytest.mark.parametrize("strict", [True, False])
def test_loading_an_unpruned_checkpoint_keeps_pruned_entries_zero(strict):
    tied = Tied()
    dense = {k: v.clone() for k, v in tied.state_dict().items()}
    prune(tied, "global_magnitude", 2)
    zeros = int((tied.a.weight == 0).sum())
    assert zeros > 0
    if strict:
        dense["a.weight_mask"] = tied.a.weight_mask.clone()
    tied.load_state_dict(dense, strict=strict)  # b.weight (the same tensor) loads after a's hook
    assert int((tied.a.weight == 0).sum()) == zeros and tied.b.weight is tied.a.weight
    plain = SmallConvNet(0)
    unpruned = {k: v.clone() for k, v in plain.state_dict().items()}
    prune(plain, "global_magnitude", 4)
    plain.load_state_dict(unpruned, strict=False)
    assert pruned_entries_zero(plain)


def test_nan_and_inf_at_pruned_positions_become_exact_zeros():
    model = SmallConvNet(0)
    prune(model, "global_magnitude", 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    pruned = model.fc1.weight_mask == 0
    with torch.no_grad():
        model.fc1.weight[pruned] = float("nan")
        model.conv1.weight[model.conv1.weight_mask == 0] = float("inf")
    with hold(opt, model):
        step(model, opt)
    assert torch.all(model.fc1.weight[pruned] == 0) and torch.all(model.conv1.weight[model.conv1.weight_mask == 0] == 0)
    state = model.state_dict()
    state["fc1.weight"] = torch.full_like(state["fc1.weight"], float("nan"))
    model.load_state_dict(state)
    assert torch.all(model.fc1.weight[pruned] == 0) and torch.isnan(model.fc1.weight[~pruned]).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_every_float_type_gets_positive_zeros_where_a_step_wrote_nan(dtype):
    layer = nn.Linear(6, 4).to(dtype)
    mask = torch.tensor([[1, 0] * 3] * 4, dtype=dtype)
    attach_mask(layer, "weight", mask)
    opt = torch.optim.SGD(layer.parameters(), lr=1.0)
    with hold(opt, layer):
        layer.weight.grad = torch.full_like(layer.weight, float("nan"))
        layer.bias.grad = torch.zeros_like(layer.bias)
        opt.step()
    weight = layer.weight.detach()
    assert torch.all(weight[mask == 0] == 0)
    assert not torch.signbit(weight[mask == 0]).any()  # +0.0, not -0.0 from 0 * negative
    assert torch.isnan(weight[mask == 1]).all()  # kept entries are left as the step wrote them


def test_a_transposed_parameter_is_masked_at_the_right_positions():
    layer = nn.Linear(6, 4)
    layer.weight = nn.Parameter(torch.randn(6, 4).t())
    mask = (torch.rand(4, 6, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    attach_mask(layer, "weight", mask)
    assert not layer.weight.is_contiguous()
    assert torch.all(layer.weight[mask == 0] == 0) and torch.all(layer.weight[mask == 1] != 0)


def test_lbfgs_is_refused_with_one_line():
    model = nn.Linear(4, 2)
    attach_mask(model, "weight", torch.tensor([[1, 0, 1, 0], [0, 1, 1, 1]]))
    with pytest.raises(PruningError, match="^masks cannot be held by LBFGS: its closure runs"):
        hold(torch.optim.LBFGS(model.parameters()), model)


def test_keep_vars_state_dict_loads_with_weights_only():
    model = SmallConvNet(0)
    prune(model, "global_magnitude", 4)
    buffer = io.BytesIO()
    torch.save(model.state_dict(keep_vars=True), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    fresh = SmallConvNet(1)
    load_state_dict(fresh, state)
    assert pruned_entries_zero(fresh) and torch.equal(fresh.fc1.weight_mask, model.fc1.weight_mask)


def test_training_with_the_helper_and_two_holds_is_exact():
    model = SmallConvNet(0)
    prune(model, "layer_magnitude", 3)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    with hold(opt, model), hold(opt, model):
        train(model, opt, 2)
    assert pruned_entries_zero(model)
