"""`shrinkbench report` (a results folder as HTML or Markdown) and `shrinkbench literature` (the survey)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .argtypes import positive_int

LITERATURE_ENV = "SHRINKBENCH_LITERATURE"
SURVEY_SOURCE = (
    "the survey data export of the original ShrinkBench repository "
    "(github.com/JJGO/shrinkbench, folder analysis/assets/existing-results)"
)


def register(subparsers: Any) -> None:
    """Add the `report` and `literature` subcommands."""
    r = subparsers.add_parser(
        "report",
        help="write the report of a results folder (HTML, or Markdown with image files)",
        description="Render the runs of a results folder as one self-contained HTML file (images "
        "embedded) or as Markdown plus PNG/SVG files: setup, reporting checklist, plots, summary "
        "tables, strategy comparisons, failed runs and environment. Prints the report's path.",
    )
    r.add_argument("dir", metavar="DIR", help="results folder (holding results.sqlite)")
    r.add_argument("--out", default=None,
                   help="report file (default: DIR/report.html, or DIR/report.md with --format md)")
    r.add_argument("--format", choices=("html", "md"), default=None, dest="fmt",
                   help="html: one self-contained file; md: Markdown plus a <name>_files folder of "
                   "images (default: from the --out suffix, else html)")
    r.add_argument("--literature", metavar="DIR", default=None,
                   help="survey tables to overlay on the plots of matching (dataset, model) pairs")
    r.add_argument("--title", default=None, help="report title (default: from the folder name)")
    r.set_defaults(handler=report_command)

    lit = subparsers.add_parser(
        "literature",
        help="summarize the published results of the pruning survey",
        description="Read the survey's published tables (Papers, Results, ...), normalize every result "
        "to compression ratio, theoretical speedup and top-1/top-5 change, and print a summary; with "
        f"--out, also write per-pair plots and CSV tables. The tables are {SURVEY_SOURCE}.",
    )
    lit.add_argument("--data", metavar="DIR", default=None,
                     help=f"folder of the survey's CSV tables (default: ${LITERATURE_ENV})")
    lit.add_argument("--out", metavar="DIR", default=None,
                     help="write summary.json, pairs.csv, normalized_results.csv and per-pair plots here")
    lit.add_argument("--format", choices=("table", "csv", "json"), default="table", dest="fmt",
                     help="printed summary: table (default), csv (the pairs) or json")
    lit.add_argument("--top", type=positive_int, default=5,
                     help="how many of the most used (dataset, model) pairs to list and plot (default 5)")
    lit.set_defaults(handler=literature_command)


def report_command(args: argparse.Namespace) -> int:
    """Handler of `shrinkbench report`."""
    from ..report import write_report

    fmt = args.fmt or ("md" if args.out and Path(args.out).suffix.lower() in (".md", ".markdown") else "html")
    path = write_report(args.dir, out=args.out, fmt=fmt, literature=args.literature, title=args.title)
    print(path)
    return 0


def literature_command(args: argparse.Namespace) -> int:
    """Handler of `shrinkbench literature`."""
    from ..report.literature import load_survey, summary
    from ..report.litout import format_summary, write_literature

    data = args.data or os.environ.get(LITERATURE_ENV)
    if not data:
        raise ConfigError(f"no survey data given: pass --data DIR or set ${LITERATURE_ENV} to a folder "
                          f"holding {SURVEY_SOURCE}")
    survey = load_survey(data)
    print(format_summary(summary(survey, args.top), args.fmt))
    if args.out:
        written = write_literature(survey, args.out, n_pairs=args.top)
        if args.fmt == "table":
            print(f"\nwrote {len(written)} files to {args.out}")
    return 0
