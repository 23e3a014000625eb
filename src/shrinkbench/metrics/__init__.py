"""Metrics of a (pruned) model: parameters, compression, size, MACs, other ops, accuracy, latency."""

from __future__ import annotations

from shrinkbench.metrics.accuracy import evaluate
from shrinkbench.metrics.latency import measure_latency
from shrinkbench.metrics.macs import LayerMacs, MacReport, count_macs, register_mac_rule
from shrinkbench.metrics.other_ops import count_other_ops
from shrinkbench.metrics.params import ParamCount, SizeReport, compression_ratio, count_parameters, model_size
from shrinkbench.metrics.table import format_table, layer_table

__all__ = [
    "LayerMacs",
    "MacReport",
    "ParamCount",
    "SizeReport",
    "compression_ratio",
    "count_macs",
    "count_other_ops",
    "count_parameters",
    "evaluate",
    "format_table",
    "layer_table",
    "measure_latency",
    "model_size",
    "register_mac_rule",
]
