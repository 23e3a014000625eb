"""Masks: attach, hold through optimizers, state_dict, deepcopy, pickling, removal."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pruning_helpers import SmallConvNet, conv_batch, pruned_entries_zero, train
from torch import nn

from shrinkbench.errors import PruningError
from shrinkbench.pruning import (
    apply_masks,
    attach_mask,
    densities,
    get_mask,
    hold,
    load_state_dict,
    masked_parameters,
    prune,
    remove_masks,
)

OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.05),
    "sgd_momentum_nesterov_wd": lambda p: torch.optim.SGD(
        p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2
    ),
    "sgd_foreach_off": lambda p: torch.optim.SGD(
        p, lr=0.05, momentum=0.9, weight_decay=1e-2, foreach=False
    ),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-3),
    "adam_amsgrad": lambda p: torch.optim.Adam(p, lr=1e-2, amsgrad=True),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=1e-2, momentum=0.5),
}


def random_mask(shape: torch.Size, seed: int, density: float = 0.5) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=gen) < density).float()


def test_attach_zeroes_entries_and_keeps_buffer_contract() -> None:
    lin = nn.Linear(4, 3)
    mask = torch.tensor([[1, 0, 1, 0], [0, 0, 1, 1], [1, 1, 1, 1]], dtype=torch.bool)
    buf = attach_mask(lin, "weight", mask)
    assert buf is lin.weight_mask is get_mask(lin, "weight")
    assert buf.dtype == lin.weight.dtype and buf.device == lin.weight.device
    assert "weight_mask" in lin.state_dict()
    assert torch.equal(lin.weight != 0, mask)
    assert get_mask(lin, "bias") is None
    assert densities(lin) == {"weight": 8 / 12}


def test_masks_never_grow_back() -> None:
    lin = nn.Linear(4, 2)
    attach_mask(lin, "weight", torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]]))
    attach_mask(lin, "weight", torch.tensor([[0, 1, 1, 1], [1, 1, 1, 0]]))
    expected = torch.tensor([[0, 1, 0, 0], [1, 1, 1, 0]], dtype=torch.float32)
    assert torch.equal(lin.weight_mask, expected)
    assert torch.equal((lin.weight != 0).float(), expected)


@pytest.mark.parametrize(
    "module, x",
    [
        (nn.Conv1d(2, 4, 3), torch.randn(3, 2, 7)),
        (nn.Conv2d(2, 4, 3, groups=2), torch.randn(3, 2, 6, 6)),
        (nn.Conv3d(2, 3, 2), torch.randn(2, 2, 4, 4, 4)),
        (nn.ConvTranspose2d(2, 4, 3), torch.randn(3, 2, 5, 5)),
        (nn.ConvTranspose1d(4, 2, 3, groups=2), torch.randn(3, 4, 5)),
    ],
)
def test_any_conv_holds_mask_through_training(module: nn.Module, x: torch.Tensor) -> None:
    mask = random_mask(module.weight.shape, seed=0)
    attach_mask(module, "weight", mask)
    opt = torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    hold(opt, module)
    for _ in range(3):
        opt.zero_grad()
        module(x).pow(2).sum().backward()
        opt.step()
    assert torch.all(module.weight[mask == 0] == 0)
    assert torch.all(module.weight[mask == 1] != 0)


class Scaled(nn.Module):
    """A custom module with a plain parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


def test_plain_parameter_of_custom_module_and_dotted_name() -> None:
    model = nn.Sequential(Scaled())
    attach_mask(model, "0.scale", torch.tensor([1, 0, 1, 0, 1]))
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    hold(opt)  # without a model: the masked modules whose parameters this optimizer steps
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(4, 5)).sum().backward()
        opt.step()
    assert model[0].scale[1] == 0 and model[0].scale[3] == 0 and model[0].scale[0] != 1
    assert [n for n, *_ in masked_parameters(model)] == ["0.scale"]


@settings(max_examples=14, deadline=None)
@given(
    opt_name=st.sampled_from(sorted(OPTIMIZERS)),
    created_before=st.booleans(),
    seed=st.integers(0, 1000),
    density=st.floats(0.05, 0.9),
)
def test_masks_hold_after_every_step(
    opt_name: str, created_before: bool, seed: int, density: float
) -> None:
    model = SmallConvNet(seed)
    opt = OPTIMIZERS[opt_name](model.parameters()) if created_before else None
    if opt is not None:
        train(model, opt, 2, seed)  # momentum / moment estimates of every entry are nonzero now
    for name in ("conv1", "conv2", "fc1", "fc2"):
        layer = getattr(model, name)
        attach_mask(layer, "weight", random_mask(layer.weight.shape, seed, density))
    opt = opt or OPTIMIZERS[opt_name](model.parameters())
    for i in range(3):
        train(model, opt, 1, seed + 10 + i)
        assert pruned_entries_zero(model)


def test_state_dict_round_trip_into_fresh_model_and_same_model() -> None:
    model = SmallConvNet(0)
    x, y = conv_batch()
    prune(model, "global_magnitude", 3)
    state = copy.deepcopy(model.state_dict())
    assert {k for k in state if k.endswith("_mask")} == {
        "conv1.weight_mask", "conv2.weight_mask", "fc1.weight_mask"
    }
    fresh = SmallConvNet(7)
    load_state_dict(fresh, state)
    assert densities(fresh) == densities(model)
    for k, v in state.items():
        assert torch.equal(fresh.state_dict()[k], v)
    opt = torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9)
    train(fresh, opt, 3)
    assert pruned_entries_zero(fresh)
    # Into the same (further trained) model: values come back exactly.
    train(model, torch.optim.Adam(model.parameters(), lr=0.01), 2)
    load_state_dict(model, state)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_loaded_values_cannot_revive_pruned_entries() -> None:
    model = SmallConvNet(0)
    prune(model, "layer_magnitude", 4)
    state = model.state_dict()
    state["fc1.weight"] = torch.ones_like(state["fc1.weight"])
    model.load_state_dict(state)
    assert torch.equal(model.fc1.weight, model.fc1.weight_mask)


def test_deepcopy_then_train_the_copy() -> None:
    model = SmallConvNet(0)
    prune(model, "global_magnitude", 5)
    before = copy.deepcopy(model.state_dict())
    clone = copy.deepcopy(copy.deepcopy(model))
    opt = torch.optim.SGD(clone.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    train(clone, opt, 3)
    assert pruned_entries_zero(clone)
    assert not torch.equal(clone.fc1.weight, model.fc1.weight)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_deepcopy_of_a_submodule_holds_its_mask() -> None:
    model = SmallConvNet(0)
    prune(model, "global_magnitude", 5)
    fc1 = copy.deepcopy(model.fc1)
    opt = torch.optim.AdamW(fc1.parameters(), lr=0.1)
    hold(opt, fc1)
    opt.zero_grad()
    fc1(torch.randn(3, 128)).sum().backward()
    opt.step()
    assert torch.all(fc1.weight[fc1.weight_mask == 0] == 0)


def test_torch_save_whole_model_round_trip() -> None:
    model = SmallConvNet(0)
    prune(model, "global_magnitude", 5)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    train(loaded, torch.optim.Adam(loaded.parameters(), lr=0.05), 3)
    assert pruned_entries_zero(loaded)


def test_masks_follow_dtype_conversion() -> None:
    model = SmallConvNet(0)
    prune(model, "global_magnitude", 4)
    model.double()
    assert model.fc1.weight_mask.dtype == torch.float64
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    hold(opt, model)
    for i in range(2):
        x, y = conv_batch(seed=i)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x.double()), y).backward()
        opt.step()
    assert pruned_entries_zero(model)


def test_replaced_parameter_is_left_alone() -> None:
    lin = nn.Linear(3, 2)
    attach_mask(lin, "weight", torch.tensor([[1, 0, 1], [0, 1, 1]]))
    old = lin.weight
    opt = torch.optim.SGD([old], lr=0.1)
    hold(opt, lin)
    lin.weight = nn.Parameter(torch.ones(2, 3))
    old.grad = torch.ones_like(old)
    opt.step()  # the old parameter is no longer the module's: left alone; the module's is masked
    assert bool((old[lin.weight_mask == 0] != 0).all())
    assert torch.equal(lin.weight, lin.weight_mask)


def test_remove_masks_bakes_zeros_and_drops_buffers() -> None:
    model = SmallConvNet(0)
    prune(model, "global_magnitude", 4)
    zeros = {n: (p == 0).clone() for n, p in model.named_parameters()}
    remove_masks(model)
    assert not any(k.endswith("_mask") for k in model.state_dict())
    assert densities(model) == {}
    assert all(torch.equal(p == 0, zeros[n]) for n, p in model.named_parameters())
    assert not model.fc1._load_state_dict_post_hooks
    # A plain module: a fresh, unmasked model accepts its state dict.
    SmallConvNet(1).load_state_dict(model.state_dict())


def test_apply_masks_rezeroes_after_manual_edit() -> None:
    model = SmallConvNet(0)
    prune(model, "global_magnitude", 4)
    with torch.no_grad():
        model.fc1.weight.fill_(1.0)
    assert apply_masks(model) == 3
    assert torch.equal(model.fc1.weight, model.fc1.weight_mask)


def test_dense_models_are_untouched_by_the_step_hook() -> None:
    model = SmallConvNet(0)
    ref = copy.deepcopy(model)
    train(model, torch.optim.SGD(model.parameters(), lr=0.1), 2)
    train(ref, torch.optim.SGD(ref.parameters(), lr=0.1), 2)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), ref.parameters()))


@pytest.mark.parametrize(
    "name, mask, message",
    [
        ("weight", torch.ones(2, 2), "shape"),
        ("weight", torch.full((3, 4), 0.5), "other than 0 and 1"),
        ("kernel", torch.ones(3, 4), "no parameter 'kernel'"),
        ("weight", [[1, 0]], "must be a tensor"),
    ],
)
def test_bad_masks_raise(name: str, mask: object, message: str) -> None:
    with pytest.raises(PruningError, match=message):
        attach_mask(nn.Linear(4, 3), name, mask)  # type: ignore[arg-type]
