"""MAC counts against hand-computed values, for every layer kind, dense and sparse."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from shrinkbench.errors import ConfigError, ModelError
from shrinkbench.metrics import LayerMacs, MacReport, count_macs
from shrinkbench.pruning.masks import attach_mask

# (layer, input shape per example, MACs per example worked out by hand)
HAND_COMPUTED = [
    # 5x5 unpadded: 32 -> 28; 8 * 28 * 28 outputs, each 3 * 25 MACs
    (lambda: nn.Conv2d(3, 8, 5), (3, 32, 32), 8 * 28 * 28 * 3 * 25),
    # stride 2, padding 1: (9 + 2 - 3) // 2 + 1 = 5
    (lambda: nn.Conv2d(4, 8, 3, stride=2, padding=1), (4, 9, 9), 8 * 5 * 5 * 4 * 9),
    # groups 4: each output sees 8 / 4 = 2 input channels
    (lambda: nn.Conv2d(8, 16, 3, padding=1, groups=4), (8, 6, 6), 16 * 6 * 6 * 2 * 9),
    # depthwise 3x3 unpadded: 5 -> 3
    (lambda: nn.Conv2d(6, 6, 3, groups=6), (6, 5, 5), 6 * 3 * 3 * 1 * 9),
    # dilation 2: effective kernel 5, 10 -> 6
    (lambda: nn.Conv2d(2, 3, 3, dilation=2), (2, 10, 10), 3 * 6 * 6 * 2 * 9),
    # padding='same' with a 3x5 kernel keeps 7x9
    (lambda: nn.Conv2d(2, 4, (3, 5), padding="same"), (2, 7, 9), 4 * 7 * 9 * 2 * 15),
    # padding='same' with dilation on 1-D
    (lambda: nn.Conv1d(3, 2, 4, padding="same", dilation=2), (3, 10), 2 * 10 * 3 * 4),
    # Conv1d stride 2: (11 - 3) // 2 + 1 = 5
    (lambda: nn.Conv1d(4, 6, 3, stride=2), (4, 11), 6 * 5 * 4 * 3),
    # Conv3d: depth 4 + 2 - 3 + 1 = 4, height (7 - 3) // 2 + 1 = 3, width 5 - 3 + 1 = 3
    (lambda: nn.Conv3d(2, 4, 3, padding=(1, 0, 0), stride=(1, 2, 1)), (2, 4, 7, 5), 4 * 4 * 3 * 3 * 2 * 27),
    # reflect padding costs the same as zero padding
    (lambda: nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect"), (1, 4, 4), 2 * 4 * 4 * 1 * 9),
    # ConvTranspose: every input element meets out_channels / groups filters of the kernel window
    (lambda: nn.ConvTranspose2d(4, 6, 3, 2, padding=1, output_padding=1), (4, 5, 5), 4 * 5 * 5 * 6 * 9),
    (lambda: nn.ConvTranspose2d(4, 6, 3, groups=2, dilation=2), (4, 4, 4), 4 * 4 * 4 * 3 * 9),
    (lambda: nn.ConvTranspose1d(3, 5, 4, stride=3), (3, 6), 3 * 6 * 5 * 4),
    (lambda: nn.ConvTranspose3d(2, 2, 2, stride=2), (2, 3, 3, 3), 2 * 27 * 2 * 8),
    # Linear over any leading dimensions: (seq, features) and (3, 4, features)
    (lambda: nn.Linear(8, 5), (8,), 8 * 5),
    (lambda: nn.Linear(8, 5), (7, 8), 7 * 8 * 5),
    (lambda: nn.Linear(8, 5, bias=False), (3, 4, 8), 12 * 8 * 5),
]


@pytest.mark.parametrize("make, shape, expected", HAND_COMPUTED)
@pytest.mark.parametrize("batch", [1, 3])
def test_dense_macs_match_hand_computed_values_per_example(make, shape, expected, batch):
    layer = make()
    report = count_macs(layer, torch.randn(batch, *shape))
    assert report.dense == expected
    assert report.layers == [LayerMacs("", type(layer).__name__, expected, float(expected), 1.0)]
    assert report.speedup == 1.0


def test_conv_transpose_output_shape_matches_the_hand_computation():
    # (5 - 1) * 2 - 2 * 1 + 3 + 1 = 10: the layer of the table above really makes 10x10 outputs
    layer = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1)
    assert layer(torch.randn(1, 4, 5, 5)).shape == (1, 6, 10, 10)


def test_lenet5_convolutions_are_counted_on_output_positions():
    # The original ShrinkBench used the input size here: (28*28*6*25 + 12*12*16*150) = 463,200, 1.93x more.
    model = nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )  # fmt: skip
    report = count_macs(model, torch.randn(2, 1, 28, 28))
    by_hand = [24 * 24 * 6 * 25, 8 * 8 * 16 * 150, 256 * 120, 120 * 84, 840]
    assert [layer.dense for layer in report.layers] == by_hand
    assert [layer.name for layer in report.layers] == ["0", "3", "7", "9", "11"]
    assert report.dense == 86_400 + 153_600 + 30_720 + 10_080 + 840


@settings(max_examples=40, deadline=None)
@given(
    groups=st.integers(1, 3),
    cin_per_group=st.integers(1, 3),
    cout_per_group=st.integers(1, 3),
    kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    size=st.tuples(st.integers(8, 12), st.integers(8, 12)),
    batch=st.integers(1, 2),
)
def test_random_conv2d_configs_match_the_output_size_formula(
    groups, cin_per_group, cout_per_group, kernel, stride, padding, dilation, size, batch
):
    cin, cout = groups * cin_per_group, groups * cout_per_group
    layer = nn.Conv2d(cin, cout, kernel, stride, padding, dilation, groups)
    out = [
        (size[i] + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1 for i in range(2)
    ]
    expected = cout * out[0] * out[1] * cin_per_group * kernel[0] * kernel[1]
    assert count_macs(layer, torch.randn(batch, cin, *size)).dense == expected


@settings(max_examples=30, deadline=None)
@given(
    groups=st.integers(1, 2),
    cin_per_group=st.integers(1, 3),
    cout_per_group=st.integers(1, 3),
    kernel=st.integers(1, 4),
    stride=st.integers(1, 3),
    padding=st.integers(0, 1),
    dilation=st.integers(1, 2),
    size=st.integers(3, 7),
    data=st.data(),
)
def test_conv_transpose_counts_equal_the_convolution_it_is_the_adjoint_of(
    groups, cin_per_group, cout_per_group, kernel, stride, padding, dilation, size, data
):
    output_padding = data.draw(st.integers(0, stride - 1))  # below the stride: the adjoint fits exactly
    cin, cout = groups * cin_per_group, groups * cout_per_group
    transposed = nn.ConvTranspose2d(
        cin, cout, kernel, stride, padding, output_padding, groups, dilation=dilation
    )
    x = torch.randn(1, cin, size, size)
    y = transposed(x)
    expected = cin * size * size * cout_per_group * kernel * kernel
    assert count_macs(transposed, x).dense == expected
    forward_conv = nn.Conv2d(cout, cin, kernel, stride, padding, dilation, groups)
    assert forward_conv(y).shape[-2:] == x.shape[-2:]
    assert count_macs(forward_conv, y).dense == expected


def test_linear_on_batch_seq_features_counts_per_sequence():
    layer = nn.Linear(16, 4)
    x = torch.randn(5, 9, 16)
    assert count_macs(layer, x).dense == 9 * 16 * 4
    # a transposed (non-contiguous) input takes another kernel path; the count is the same
    assert count_macs(layer, torch.randn(9, 5, 16).transpose(0, 1)).dense == 9 * 16 * 4


def test_sparse_macs_scale_by_the_weight_mask_density_and_give_the_speedup():
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Flatten(), nn.Linear(4 * 4 * 4, 10))
    conv_dense, fc_dense = 4 * 4 * 4 * 2 * 9, 64 * 10
    mask = torch.zeros(4, 2, 3, 3)
    mask.view(-1)[:18] = 1  # 18 of 72 kept: density 1/4
    model[0].register_buffer("weight_mask", mask)
    report = count_macs(model, torch.randn(3, 2, 6, 6))
    assert report.layers[0].density == 0.25
    assert report.layers[0].sparse == conv_dense / 4
    assert report.layers[1].sparse == fc_dense
    assert report.dense == conv_dense + fc_dense
    assert report.sparse == conv_dense / 4 + fc_dense
    assert report.speedup == pytest.approx((conv_dense + fc_dense) / (conv_dense / 4 + fc_dense))


def test_masks_attached_by_the_pruning_layer_are_read():
    layer = nn.Linear(10, 10)
    keep = torch.zeros(10, 10)
    keep[:, :3] = 1  # density 0.3
    attach_mask(layer, "weight", keep)
    report = count_macs(layer, torch.randn(2, 10))
    assert report.layers[0].density == pytest.approx(0.3)
    assert report.sparse == pytest.approx(30.0)
    assert report.speedup == pytest.approx(1 / 0.3)


def test_speedup_is_inf_when_everything_is_pruned_and_one_without_counted_layers():
    layer = nn.Linear(4, 4)
    layer.register_buffer("weight_mask", torch.zeros(4, 4))
    assert count_macs(layer, torch.randn(1, 4)).speedup == math.inf
    empty = count_macs(nn.Sequential(nn.ReLU()), torch.randn(1, 4))
    assert (empty.dense, empty.sparse, empty.speedup, empty.layers) == (0, 0, 1.0, [])


def test_a_layer_used_twice_counts_twice_and_an_unused_layer_counts_zero():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.shared = nn.Linear(6, 6)
            self.unused = nn.Linear(6, 6)

        def forward(self, x):
            return self.shared(self.shared(x))

    report = count_macs(Twice(), torch.randn(4, 6))
    assert [(layer.name, layer.dense) for layer in report.layers] == [("shared", 72), ("unused", 0)]


def test_tuple_inputs_use_the_first_tensor_for_the_batch_size():
    class TwoInputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(3, 2), nn.Linear(5, 2)

        def forward(self, x, z):
            return self.a(x) + self.b(z)

    assert count_macs(TwoInputs(), (torch.randn(4, 3), torch.randn(4, 5))).dense == 6 + 10


def test_modes_are_restored_and_batchnorm_statistics_untouched():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Dropout(), nn.Linear(2, 2))
    model.train()
    model[2].eval()  # a mixed state must come back as it was
    seen = []
    model[0].register_forward_hook(lambda m, i, o: seen.append(m.training))
    before = model[1].running_mean.clone()
    count_macs(model, torch.randn(2, 1, 4, 4))
    assert seen == [False]
    assert [m.training for m in model] == [True, True, False, True]
    assert torch.equal(model[1].running_mean, before)


def test_hooks_are_removed_and_modes_restored_when_the_forward_fails():
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(5, 2)).train()
    with pytest.raises(ModelError, match=r"\(1, 4\)"):  # counted on the first example
        count_macs(model, torch.randn(2, 4))
    assert all(not m._forward_hooks for m in model.modules())
    assert all(m.training for m in model.modules())


@pytest.mark.parametrize("bad", [3, "x", (), torch.tensor(1.0), torch.randn(0, 4)])
def test_example_inputs_without_a_batch_of_tensors_are_refused(bad):
    with pytest.raises(ConfigError, match="example_input"):
        count_macs(nn.Linear(4, 2), bad)


def test_report_is_a_plain_record():
    report = MacReport([LayerMacs("a", "Linear", 10, 5.0, 0.5), LayerMacs("b", "Conv2d", 30, 30.0, 1.0)])
    assert (report.dense, report.sparse, report.speedup) == (40, 35.0, 40 / 35)
