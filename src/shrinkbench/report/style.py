"""Figure style shared by every plot: colour-blind-safe palette, markers, saving and embedding."""

from __future__ import annotations

import base64
import functools
import io
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TypeVar

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from ..results.files import atomic_write_bytes

# Okabe & Ito (2008): distinguishable under the common colour-vision deficiencies. Yellow is last
# because it is faint on white.
PALETTE: tuple[str, ...] = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#D55E00",  # vermillion
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#000000",  # black
    "#F0E442",  # yellow
)
MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "*", "p")
LINESTYLES: tuple[str, ...] = ("-", "--", "-.", ":")
DENSE_COLOR = "#555555"
F = TypeVar("F", bound=Callable[..., Any])

RC = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.hashsalt": "shrinkbench",  # identical inputs give identical SVG files
}


def style_for(index: int) -> dict[str, str]:
    """Colour, marker and line style of the index-th series (colour and marker both vary)."""
    return {
        "color": PALETTE[index % len(PALETTE)],
        "marker": MARKERS[index % len(MARKERS)],
        "linestyle": LINESTYLES[(index // len(PALETTE)) % len(LINESTYLES)],
    }


def new_figure(nrows: int = 1, ncols: int = 1, *, panel: tuple[float, float] = (3.4, 2.6),
               legend_width: float = 1.9) -> tuple[Figure, np.ndarray]:
    """A pyplot-free figure with a grid of panels and room on the right for an outside legend."""
    fig = Figure(figsize=(panel[0] * ncols + legend_width, panel[1] * nrows + 0.5),
                 layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def styled(fn: F) -> F:
    """Run a plotting function under the report's rc settings (fonts, grid, spines)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with matplotlib.rc_context(RC):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def log2_axis(ax: Axes, values: Iterable[float]) -> None:
    """A log2 x axis with ticks at the powers of two spanned by `values`, labelled 1, 2, 4, ..."""
    finite = np.asarray([v for v in values if np.isfinite(v) and v > 0], dtype=float)
    ax.set_xscale("log", base=2)
    if finite.size == 0:
        return
    lo = int(np.floor(np.log2(finite.min())))
    hi = int(np.ceil(np.log2(finite.max())))
    if hi == lo:
        hi = lo + 1
    ticks = [2.0**k for k in range(lo, hi + 1)]
    ax.set_xticks(ticks)
    ax.xaxis.set_major_formatter(FuncFormatter(_fmt_ratio))
    ax.xaxis.set_minor_locator(LogLocator(base=2, subs=()))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(ticks[0] / 2**0.25, ticks[-1] * 2**0.25)


def _fmt_ratio(value: float, _pos: int) -> str:
    """Tick label of a ratio: 1×, 2×, 4×, ..."""
    return f"{value:g}×"


def log_percent_axis(ax: Axes, values: Iterable[float]) -> None:
    """A log10 y axis of percentages up to 100, with ticks at 0.1, 1, 10, 100 labelled plainly."""
    finite = np.asarray([v for v in values if np.isfinite(v) and v > 0], dtype=float)
    low = 10.0 ** np.floor(np.log10(finite.min())) if finite.size else 1.0
    ax.set_yscale("log")
    ax.set_ylim(low / 1.3, 130)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))


def legend_outside(fig: Figure, handles: Sequence, labels: Sequence[str], title: str | None = None) -> None:
    """One legend for the whole figure, to the right of the panels, off the data."""
    if handles:
        fig.legend(handles, labels, loc="outside right center", title=title, frameon=False,
                   fontsize=8, title_fontsize=8)


def figure_bytes(fig: Figure, fmt: str = "png", dpi: int = 130) -> bytes:
    """The figure encoded as PNG (palette-quantized, about 3x smaller) or SVG."""
    buf = io.BytesIO()
    meta = {"Software": None} if fmt == "png" else {"Date": None, "Creator": None}
    with matplotlib.rc_context(RC):  # svg.hashsalt is read when saving
        fig.savefig(buf, format=fmt, dpi=dpi, metadata=meta)
    return _quantize_png(buf.getvalue()) if fmt == "png" else buf.getvalue()


def _quantize_png(data: bytes) -> bytes:
    """A 128-colour palette PNG of `data` (plots have few colours); unchanged without Pillow."""
    try:
        from PIL import Image  # a dependency of matplotlib
    except ImportError:  # pragma: no cover
        return data
    with Image.open(io.BytesIO(data)) as image:
        small = image.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    small.save(out, format="PNG", optimize=True)
    return out.getvalue()


def data_uri(fig: Figure, fmt: str = "png") -> str:
    """The figure as a data: URI for embedding in a self-contained HTML file."""
    mime = {"png": "image/png", "svg": "image/svg+xml"}[fmt]
    return f"data:{mime};base64," + base64.b64encode(figure_bytes(fig, fmt)).decode("ascii")


def save_figure(fig: Figure, stem: Path, formats: Sequence[str] = ("png", "svg")) -> list[Path]:
    """Save the figure as `stem.png` and `stem.svg` (atomically); returns the paths written."""
    paths = []
    for fmt in formats:
        path = stem.with_suffix(f".{fmt}")
        atomic_write_bytes(path, figure_bytes(fig, fmt))
        paths.append(path)
    return paths
