"""Metrics of a (pruned) model: parameters, compression, size, MACs, other ops, accuracy, perplexity,
latency."""

from __future__ import annotations

from shrinkbench.metrics.accuracy import evaluate
from shrinkbench.metrics.latency import Latency, compare_latency, latency_at_batches, measure_latency
from shrinkbench.metrics.macs import LayerMacs, MacReport, count_macs, register_mac_rule
from shrinkbench.metrics.other_ops import count_other_ops
from shrinkbench.metrics.params import ParamCount, SizeReport, compression_ratio, count_parameters, model_size
from shrinkbench.metrics.perplexity import evaluate_lm
from shrinkbench.metrics.sparse_exec import CSRLinear, csr_layers, sparse_linear
from shrinkbench.metrics.table import format_table, layer_table

__all__ = [
    "CSRLinear",
    "LayerMacs",
    "Latency",
    "MacReport",
    "ParamCount",
    "SizeReport",
    "compare_latency",
    "compression_ratio",
    "count_macs",
    "count_other_ops",
    "count_parameters",
    "csr_layers",
    "evaluate",
    "evaluate_lm",
    "format_table",
    "latency_at_batches",
    "layer_table",
    "measure_latency",
    "model_size",
    "register_mac_rule",
    "sparse_linear",
]
