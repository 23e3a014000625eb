"""The per-layer table, its text rendering, and latency measurement bookkeeping."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from shrinkbench.errors import ConfigError
from shrinkbench.metrics import format_table, layer_table, measure_latency
from shrinkbench.pruning.masks import attach_mask


def masked_net() -> nn.Sequential:
    net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 2 * 2, 3))
    keep = torch.zeros(4, 2, 3, 3)
    keep[:2] = 1  # half of the conv weight
    attach_mask(net[0], "weight", keep)
    return net


def test_rows_hold_shapes_params_densities_and_macs():
    rows = layer_table(masked_net(), torch.randn(2, 2, 4, 4))
    assert rows == [
        {
            "name": "0", "kind": "Conv2d", "shape": [4, 2, 3, 3], "params": 76, "nonzero": 40,
            "density": 0.5, "macs_dense": 4 * 2 * 2 * 18, "macs_sparse": 4 * 2 * 2 * 9.0,
        },
        {
            "name": "3", "kind": "Linear", "shape": [3, 16], "params": 51, "nonzero": 51,
            "density": 1.0, "macs_dense": 48, "macs_sparse": 48.0,
        },
    ]  # fmt: skip


def test_format_table_is_aligned_with_a_total_line():
    text = format_table(layer_table(masked_net(), torch.randn(1, 2, 4, 4)))
    lines = text.splitlines()
    header = ["layer", "kind", "shape", "params", "nonzero", "density", "MACs", "dense", "MACs", "sparse"]
    assert lines[0].split() == header
    assert lines[2].split() == ["0", "Conv2d", "4x2x3x3", "76", "40", "0.5000", "288", "144"]
    assert lines[3].split() == ["3", "Linear", "3x16", "51", "51", "1.0000", "48", "48"]
    assert lines[-1].split() == ["total", "127", "91", f"{91 / 127:.4f}", "336", "192"]
    # right-aligned numbers end in the same column on every line
    ends = {line.rstrip().__len__() for line in lines if not line.startswith("-")}
    assert len(ends) == 1


def test_latency_runs_warmup_plus_repeats_forwards_in_eval_mode():
    net = masked_net().train()
    calls = []
    net.register_forward_hook(lambda m, i, o: calls.append(m.training))
    result = measure_latency(net, torch.randn(1, 2, 4, 4), warmup=2, repeats=5)
    assert calls == [False] * 7
    assert net.training
    assert set(result) == {"mean_s", "std_s", "median_s"}
    assert result["mean_s"] > 0 and result["median_s"] > 0 and result["std_s"] >= 0
    with pytest.raises(ConfigError, match="repeats"):
        measure_latency(net, torch.randn(1, 2, 4, 4), repeats=0)
