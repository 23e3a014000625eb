"""Figure style shared by every plot: colour-blind-safe palette, markers, saving and embedding."""

from __future__ import annotations

import base64
import functools
import io
import re
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TypeVar

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from ..results.files import atomic_write_bytes
from ..results.names import display_name

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
    "font.size": 10,
    "axes.titlesize": 10.5,
    "axes.labelsize": 9.5,
    "legend.fontsize": 9,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
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


# A strategy keeps its colour and marker in every figure and every report: the built-ins have fixed
# entries (keyed by their ShrinkBench name); any other name is hashed into the colours and markers
# left over, so its style depends on its name alone, never on which other strategies are present.
STRATEGY_STYLES: dict[str, tuple[str, str]] = {
    "GlobalMagWeight": ("#0072B2", "o"),  # blue
    "LayerMagWeight": ("#009E73", "^"),  # bluish green
    "GlobalMagGrad": ("#E69F00", "s"),  # orange
    "LayerMagGrad": ("#56B4E9", "v"),  # sky blue
    "GlobalMagAct": ("#CC79A7", "D"),  # reddish purple
    "LayerMagAct": ("#000000", "P"),  # black
    "RandomPruning": ("#D55E00", "X"),  # vermillion
    "SNIP": ("#332288", "<"),  # indigo
    "GraSP": ("#882255", ">"),  # wine
    "SynFlow": ("#117733", "h"),  # green
    "Wanda": ("#AA4499", "p"),  # purple (language models)
    "SparseGPT": ("#999933", "d"),  # olive (language models; apart from LayerMagWeight's green)
    "Unpruned": (DENSE_COLOR, "*"),
}
# Further colour-blind-considerate colours (Tol's "muted" set, minus near-duplicates of the above).
USER_COLORS: tuple[str, ...] = ("#332288", "#882255", "#117733", "#AA4499", "#999933", "#CC6677",
                                "#44AA99", "#DDCC77")
USER_MARKERS: tuple[str, ...] = ("<", ">", "h", "p", "d", "8")


# A strategy run with a schedule other than one-shot ("GlobalMagWeight [lottery (rewind init)]")
# keeps its strategy's colour and takes its line style and marker from the schedule (first pattern
# found in the bracket), so that strategies stay apart within a schedule and schedules within a
# strategy; a lottery control takes a colour of its own, so that a ticket and its controls differ
# in colour too. The colour is None where the strategy's own is kept.
SCHEDULE_STYLES: tuple[tuple[str, str | None, str, str], ...] = (
    ("reinit control", "#CC6677", "--", "x"),  # rose
    ("random control", "#661100", "--", "x"),  # dark brown
    ("shuffle control", "#A6761D", "--", "x"),  # ochre
    ("lottery", None, "-", "^"),
    ("gradual at init", None, "-.", "D"),
    ("gradual", None, "-", "D"),
    ("iterative", None, "-", "s"),
    ("at init", None, "-.", "v"),  # one-shot at init
)
_SCHEDULE = re.compile(r" \[(?P<schedule>[^\]]*)\]")
_ALLOCATION = re.compile(r" \((?P<allocation>[^()]*)\)$")
_REWIND_STYLES: tuple[str, ...] = ("-.", ":")


def strategy_style(name: str) -> dict[str, str]:
    """The fixed colour, marker and line style of a strategy (a ShrinkBench or canonical name, with
    its schedule in brackets unless one-shot)."""
    match = _SCHEDULE.search(str(name))
    if match:
        return _schedule_style(match["schedule"], strategy_style(_SCHEDULE.sub("", str(name), count=1)))
    shown = display_name(str(name))
    if shown in STRATEGY_STYLES:
        color, marker = STRATEGY_STYLES[shown]
        return {"color": color, "marker": marker, "linestyle": "-"}
    allocation = _ALLOCATION.search(shown)
    if allocation and allocation["allocation"] not in ("speedup", "channels"):
        # "Wanda (2:4)": Wanda's colour, dashed, a marker of the allocation's own
        base = strategy_style(shown[: allocation.start()])
        code = zlib.crc32(allocation["allocation"].encode("utf-8"))
        markers = [m for m in USER_MARKERS if m != base["marker"]]  # never the strategy's own
        return {"color": base["color"], "marker": markers[code % len(markers)], "linestyle": "--"}
    code = zlib.crc32(shown.encode("utf-8"))  # stable across processes, unlike hash()
    return {"color": USER_COLORS[code % len(USER_COLORS)],
            "marker": USER_MARKERS[(code // len(USER_COLORS)) % len(USER_MARKERS)],
            "linestyle": "--"}


def _schedule_style(schedule: str, base: dict[str, str]) -> dict[str, str]:
    for pattern, color, linestyle, marker in SCHEDULE_STYLES:
        if pattern in schedule:
            rewind = re.search(r"rewind ([^)\s]+)", schedule)
            if pattern == "lottery" and rewind and rewind.group(1) not in ("init", "0", "0it"):  # later: dashes
                linestyle = _REWIND_STYLES[zlib.crc32(rewind.group(1).encode("utf-8")) % len(_REWIND_STYLES)]
            return {"color": color or base["color"], "marker": marker, "linestyle": linestyle}
    code = zlib.crc32(schedule.encode("utf-8"))
    return {"color": base["color"], "marker": USER_MARKERS[code % len(USER_MARKERS)], "linestyle": "--"}


def legend_label(name: str, width: int = 22) -> str:
    """A strategy label for a legend: a long "Strategy [schedule]" on two lines, others unchanged."""
    shown = display_name(str(name))
    if " [" in shown and len(shown) > width:
        return shown.replace(" [", "\n[", 1)
    return shown


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


def log2_axis(ax: Axes, values: Iterable[float], pad: float = 0.12, which: str = "x") -> None:
    """A log2 axis (x, or y with which="y") that ends at the data (plus `pad` octave), ticks at the
    powers of two inside it."""
    finite = np.asarray([v for v in values if np.isfinite(v) and v > 0], dtype=float)
    axis = ax.yaxis if which == "y" else ax.xaxis
    set_scale, set_ticks, set_lim = ((ax.set_yscale, ax.set_yticks, ax.set_ylim) if which == "y"
                                     else (ax.set_xscale, ax.set_xticks, ax.set_xlim))
    set_scale("log", base=2)
    axis.set_minor_locator(LogLocator(base=2, subs=()))
    axis.set_minor_formatter(NullFormatter())
    axis.set_major_formatter(FuncFormatter(_fmt_ratio))
    if finite.size == 0:
        return
    lo, hi = np.log2(finite.min()), np.log2(finite.max())
    if hi - lo < 0.5:  # a narrow range still spans half an octave
        middle = (lo + hi) / 2
        lo, hi = middle - 0.25, middle + 0.25
    # 32.01 is "32x": a power of two within 1% of the data counts as reached
    ticks = [2.0**k for k in range(int(np.ceil(lo - 0.015)), int(np.floor(hi + 0.015)) + 1)]
    if len(ticks) < 2:  # label the data's ends too, unless a power of two is next to them
        ends = [float(f"{2**v:.2g}") for v in (lo, hi)]
        ticks = sorted({*ticks, *(e for e in ends if all(abs(np.log2(e / t)) > 0.2 for t in ticks))})
    set_ticks(ticks)
    set_lim(2 ** (min(lo, np.log2(ticks[0])) - pad), 2 ** (max(hi, np.log2(ticks[-1])) + pad))


def _fmt_ratio(value: float, _pos: int) -> str:
    """Tick label of a ratio: 1×, 2×, 4×, ..."""
    return f"{value:g}×"


def log_percent_axis(ax: Axes, values: Iterable[float]) -> None:
    """A log10 y axis of percentages that ends at the data (at most 100 %), labelled plainly."""
    finite = np.asarray([v for v in values if np.isfinite(v) and v > 0], dtype=float)
    low = finite.min() if finite.size else 1.0
    high = min(finite.max(), 100.0) if finite.size else 100.0
    ax.set_yscale("log")
    ax.set_ylim(low / 1.25, max(high, low * 2) * 1.25)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    if np.log10(high / low) < 1.2:  # under about a decade: label the 2x and 5x ticks too
        ax.yaxis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0)))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))


def legend_outside(fig: Figure, handles: Sequence, labels: Sequence[str], title: str | None = None) -> None:
    """One legend for the whole figure, to the right of the panels, off the data."""
    if handles:
        fig.legend(handles, labels, loc="outside right center", title=title, frameon=False,
                   fontsize=9, title_fontsize=9, alignment="left")


def figure_bytes(fig: Figure, fmt: str = "png", dpi: int = 130) -> bytes:
    """The figure encoded as SVG (text as paths, so it looks the same everywhere) or PNG."""
    buf = io.BytesIO()
    meta = {"Software": None} if fmt == "png" else {"Date": None, "Creator": None}
    with matplotlib.rc_context(RC):  # svg.hashsalt is read when saving
        fig.savefig(buf, format=fmt, dpi=dpi, metadata=meta)
    return buf.getvalue()


def data_uri(fig: Figure, fmt: str = "svg") -> str:
    """The figure as a data: URI for embedding in a self-contained HTML file (SVG: sharp at any width)."""
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
