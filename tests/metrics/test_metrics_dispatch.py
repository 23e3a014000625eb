"""MACs at the dispatcher: every zoo model against torch's FlopCounterMode, functional ops, tied
weights, attention, RNNs, and operators without a rule."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from shrinkbench.metrics import compression_ratio, count_macs, count_parameters
from shrinkbench.metrics import macs as macs_module
from shrinkbench.models import create, example_input, list_models
from shrinkbench.pruning import attach_mask, prune


def reference_macs(model: nn.Module, x: torch.Tensor) -> float:
    """torch's own counter: FLOPs of one forward pass, halved (it counts 2 FLOPs per MAC)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(x)
    return counter.get_total_flops() / 2


OPTIONAL = {"hf_causal": "transformers"}


@pytest.mark.parametrize("name", list_models())
def test_every_zoo_model_matches_torch_flop_counter(name):
    if name in OPTIONAL:
        pytest.importorskip(OPTIONAL[name])
    model = create(name, generator=torch.Generator().manual_seed(0))
    x = example_input(name)  # token ids for a language model, an image otherwise
    report = count_macs(model, x)
    assert report.dense == reference_macs(model, x) and report.uncounted == {}
    assert report.flops_dense == 2 * report.dense


class TiedLM(nn.Module):
    """An embedding tied to the output head (as in most language models)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 16)
        self.body = nn.Linear(16, 16)
        self.head = nn.Linear(16, 50, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.body(self.emb(x))))


def test_a_tied_embedding_is_counted_once_with_its_density():
    model = TiedLM()
    x = torch.randint(0, 50, (1, 10))
    assert count_macs(model, x).dense == reference_macs(model, x) == 10 * 16 * 16 + 10 * 16 * 50
    result = prune(model, "global_magnitude", 1.5, include_classifier=True)
    count = count_parameters(model)
    assert count.total == 50 * 16 + 16 * 16 + 16 == result.total  # the tied matrix once
    assert count.nonzero == result.nonzero
    assert compression_ratio(model) == pytest.approx(result.compression_achieved)
    head_density = float(model.head.weight_mask.mean())
    report = count_macs(model, x)
    by_layer = {layer.name: layer for layer in report.layers}
    assert by_layer["head"].sparse == pytest.approx(10 * 16 * 50 * head_density)


def test_a_pruned_tensor_used_by_two_layers_is_sparse_in_both():
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(32, 32, bias=False)
            self.b = nn.Linear(32, 32, bias=False)
            self.b.weight = self.a.weight

        def forward(self, x):
            return self.b(torch.relu(self.a(x)))

    model = Shared()
    mask = (torch.rand(32, 32, generator=torch.Generator().manual_seed(0)) < 0.25).float()
    attach_mask(model.a, "weight", mask)
    report = count_macs(model, torch.randn(1, 32))
    density = float(mask.mean())
    assert report.dense == 2 * 32 * 32
    assert report.sparse == pytest.approx(2 * 32 * 32 * density)
    assert report.speedup == pytest.approx(1 / density)
    assert {layer.name: layer.dense for layer in report.layers} == {"a": 1024, "b": 1024}


def test_functional_ops_and_matmuls_are_counted_and_weights_keep_their_density():
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.randn(8, 4))
            self.kernel = nn.Parameter(torch.randn(6, 3, 3, 3))

        def forward(self, x, image):
            h = F.linear(x, self.w)  # 4 x 8
            scores = torch.matmul(h.unsqueeze(-1), h.unsqueeze(-2))  # 8 x 8 from an outer product
            conv = F.conv2d(image, self.kernel, padding=1)  # 6 x 5 x 5 outputs, 27 each
            return scores.sum() + conv.sum()

    model = Functional()
    x, image = torch.randn(1, 4), torch.randn(1, 3, 5, 5)
    report = count_macs(model, (x, image))
    assert report.dense == 32 + 64 + 6 * 25 * 27
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x, image)
    assert report.dense == counter.get_total_flops() / 2
    attach_mask(model, "kernel", (torch.arange(162).reshape(6, 3, 3, 3) % 2).float())
    assert count_macs(model, (x, image)).sparse == pytest.approx(32 + 64 + 6 * 25 * 27 * 81 / 162)


def test_a_transformer_encoder_layer_by_hand():
    # d=32, 4 heads of 8, 10 tokens, MLP 64: in-projection 10x32x96, out-projection 10x32x32,
    # scores and weighted values 4 x 10 x 10 x 8 each, MLP 10x32x64 twice = 88,320 MACs
    layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
    x = torch.randn(1, 10, 32)
    report = count_macs(layer, x)
    assert report.dense == 30720 + 10240 + 3200 + 3200 + 20480 + 20480 == 88320
    # a pruned out-projection (which nn.MultiheadAttention uses through F.linear, never calling the
    # module) and MLP keep their densities; the attention products stay dense
    densities = {}
    for i, name in enumerate(("self_attn.out_proj", "linear1", "linear2")):
        module = layer.get_submodule(name)
        mask = (torch.rand(module.weight.shape, generator=torch.Generator().manual_seed(i)) < 0.3).float()
        attach_mask(module, "weight", mask)
        densities[name] = float(mask.mean())
    sparse = (30720 + 3200 + 3200 + 10240 * densities["self_attn.out_proj"]
              + 20480 * densities["linear1"] + 20480 * densities["linear2"])
    report = count_macs(layer, x)
    assert report.sparse == pytest.approx(sparse) and report.speedup == pytest.approx(88320 / sparse)


def test_scaled_dot_product_attention_has_a_rule():
    q, k, v = torch.randn(1, 2, 7, 8), torch.randn(1, 2, 11, 8), torch.randn(1, 2, 11, 5)

    class Attention(nn.Module):
        def forward(self, q, k, v):
            return F.scaled_dot_product_attention(q, k, v)

    assert count_macs(Attention(), (q, k, v)).dense == 2 * 7 * 11 * (8 + 5)


@pytest.mark.parametrize("make, steps_macs", [
    (lambda: nn.LSTM(8, 16, batch_first=True), 64 * 8 + 64 * 16),
    (lambda: nn.GRU(8, 16, batch_first=True), 48 * 8 + 48 * 16),
    (lambda: nn.RNN(8, 16, batch_first=True), 16 * 8 + 16 * 16),
])
def test_recurrent_layers_count_every_step(make, steps_macs):
    report = count_macs(make(), torch.randn(1, 5, 8))
    assert report.dense == 5 * steps_macs and report.uncounted == {}


def test_an_operator_without_a_rule_is_listed_and_warned_about_once(monkeypatch):
    monkeypatch.delitem(macs_module.OP_RULES, torch.ops.aten.bmm)
    monkeypatch.setattr(macs_module, "_WARNED", set())

    class Batched(nn.Module):
        def forward(self, a, b):
            return torch.bmm(a, b)

    args = (torch.randn(1, 3, 4), torch.randn(1, 4, 5))
    with pytest.warns(RuntimeWarning, match="no MAC rule for bmm"):
        report = count_macs(Batched(), args)
    assert report.uncounted == {"bmm": 1} and report.dense == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert count_macs(Batched(), args).uncounted == {"bmm": 1}  # listed again, not warned again
    assert math.isfinite(report.speedup)
