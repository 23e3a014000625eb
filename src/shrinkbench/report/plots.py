"""Plots of a store's runs: accuracy against compression and speedup, fine-tuning curves, layer densities."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..results import analysis
from ..results.names import display_name
from .names import pair_title  # noqa: F401  (re-exported: it lived here)
from .style import (DENSE_COLOR, legend_outside, log2_axis, log_percent_axis, new_figure,
                    strategy_style, styled)

SPLIT = "test"  # the reported figures; validation served model selection
STAGES = (("pre", "before fine-tuning"), ("post", "after fine-tuning"))
TOPK = ((1, "Top-1"), (5, "Top-5"))
CONTROL = "Unpruned"  # the display name of the compression-1 control
CONTROL_COLOR = "#222222"


@dataclass(frozen=True)
class Axis:
    """An x axis of the accuracy plots: the metric column and its label."""

    column: str
    label: str
    slug: str


X_AXES: dict[str, Axis] = {
    # short labels, so that two panels side by side keep their width; the captions define them
    "compression": Axis("compression_ratio", "Compression ratio", "compression"),
    "speedup": Axis("speedup", "Theoretical speedup", "speedup"),
}


def curves(runs: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Per strategy and requested compression: mean x, mean/std/min/max of y and the run count."""
    data = runs.dropna(subset=[x, y])
    if data.empty:
        return pd.DataFrame(columns=["strategy", "compression", "x", "mean", "std", "min", "max", "n"])
    grouped = data.groupby(["strategy", "compression"], sort=True)
    out = grouped.agg(x=(x, "mean"), mean=(y, "mean"), std=(y, "std"), min=(y, "min"),
                      max=(y, "max"), n=(y, "size")).reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out.sort_values(["strategy", "x"]).reset_index(drop=True)


def strategy_order(runs: pd.DataFrame) -> list[str]:
    """Strategies sorted by name, a lottery ticket before its controls (legend order); colours come
    from the name, not from this order."""
    return sorted(runs["strategy"].dropna().astype(str).unique(), key=analysis.strategy_sort_key)


def _is_control(runs: pd.DataFrame) -> pd.Series:
    return np.isclose(pd.to_numeric(runs["compression"], errors="coerce"), 1.0)


def _y_values(runs: pd.DataFrame, stage: str, k: int, change: bool) -> pd.Series:
    """Accuracy (or its change from the unpruned reference) in percent / percentage points."""
    metric = f"{stage}_{SPLIT}_top{k}_pct"
    if change and f"delta_{metric}" in runs:  # from results.analysis.accuracy_change
        return pd.to_numeric(runs[f"delta_{metric}"], errors="coerce")
    acc = pd.to_numeric(runs.get(metric), errors="coerce")
    if change:
        acc = acc - pd.to_numeric(runs.get(f"dense_{SPLIT}_top{k}_pct"), errors="coerce")
    return acc


def draw_curves(ax: Axes, table: pd.DataFrame, order: Sequence[str], labeller: Callable = str,
                band: bool = True) -> dict[str, Line2D]:
    """One line per strategy through the means, a shaded band of +-1 std; returns label -> handle."""
    handles: dict[str, Line2D] = {}
    for strategy in order:
        rows = table[table["strategy"] == strategy]
        if rows.empty:
            continue
        st = strategy_style(strategy)
        (line,) = ax.plot(rows["x"], rows["mean"], color=st["color"], marker=st["marker"],
                          linestyle=st["linestyle"], markersize=4, linewidth=1.4)
        if band and (rows["std"] > 0).any():
            ax.fill_between(rows["x"], rows["mean"] - rows["std"], rows["mean"] + rows["std"],
                            color=st["color"], alpha=0.18, linewidth=0)
        handles[labeller(strategy)] = line
    return handles


@styled
def accuracy_figure(runs: pd.DataFrame, k: int = 1, change: bool = False, title: str | None = None,
                    labeller: Callable = display_name,
                    xs: Sequence[str] = ("compression", "speedup")) -> Figure:
    """Top-k accuracy (or its change) before and after fine-tuning, one row of panels per x axis in `xs`.

    Pruned runs are drawn as one line per strategy (seed means, band +-1 std); the unpruned
    reference is a horizontal line: the dense model before fine-tuning, the compression-1 control
    (fine-tuned with the same recipe) after it, where the runs have one.
    """
    pruned = runs[~_is_control(runs)]
    controls = runs[_is_control(runs)]
    order = strategy_order(pruned)
    k_name = dict(TOPK)[k]
    fig, axes = new_figure(len(xs), 2, panel=(3.5, 2.5))
    handles: dict[str, Line2D] = {}
    references: dict[str, Line2D] = {}
    for row, x in enumerate(xs):
        axis = X_AXES[x]
        x_values = pd.to_numeric(pruned.get(axis.column), errors="coerce")
        for col, (stage, stage_name) in enumerate(STAGES):
            ax = axes[row, col]
            data = pruned.assign(_x=x_values, _y=_y_values(pruned, stage, k, change))
            handles.update(draw_curves(ax, curves(data, "_x", "_y"), order, labeller))
            _reference(ax, runs, controls, stage, k, change, references)
            log2_axis(ax, x_values)
            ax.set_title(f"{k_name}, {stage_name}")
            ax.set_xlabel(axis.label)
            ax.set_ylabel(f"Change in {k_name.lower()} (pp)" if change else f"{k_name} accuracy (%)")
    if title:
        fig.suptitle(title)
    handles.update(references)
    legend_outside(fig, list(handles.values()), list(handles), title="Strategy")
    return fig


def _reference(ax: Axes, runs: pd.DataFrame, controls: pd.DataFrame, stage: str, k: int, change: bool,
               handles: dict[str, Line2D]) -> None:
    """A horizontal line at the unpruned reference of the panel (0 for changes)."""
    if change:
        by_control = "delta_reference" in runs and (runs["delta_reference"] == "control").all()
        level, label = 0.0, "unpruned control (c = 1)" if by_control else "dense model"
        color, style = DENSE_COLOR, "--"
    else:
        control = pd.to_numeric(controls.get(f"post_{SPLIT}_top{k}_pct"), errors="coerce").dropna()
        dense = pd.to_numeric(runs.get(f"dense_{SPLIT}_top{k}_pct"), errors="coerce").dropna()
        if stage == "post" and not control.empty:
            level, label = float(control.mean()), "unpruned control, fine-tuned (c = 1)"
            color, style = CONTROL_COLOR, ":"
        elif not dense.empty:
            level, label = float(dense.mean()), "dense model"
            color, style = DENSE_COLOR, "--"
        else:
            return
    line = ax.axhline(level, color=color, linestyle=style, linewidth=1.1, zorder=1)
    handles.setdefault(label, line)


def finetune_curves(epochs: pd.DataFrame, runs: pd.DataFrame, metric: str = "val_top1_pct") -> pd.DataFrame:
    """Mean `metric` per strategy, compression and fine-tuning epoch over seeds; epoch 0 is right after pruning."""
    columns = ["strategy", "compression", "epoch", "mean", "n"]
    if epochs.empty or metric not in epochs:
        return pd.DataFrame(columns=columns)
    rows = epochs[epochs["phase"] == "finetune"][["run_id", "strategy", "compression", "epoch", metric]]
    start_metric = f"pre_{metric}"  # val_top1_pct -> pre_val_top1_pct: the pruned, not yet tuned model
    if start_metric in runs:
        start = runs[["run_id", "strategy", "compression", start_metric]].rename(
            columns={start_metric: metric}).assign(epoch=0)
        start = start[start["run_id"].isin(rows["run_id"])]
        rows = pd.concat([start, rows], ignore_index=True)
    rows = rows.assign(_y=pd.to_numeric(rows[metric], errors="coerce")).dropna(subset=["_y"])
    if rows.empty:
        return pd.DataFrame(columns=columns)
    out = rows.groupby(["strategy", "compression", "epoch"], sort=True)["_y"].agg(["mean", "size"])
    return out.rename(columns={"size": "n"}).reset_index()


def compression_colors(compressions: Sequence[float]) -> dict[float, tuple]:
    """A sequential colour per compression (viridis, light to dark as compression grows; no yellow end)."""
    values = sorted(set(compressions))
    cmap = colormaps["viridis"]
    if len(values) == 1:
        return {values[0]: cmap(0.35)}
    logs = np.log2(values)
    span = logs[-1] - logs[0]
    return {v: cmap(0.85 - 0.8 * (lv - logs[0]) / span) for v, lv in zip(values, logs)}


@styled
def finetune_figure(epochs: pd.DataFrame, runs: pd.DataFrame, title: str | None = None,
                    metric: str = "val_top1_pct", labeller: Callable = display_name) -> Figure | None:
    """Validation accuracy per fine-tuning epoch: one panel per strategy, one line per compression."""
    table = finetune_curves(epochs, runs, metric)
    if table.empty:
        return None
    is_control = np.isclose(table["compression"].astype(float), 1.0)
    control, pruned = table[is_control], table[~is_control]
    order = strategy_order(pruned)
    if not order:
        return None
    ncols = 2 if len(order) in (2, 4) else min(len(order), 3)
    nrows = math.ceil(len(order) / ncols)
    fig, axes = new_figure(nrows, ncols, panel=(3.3, 2.3), legend_width=1.5)
    colors = compression_colors(pruned["compression"].astype(float).tolist())
    handles: dict[str, Line2D] = {}
    for index, ax in enumerate(axes.flat):
        if index >= len(order):
            ax.set_visible(False)
            continue
        strategy = order[index]
        for compression, rows in pruned[pruned["strategy"] == strategy].groupby("compression"):
            (line,) = ax.plot(rows["epoch"], rows["mean"], color=colors[float(compression)],
                              marker="o", markersize=2.5, linewidth=1.3)
            handles.setdefault(f"{float(compression):g}\u00d7", line)
        if not control.empty:
            means = control.groupby("epoch")["mean"].mean()
            (line,) = ax.plot(means.index, means.to_numpy(), color=CONTROL_COLOR, linestyle=":",
                              linewidth=1.2)
            handles.setdefault("unpruned control", line)
        ax.set_title(labeller(strategy), color=strategy_style(strategy)["color"])
        ax.set_xlabel("Fine-tuning epoch (0: just pruned)")
        if index % ncols == 0:
            ax.set_ylabel("Validation top-1 (%)" if metric == "val_top1_pct" else metric)
        ax.xaxis.get_major_locator().set_params(integer=True)
    # one y range for every panel, so accuracy reads the same across strategies
    low = float(table["mean"].min())
    high = float(table["mean"].max())
    margin = 0.04 * max(high - low, 1.0)
    for ax in axes.flat:
        ax.set_ylim(low - margin, high + margin)
        epochs_seen = table["epoch"]
        ax.set_xlim(float(epochs_seen.min()) - 0.15, float(epochs_seen.max()) + 0.15)
    ordered = sorted(handles, key=lambda h: (h == "unpruned control", _ratio(h)))
    if title:
        fig.suptitle(title)
    legend_outside(fig, [handles[h] for h in ordered], ordered, title="Compression")
    return fig


def _ratio(label: str) -> float:
    try:
        return float(label.rstrip("\u00d7"))
    except ValueError:
        return math.inf


def choose_layer_runs(layers: pd.DataFrame) -> tuple[float | None, pd.DataFrame]:
    """The layer rows of one run per strategy at the largest compression all strategies reached."""
    if layers.empty:
        return None, layers
    per_strategy = layers.groupby("strategy")["compression"].apply(lambda c: set(c.dropna()))
    common = set.intersection(*per_strategy.tolist()) if len(per_strategy) else set()
    compression = max(common) if common else float(layers["compression"].max())
    at = layers[layers["compression"] == compression]
    first = at.sort_values(["seed", "run_id"]).groupby("strategy")["run_id"].first()
    return compression, at[at["run_id"].isin(first.tolist())]


@styled
def layer_density_figure(layers: pd.DataFrame, title: str | None = None,
                         labeller: Callable = display_name) -> Figure | None:
    """Kept fraction of every prunable layer, one line per strategy, at one common compression."""
    layers = layers[~_is_control(layers)] if len(layers) else layers
    compression, chosen = choose_layer_runs(layers)
    if compression is None or chosen.empty:
        return None
    names = list(dict.fromkeys(chosen.sort_index()["name"]))
    width = min(max(3.6, 0.16 * len(names) + 1.5), 12.0)
    fig, axes = new_figure(1, 1, panel=(width, 2.8), legend_width=2.2)
    ax = axes[0, 0]
    positions = {name: i for i, name in enumerate(names)}
    handles: dict[str, Line2D] = {}
    for strategy in strategy_order(chosen):
        rows = chosen[chosen["strategy"] == strategy]
        st = strategy_style(strategy)
        (line,) = ax.plot([positions[n] for n in rows["name"]], rows["density"] * 100,
                          color=st["color"], marker=st["marker"], linestyle=st["linestyle"],
                          markersize=3.5, linewidth=1.2)
        handles[labeller(strategy)] = line
    overall = ax.axhline(100 / compression, color=DENSE_COLOR, linestyle="--", linewidth=1.0)
    handles[f"whole model: 1/{compression:g} = {100 / compression:.3g}%"] = overall
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=90 if len(names) > 6 else 0,
                       fontsize=6 if len(names) > 20 else 7)
    ax.set_xlim(-0.4, len(names) - 0.6)
    log_percent_axis(ax, [*(chosen["density"] * 100), 100 / compression])
    ax.set_xlabel("Prunable layer (forward order)")
    ax.set_ylabel("Weights kept (%, log scale)")
    ax.set_title(f"{title + ', ' if title else ''}compression {compression:g}")
    legend_outside(fig, list(handles.values()), list(handles), title="Strategy")
    return fig


def speed_points(runs: pd.DataFrame) -> pd.DataFrame:
    """Pruned runs with a measured speedup, per strategy and compression: seed means and stds of the
    measured speedup, the theoretical speedup and top-1 after fine-tuning, and the structured fraction."""
    columns = ["strategy", "compression", "measured", "measured_std", "theoretical", "top1", "top1_std",
               "structured", "n"]
    if "speedup_measured" not in runs or runs.empty:
        return pd.DataFrame(columns=columns)
    pruned = runs[~_is_control(runs)]
    data = pd.DataFrame({
        "strategy": pruned["strategy"], "compression": pd.to_numeric(pruned["compression"], errors="coerce"),
        "measured": pd.to_numeric(pruned["speedup_measured"], errors="coerce"),
        "theoretical": pd.to_numeric(pruned.get("speedup"), errors="coerce"),
        "top1": _y_values(pruned, "post", 1, False),
        "structured": analysis.is_structured(pruned).astype(float),
    })
    positive = np.isfinite(data["measured"]) & (data["measured"] > 0)
    data = data[positive & data["strategy"].notna()]
    if data.empty:
        return pd.DataFrame(columns=columns)
    data = data.assign(theoretical=data["theoretical"].where(np.isfinite(data["theoretical"])
                                                              & (data["theoretical"] > 0)))
    out = data.groupby(["strategy", "compression"], sort=True).agg(
        measured=("measured", "mean"), measured_std=("measured", "std"), theoretical=("theoretical", "mean"),
        top1=("top1", "mean"), top1_std=("top1", "std"), structured=("structured", "mean"),
        n=("measured", "size")).reset_index()
    return out.fillna({"measured_std": 0.0, "top1_std": 0.0})[columns]


@styled
def measured_speed_figure(runs: pd.DataFrame, title: str | None = None,
                          labeller: Callable = display_name) -> Figure | None:
    """Left: top-1 after fine-tuning against the measured speedup, one line per strategy (seed means,
    error bars +-1 std in both directions). Right: measured against theoretical speedup with the
    ideal y = x. Filled markers: structured runs (channels removed); hollow: unstructured masks."""
    points = speed_points(runs)
    if points.empty:
        return None
    order = strategy_order(points)
    fig, axes = new_figure(1, 2, panel=(3.6, 2.9), legend_width=2.4)
    left, right = axes[0, 0], axes[0, 1]
    handles: dict[str, Line2D] = {}
    for strategy in order:
        rows = points[points["strategy"] == strategy].sort_values("compression")
        st = strategy_style(strategy)
        faces = [st["color"] if s >= 0.5 else "white" for s in rows["structured"]]
        for ax, x, y, xerr, yerr in (
            (left, rows["measured"], rows["top1"], rows["measured_std"], rows["top1_std"]),
            (right, rows["theoretical"], rows["measured"], None, rows["measured_std"]),
        ):
            keep = np.isfinite(x.to_numpy(float)) & np.isfinite(y.to_numpy(float))
            if not keep.any():
                continue
            ax.errorbar(x[keep], y[keep], xerr=None if xerr is None else xerr[keep], yerr=yerr[keep],
                        color=st["color"], linestyle=st["linestyle"] if ax is left else "none",
                        linewidth=1.2, elinewidth=0.9, capsize=2, marker="none")
            ax.scatter(x[keep], y[keep], marker=st["marker"], s=24, zorder=3, linewidths=1.1,
                       facecolors=[f for f, k in zip(faces, keep) if k], edgecolors=st["color"])
        handles[labeller(strategy)] = Line2D([], [], color=st["color"], marker=st["marker"],
                                             linestyle=st["linestyle"], markersize=5,
                                             markerfacecolor=st["color"] if st["color"] in faces else "white")
    kinds = set((points["structured"] >= 0.5).tolist())
    if len(kinds) > 1:  # say what filled and hollow mean only when both appear
        handles["filled: structured (channels removed)"] = Line2D(
            [], [], color=DENSE_COLOR, marker="o", linestyle="none", markersize=5)
        handles["hollow: unstructured (masks)"] = Line2D(
            [], [], color=DENSE_COLOR, marker="o", markerfacecolor="white", linestyle="none", markersize=5)
    # left: accuracy against time, with the unpruned reference and the dense model's speed
    references: dict[str, Line2D] = {}
    controls = runs[_is_control(runs)]
    _reference(left, runs, controls, "post", 1, False, references)
    handles.update(references)
    handles["dense model's speed (1\u00d7)"] = left.axvline(1.0, color=DENSE_COLOR, linestyle="-.",
                                                          linewidth=0.9, zorder=1)
    log2_axis(left, [*points["measured"], 1.0])
    left.set_xlabel("Measured speedup (dense / pruned latency)")
    left.set_ylabel("Top-1 after fine-tuning (%)")
    left.set_title("Accuracy against measured speed")
    # right: measured against theoretical on one square log2 scale, the ideal as the diagonal
    span = [v for v in (*points["theoretical"], *points["measured"], 1.0) if np.isfinite(v) and v > 0]
    log2_axis(right, span)
    log2_axis(right, span, which="y")
    lo, hi = right.get_xlim()
    handles["ideal: measured = theoretical"] = right.plot([lo, hi], [lo, hi], color=DENSE_COLOR,
                                                          linestyle="--", linewidth=1.0, zorder=1)[0]
    right.axhline(1.0, color=DENSE_COLOR, linestyle="-.", linewidth=0.9, zorder=1)
    right.set_xlim(lo, hi)
    right.set_xlabel("Theoretical speedup (dense / remaining MACs)")
    right.set_ylabel("Measured speedup")
    right.set_title("Measured against theoretical")
    if title:
        fig.suptitle(title)
    legend_outside(fig, list(handles.values()), list(handles), title="Strategy")
    return fig
