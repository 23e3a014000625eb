"""`shrinkbench export`: a finished run's model as a plain state dict or as CSR tensors (docs/export.md)."""

from __future__ import annotations

import argparse
from typing import Any

from .run_cmd import DEFAULT_OUT

FORMATS = ("state_dict", "csr")  # checked by experiment.export, which names the valid ones


def register(subparsers: Any) -> None:
    """Add the `export` subcommand."""
    p = subparsers.add_parser(
        "export", help="export a finished run's model (masks baked in, or as CSR tensors)",
        description="Write the final model of a finished pruned run as a plain state dict with the "
        "masks baked in (--format state_dict: loads with weights_only=True into the zoo model) or "
        "with every pruned weight as a sparse CSR tensor (--format csr: read back with "
        "shrinkbench.experiment.export.load_exported), and print its size against the run's "
        "model.pt. A channel-pruned run's model is smaller than the zoo model: its export carries "
        "an 'architecture' entry that shrinkbench.pruning.structured.apply_architecture applies to "
        "a fresh zoo model first. See docs/export.md.")
    p.add_argument("run_id", metavar="RUN_ID", help="a run id, or a prefix of one that is unique")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                   help=f"output folder holding results.sqlite and run folders (default: {DEFAULT_OUT})")
    p.add_argument("--format", dest="fmt", default="state_dict", metavar="FORMAT",
                   help=f"{' or '.join(FORMATS)} (default: state_dict)")
    p.add_argument("--to", metavar="PATH", default=None,
                   help="the file to write (default: DIR/runs/<run id>/export-<format>.pt)")
    p.set_defaults(handler=cmd_export)


def format_bytes(size: int) -> str:
    """A byte count for people: B, kB, MB or GB (powers of 1000), one decimal."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def export_line(result: Any) -> str:
    """One line: which run, as what, its size before -> after, the parameters kept, and where."""
    from ..results.names import display_name

    cfg = result.config
    pruning = cfg.get("pruning", {})
    ratio = result.ratio
    change = f"{ratio:.1f}x smaller" if ratio >= 1 else f"{1 / ratio:.1f}x larger"
    return (f"exported {result.run_id} ({cfg.get('data', {}).get('name')}/"
            f"{cfg.get('model', {}).get('name')} {display_name(pruning.get('strategy', 'none'))} "
            f"x{float(pruning.get('compression', 1)):g} seed {cfg.get('seed')}) as {result.fmt}: "
            f"model.pt (weights and masks) {format_bytes(result.source_bytes)} -> "
            f"{format_bytes(result.exported_bytes)} "
            f"({change}), {result.params_kept:,} of {result.params_total:,} parameters nonzero, "
            f"at {result.path}")


def cmd_export(args: argparse.Namespace) -> int:
    """Handler of `shrinkbench export`."""
    from ..experiment.export import export_run

    print(export_line(export_run(args.out, args.run_id, args.fmt, args.to)))
    return 0
