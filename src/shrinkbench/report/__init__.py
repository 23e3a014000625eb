"""Reports: plots, tables, the HTML/Markdown report and the literature meta-analysis (no torch).

Names are loaded on first use, so importing the package does not pull in matplotlib.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_LAZY = {
    "write_report": "report",
    "build_report": "report",
    "Survey": "literature",
    "load_survey": "literature",
    "normalize_results": "literature",
    "parse_value": "literature",
    "top_pairs": "literature",
    "summary": "literature",
    "write_literature": "litout",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
