"""Reports: plots, tables, the HTML/Markdown report and the literature meta-analysis (no torch).

Names are loaded on first use, so importing the package does not pull in matplotlib.
"""

from __future__ import annotations

import importlib
from typing import Any

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


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
