"""Plots of pruning schedules: the sparsity path of each scheduled run during training, and the
accuracy after each round of iterative pruning and lottery tickets with their controls."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from ..results import analysis
from .plots import CONTROL_COLOR, SPLIT, _is_control, compression_colors, strategy_order
from .style import DENSE_COLOR, legend_label, legend_outside, log2_axis, new_figure, strategy_style, styled


def _mirror_axis(ax: Axes, which: str, label: str, fmt: Callable[[float], str]) -> None:
    """A second axis on the right (y) or on top (x) with the same ticks as the log2 ratio axis, each
    labelled with `fmt` of its ratio (sparsity or weights remaining, in percent)."""
    ticks = [t for t in (ax.get_yticks() if which == "y" else ax.get_xticks())]
    second = ax.secondary_yaxis("right") if which == "y" else ax.secondary_xaxis("top")
    axis = second.yaxis if which == "y" else second.xaxis
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: fmt(v)))
    (second.set_ylabel if which == "y" else second.set_xlabel)(label)


def _sparsity_pct(ratio: float) -> str:
    return f"{100.0 * (1.0 - 1.0 / ratio):.3g}" if ratio > 0 else ""


def _remaining_pct(ratio: float) -> str:
    return f"{100.0 / ratio:.3g}" if ratio > 0 else ""


def scheduled_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The pruned runs whose schedule kind is not one-shot (iterative, gradual, lottery)."""
    if runs.empty:
        return runs
    keep = (analysis.schedule_kinds(runs) != "oneshot").to_numpy() & ~_is_control(runs)
    return runs[keep]


def path_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The sparsity path of every scheduled run: run key, step and compression after each pruning step,
    with compression taken from the sparsity (1 / (1 - s)) where the run recorded no compression."""
    points = analysis.path_points(scheduled_runs(runs))
    if points.empty:
        return points
    from_sparsity = 1.0 / (1.0 - points["sparsity"].clip(upper=1 - 1e-12))
    ratio = points["compression_after"].where(points["compression_after"] > 0, from_sparsity)
    points = points.assign(ratio=ratio)
    return points[np.isfinite(points["step"]) & np.isfinite(points["ratio"]) & (points["ratio"] > 0)]


def single_step_labels(runs: pd.DataFrame) -> list[str]:
    """The strategy labels whose scheduled runs all pruned in one step (lottery controls: the ticket's
    final sparsity at once): a path of one point has nothing to show over time."""
    points = path_table(runs)
    if points.empty:
        return []
    steps = points.groupby(["strategy", "run_id"])["point"].count().groupby(level="strategy").max()
    return sorted(str(label) for label, n in steps.items() if n <= 1)


@styled
def sparsity_path_figure(runs: pd.DataFrame, title: str | None = None,
                         labeller: Callable = legend_label) -> Figure | None:
    """Compression (log2, left) and sparsity (right) of the model against the optimizer step of each
    scheduled run's own training: one panel per strategy label, one line per run, coloured by its
    target compression (seeds overlaid); each marker is a pruning step. Labels whose runs pruned in
    one step (single_step_labels) have no panel."""
    points = path_table(runs)
    if points.empty:
        return None
    points = points[~points["strategy"].isin(single_step_labels(runs))]
    if points.empty:
        return None
    order = strategy_order(points)
    ncols = 2 if len(order) in (2, 4) else min(len(order), 3)
    nrows = math.ceil(len(order) / ncols)
    fig, axes = new_figure(nrows, ncols, panel=(3.5, 2.5), legend_width=1.4)
    colors = compression_colors(points["compression"].astype(float).tolist())
    handles: dict[str, Line2D] = {}
    spans = [1.0, *points["ratio"]]
    for index, ax in enumerate(axes.flat):
        if index >= len(order):
            ax.set_visible(False)
            continue
        label = order[index]
        # the largest target first, so that a smaller one, whose path is often the start of the
        # larger one's (iterative, lottery), stays visible on top of it
        groups = list(points[points["strategy"] == label].groupby(["compression", "run_id"], sort=True))
        for (compression, _run), rows in sorted(groups, key=lambda g: -float(g[0][0])):
            rows = rows.sort_values("point")
            steps, ratios = rows["step"].tolist(), rows["ratio"].tolist()
            if steps[0] > 0:  # dense until the first pruning step
                steps, ratios = [0.0, *steps], [1.0, *ratios]
            color = colors[float(compression)]
            ax.step(steps, ratios, where="post", color=color, linewidth=1.3, alpha=0.85)
            ax.plot(rows["step"], rows["ratio"], linestyle="none", marker="o", markersize=2.6, color=color,
                    alpha=0.85)
            handles.setdefault(f"{float(compression):g}\u00d7",
                               Line2D([], [], color=color, linewidth=1.3, marker="o", markersize=3))
        log2_axis(ax, spans, which="y")
        ax.set_title(labeller(label), color=strategy_style(label)["color"], fontsize=9.5)
        ax.set_xlabel("Training step (optimizer steps)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_xlim(left=0)
        if index % ncols == 0:
            ax.set_ylabel("Compression ratio")
        if index % ncols == ncols - 1 or index == len(order) - 1:
            _mirror_axis(ax, "y", "Sparsity (%)", _sparsity_pct)
    if title:
        fig.suptitle(title)
    ordered = sorted(handles, key=lambda h: float(h.rstrip("\u00d7")))
    legend_outside(fig, [handles[h] for h in ordered], ordered, title="Target\ncompression")
    return fig


@styled
def round_accuracy_figure(runs: pd.DataFrame, title: str | None = None,
                          labeller: Callable = legend_label) -> Figure | None:
    """Top-1 test accuracy after each round of the iterative and lottery runs against the compression
    reached in that round (log2), one line per strategy label through the means over runs and seeds,
    band min to max; lottery controls on the same axes (the figure of Frankle & Carbin, 2019)."""
    table = analysis.round_curves(runs, metric=f"round_{SPLIT}_top1_pct", final=f"post_{SPLIT}_top1_pct")
    if table.empty:
        return None
    fig, axes = new_figure(1, 1, panel=(5.0, 3.3), legend_width=2.6)
    ax = axes[0, 0]
    handles: dict[str, Line2D] = {}
    for label in strategy_order(table):
        rows = table[table["strategy"] == label]
        st = strategy_style(label)
        (line,) = ax.plot(rows["x"], rows["mean"], color=st["color"], marker=st["marker"],
                          linestyle=st["linestyle"], markersize=4, linewidth=1.4)
        if (rows["max"] > rows["min"]).any():
            ax.fill_between(rows["x"], rows["min"], rows["max"], color=st["color"], alpha=0.15, linewidth=0)
        handles[labeller(label)] = line
    dense = pd.to_numeric(runs.get(f"dense_{SPLIT}_top1_pct"), errors="coerce").dropna()
    if len(dense):
        handles["dense model"] = ax.axhline(float(dense.mean()), color=DENSE_COLOR, linestyle="--",
                                            linewidth=1.0, zorder=1)
    controls = runs[_is_control(runs)]
    control = pd.to_numeric(controls.get(f"post_{SPLIT}_top1_pct"), errors="coerce").dropna()
    if len(control):
        handles["unpruned control, fine-tuned (c = 1)"] = ax.axhline(
            float(control.mean()), color=CONTROL_COLOR, linestyle=":", linewidth=1.1, zorder=1)
    log2_axis(ax, table["x"])
    ax.set_xlabel("Compression ratio after the round (all / nonzero parameters)")
    ax.set_ylabel("Top-1 test accuracy (%)")
    _mirror_axis(ax, "x", "Weights remaining (%)", _remaining_pct)
    if title:
        fig.suptitle(f"{title}: accuracy after each round")
    legend_outside(fig, list(handles.values()), list(handles), title="Strategy [schedule]")
    return fig
