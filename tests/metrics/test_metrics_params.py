"""Parameter counts, compression ratios and sizes, exact on small known nets."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from shrinkbench.metrics import ParamCount, SizeReport, compression_ratio, count_parameters, model_size
from shrinkbench.pruning.masks import attach_mask


def small_net(dtype: torch.dtype = torch.float32) -> nn.Sequential:
    # Conv2d(3, 4, 3): 4*3*9 + 4 = 112; Linear(10, 5): 50 + 5 = 55; total 167
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Linear(10, 5)).to(dtype)


def keep_first(shape: tuple[int, ...], kept: int) -> torch.Tensor:
    mask = torch.zeros(shape)
    mask.view(-1)[:kept] = 1
    return mask


def test_dense_counts_of_a_known_net():
    net = small_net()
    with torch.no_grad():
        net[1].bias.zero_()
    assert count_parameters(net) == ParamCount(total=167, nonzero=167, nonzero_values=162)
    assert compression_ratio(net) == 1.0


def test_masks_decide_nonzero_and_compression():
    net = small_net()
    attach_mask(net[1], "weight", keep_first((5, 10), 20))
    count = count_parameters(net)
    assert (count.total, count.nonzero, count.nonzero_values) == (167, 137, 137)
    assert compression_ratio(net) == pytest.approx(167 / 137)


def test_nonzero_counts_the_mask_and_nonzero_values_count_the_values():
    net = small_net()
    # a mask buffer registered by hand, weights left as they are: masked entries are still nonzero values
    net[0].register_buffer("weight_mask", keep_first((4, 3, 3, 3), 27))
    with torch.no_grad():
        net[1].weight[0].zero_()  # zero values without a mask count as kept entries
    count = count_parameters(net)
    assert count == ParamCount(total=167, nonzero=167 - 81, nonzero_values=167 - 10)


def test_shared_parameters_count_once():
    first, second = nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False)
    second.weight = first.weight
    assert count_parameters(nn.Sequential(first, second)).total == 16


def test_compression_edge_cases():
    net = nn.Linear(3, 2, bias=False)
    attach_mask(net, "weight", torch.zeros(2, 3))
    assert compression_ratio(net) == math.inf
    assert compression_ratio(nn.ReLU()) == 1.0
    assert count_parameters(nn.ReLU()) == ParamCount(0, 0, 0)


@pytest.mark.parametrize("dtype, itemsize", [(torch.float32, 4), (torch.float16, 2), (torch.float64, 8)])
def test_sizes_are_exact(dtype, itemsize):
    net = small_net(dtype)
    assert model_size(net) == SizeReport(167 * itemsize, 167 * itemsize)
    attach_mask(net[1], "weight", keep_first((5, 10), 20).to(dtype))
    # unmasked: 112 conv + 5 bias dense; masked: 20 kept values + ceil(50 / 8) = 7 bitmask bytes
    assert model_size(net) == SizeReport(167 * itemsize, (117 + 20) * itemsize + 7)


def test_buffers_and_masks_are_not_parameters():
    net = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    net[0].register_buffer("weight_mask", torch.ones(4, 4))
    assert count_parameters(net).total == 20 + 8
    assert model_size(net).dense_bytes == 28 * 4
    # a full mask still costs its bitmask: 16 bits = 2 bytes
    assert model_size(net).sparse_bytes == 28 * 4 + 2


@settings(max_examples=30, deadline=None)
@given(rows=st.integers(1, 9), cols=st.integers(1, 9), data=st.data())
def test_random_masks_count_and_size_by_formula(rows, cols, data):
    kept = data.draw(st.integers(0, rows * cols))
    layer = nn.Linear(cols, rows)
    attach_mask(layer, "weight", keep_first((rows, cols), kept))
    total = rows * cols + rows
    assert count_parameters(layer).nonzero == kept + rows
    assert model_size(layer).sparse_bytes == (kept + rows) * 4 + math.ceil(rows * cols / 8)
    assert compression_ratio(layer) == pytest.approx(total / (kept + rows))
