"""The per-layer table and its text rendering (latency is tested in test_latency.py)."""

from __future__ import annotations

import torch
from torch import nn

from shrinkbench.metrics import format_table, layer_table
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
