"""Figures of the survey: accuracy change against compression and speedup per (dataset, model) pair."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .plots import curves, draw_curves, strategy_order
from .style import DENSE_COLOR, MARKERS, PALETTE, log2_axis, new_figure, styled

LIT_X = (("compression", "Compression ratio (original / remaining params)"),
         ("speedup", "Theoretical speedup (original / remaining FLOPs)"))
LIT_Y = ((1, "Top-1"), (5, "Top-5"))
GREYS = ("#404040", "#7a7a7a", "#a8a8a8")
POINT_COLOURS = PALETTE[:-1]  # yellow markers are too faint on white


def _paper_styles(papers: list[str], muted: bool) -> dict[str, dict]:
    """Marker and colour per paper: palette colours alone, or greys when our curves take the colours."""
    styles = {}
    for i, paper in enumerate(papers):
        colour = GREYS[i % len(GREYS)] if muted else POINT_COLOURS[i % len(POINT_COLOURS)]
        styles[paper] = {"color": colour, "marker": MARKERS[i % len(MARKERS)]}
    return styles


def _scatter_papers(ax: Axes, points: pd.DataFrame, x: str, y: str, styles: dict[str, dict],
                    handles: dict[str, Line2D]) -> None:
    for paper, rows in points.dropna(subset=[x, y]).groupby("paper_label", sort=True):
        st = styles[paper]
        (h,) = ax.plot(rows[x], rows[y] * 100, linestyle="none", marker=st["marker"], color=st["color"],
                       markersize=4.5, markerfacecolor="none" if st["color"] in GREYS else st["color"],
                       alpha=0.9, zorder=3)
        handles.setdefault(paper, h)


@styled
def literature_figure(points: pd.DataFrame, title: str, ours: pd.DataFrame | None = None,
                      labeller=str, topk: tuple[int, ...] = (1, 5)) -> Figure:
    """Panels of top-1 (and top-5) change against compression and speedup; published points, our curves.

    One row per k in `topk` (the report passes (1,) for data sets with 10 classes or fewer).
    `points` are normalized survey results of one pair; `ours`, when given, are our runs of the same
    pair with delta_post_test_top1_pct/top5_pct columns (percentage points) (change after fine-tuning, as the papers report).
    """
    papers = sorted(points["paper_label"].dropna().unique(), key=str)
    styles = _paper_styles(papers, muted=ours is not None)
    rows = [(k, name) for k, name in LIT_Y if k in topk]
    fig, axes = new_figure(len(rows), 2, legend_width=2.3)
    paper_handles: dict[str, Line2D] = {}
    our_handles: dict[str, Line2D] = {}
    our_x = {"compression": "compression_ratio", "speedup": "speedup"}
    for row, (k, k_name) in enumerate(rows):
        for col, (x, x_label) in enumerate(LIT_X):
            ax = axes[row, col]
            xs = list(points[x].dropna())
            _scatter_papers(ax, points, x, f"dtop{k}", styles, paper_handles)
            if ours is not None and f"delta_post_test_top{k}_pct" in ours and our_x[x] in ours:
                data = ours.assign(_x=pd.to_numeric(ours[our_x[x]], errors="coerce"),
                                   _y=pd.to_numeric(ours[f"delta_post_test_top{k}_pct"], errors="coerce"))
                table = curves(data, "_x", "_y")
                our_handles.update(draw_curves(ax, table, strategy_order(ours), labeller))
                xs += list(table["x"])
            ax.axhline(0.0, color=DENSE_COLOR, linestyle="--", linewidth=0.9, zorder=1)
            log2_axis(ax, xs)
            ax.set_xlabel(x_label)
            ax.set_ylabel(f"Change in {k_name.lower()} accuracy (pp)")
            ax.set_title(f"{k_name} change vs. {x}")
            if not any(np.isfinite(v) for v in xs):
                ax.text(0.5, 0.5, "no published values", transform=ax.transAxes, ha="center",
                        va="center", color=DENSE_COLOR)
    fig.suptitle(title)
    if our_handles:
        fig.legend(list(our_handles.values()), list(our_handles), loc="outside right upper",
                   title="This study (after FT)", frameon=False, fontsize=7.5, title_fontsize=8)
    if paper_handles:
        paper_handles = dict(sorted(paper_handles.items(), key=lambda kv: kv[0].lower()))
        fig.legend(list(paper_handles.values()), list(paper_handles),
                   loc="outside right lower" if our_handles else "outside right center",
                   title="Published", frameon=False, fontsize=7, title_fontsize=8,
                   ncols=2 if len(paper_handles) > 16 else 1)
    return fig
