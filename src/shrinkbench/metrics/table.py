"""Per-layer table of shapes, parameters, densities and MACs, and its text rendering."""

from __future__ import annotations

from typing import Any

from torch import nn

from shrinkbench.metrics._common import ExampleInput, kept_entries
from shrinkbench.metrics.macs import count_macs

COLUMNS = ("name", "kind", "shape", "params", "nonzero", "density", "macs_dense", "macs_sparse")


def layer_table(model: nn.Module, example_input: ExampleInput) -> list[dict[str, Any]]:
    """One row per layer with MACs (and per conv/linear layer): name, kind, weight shape, own
    parameters, kept entries, density, MACs."""
    report = count_macs(model, example_input)
    rows = []
    for macs in report.layers:
        name = macs.name
        module = model.get_submodule(name) if name else model
        own = list(module.named_parameters(recurse=False))
        weight = module._parameters.get("weight")
        rows.append(
            {
                "name": name,
                "kind": macs.kind,
                "shape": [int(s) for s in weight.shape] if weight is not None else [],
                "params": sum(p.numel() for _, p in own),
                "nonzero": sum(kept_entries(module, pname, p) for pname, p in own),
                "density": macs.density,
                "macs_dense": macs.dense,
                "macs_sparse": macs.sparse,
            }
        )
    return rows


def _cells(row: dict[str, Any]) -> list[str]:
    shape = "x".join(str(s) for s in row["shape"])
    return [
        row["name"] or "(model)",
        row["kind"],
        shape,
        f"{row['params']:,}",
        f"{row['nonzero']:,}",
        f"{row['density']:.4f}",
        f"{row['macs_dense']:,}",
        f"{round(row['macs_sparse']):,}",
    ]


def format_table(rows: list[dict[str, Any]]) -> str:
    """Render layer_table rows as aligned text with a total line (density of the total = nonzero / params)."""
    params = sum(r["params"] for r in rows)
    nonzero = sum(r["nonzero"] for r in rows)
    total = {
        "name": "total",
        "kind": "",
        "shape": [],
        "params": params,
        "nonzero": nonzero,
        "density": nonzero / params if params else 1.0,
        "macs_dense": sum(r["macs_dense"] for r in rows),
        "macs_sparse": sum(r["macs_sparse"] for r in rows),
    }
    header = ["layer", "kind", "shape", "params", "nonzero", "density", "MACs dense", "MACs sparse"]
    body = [_cells(r) for r in rows]
    foot = _cells(total)
    widths = [max(len(line[i]) for line in [header, *body, foot]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        text = [c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "  ".join(text).rstrip()

    rule = "-" * len(line(["-" * w for w in widths]))
    return "\n".join([line(header), rule, *(line(c) for c in body), rule, line(foot)])
