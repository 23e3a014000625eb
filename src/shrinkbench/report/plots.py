"""Plots of a store's runs: accuracy (and its change) against compression and speedup, layer densities."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .names import pretty_dataset, pretty_model
from .style import (DENSE_COLOR, legend_outside, log2_axis, log_percent_axis, new_figure, style_for,
                    styled)

SPLIT = "test"  # the reported figures; validation served model selection
STAGES = (("pre", "before fine-tuning"), ("post", "after fine-tuning"))
TOPK = ((1, "Top-1"), (5, "Top-5"))


@dataclass(frozen=True)
class Axis:
    """An x axis of the accuracy plots: the metric column and its label."""

    column: str
    label: str
    slug: str


X_AXES: dict[str, Axis] = {
    "compression": Axis("compression_ratio", "Compression ratio (total / nonzero params)",
                        "compression"),
    "speedup": Axis("speedup", "Theoretical speedup (dense / sparse MACs)", "speedup"),
}


def pair_title(dataset: str, model: str) -> str:
    """'ResNet-56 on CIFAR-10' from our names."""
    return f"{pretty_model(model)} on {pretty_dataset(dataset)}"


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
    """Strategies in a stable order (sorted), so a strategy keeps its colour across figures."""
    return sorted(runs["strategy"].dropna().astype(str).unique())


def _y_values(runs: pd.DataFrame, stage: str, k: int, change: bool) -> pd.Series:
    """Accuracy (or its change from the dense model) in percent / percentage points."""
    metric = f"{stage}_{SPLIT}_top{k}_pct"
    if change and f"delta_{metric}" in runs:  # from results.analysis.accuracy_change
        return pd.to_numeric(runs[f"delta_{metric}"], errors="coerce")
    acc = pd.to_numeric(runs.get(metric), errors="coerce")
    if change:
        acc = acc - pd.to_numeric(runs.get(f"dense_{SPLIT}_top{k}_pct"), errors="coerce")
    return acc


def draw_curves(ax: Axes, table: pd.DataFrame, order: Sequence[str], labeller=str,
                band: bool = True) -> dict[str, Line2D]:
    """One line per strategy through the means, a shaded band of +-1 std; returns label -> handle."""
    handles: dict[str, Line2D] = {}
    for index, strategy in enumerate(order):
        rows = table[table["strategy"] == strategy]
        if rows.empty:
            continue
        st = style_for(index)
        (line,) = ax.plot(rows["x"], rows["mean"], color=st["color"], marker=st["marker"],
                          linestyle=st["linestyle"], markersize=4, linewidth=1.4)
        if band and (rows["std"] > 0).any():
            ax.fill_between(rows["x"], rows["mean"] - rows["std"], rows["mean"] + rows["std"],
                            color=st["color"], alpha=0.18, linewidth=0)
        handles[labeller(strategy)] = line
    return handles


@styled
def accuracy_figure(runs: pd.DataFrame, x: str = "compression", change: bool = False,
                    title: str | None = None, labeller=str) -> Figure:
    """2x2 panels (top-1/top-5 x before/after fine-tuning) of accuracy or its change against `x`."""
    axis = X_AXES[x]
    order = strategy_order(runs)
    fig, axes = new_figure(2, 2)
    handles: dict[str, Line2D] = {}
    xs = pd.to_numeric(runs.get(axis.column), errors="coerce")
    for row, (k, k_name) in enumerate(TOPK):
        for col, (stage, stage_name) in enumerate(STAGES):
            ax = axes[row, col]
            data = runs.assign(_x=xs, _y=_y_values(runs, stage, k, change))
            handles.update(draw_curves(ax, curves(data, "_x", "_y"), order, labeller))
            _dense_reference(ax, runs, k, change, handles)
            log2_axis(ax, xs)
            ax.set_title(f"{k_name}, {stage_name}")
            ax.set_xlabel(axis.label)
            ax.set_ylabel(f"Change in {k_name.lower()} accuracy (pp)" if change
                          else f"{k_name} accuracy (%)")
    if title:
        fig.suptitle(title)
    legend_outside(fig, list(handles.values()), list(handles), title="Strategy")
    return fig


def _dense_reference(ax: Axes, runs: pd.DataFrame, k: int, change: bool,
                     handles: dict[str, Line2D]) -> None:
    """A horizontal line at the dense model's accuracy (0 for changes)."""
    dense = pd.to_numeric(runs.get(f"dense_{SPLIT}_top{k}_pct"), errors="coerce").dropna()
    if change:
        controls = runs.get("delta_reference")
        by_control = controls is not None and (controls == "control").all()
        level, label = 0.0, "unpruned control (c = 1)" if by_control else "dense model"
    elif not dense.empty:
        level, label = float(dense.mean()), "dense model"
    else:
        return
    line = ax.axhline(level, color=DENSE_COLOR, linestyle="--", linewidth=1.0, zorder=1)
    handles.setdefault(label, line)


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
def layer_density_figure(layers: pd.DataFrame, title: str | None = None, labeller=str) -> Figure | None:
    """Kept fraction of every prunable layer, one line per strategy, at one common compression."""
    compression, chosen = choose_layer_runs(layers)
    if compression is None or chosen.empty:
        return None
    names = list(dict.fromkeys(chosen.sort_index()["name"]))
    width = min(max(3.4, 0.16 * len(names) + 1.5), 14.0)
    fig, axes = new_figure(1, 1, panel=(width, 3.0))
    ax = axes[0, 0]
    positions = {name: i for i, name in enumerate(names)}
    handles: dict[str, Line2D] = {}
    for index, strategy in enumerate(strategy_order(chosen)):
        rows = chosen[chosen["strategy"] == strategy]
        st = style_for(index)
        (line,) = ax.plot([positions[n] for n in rows["name"]], rows["density"] * 100,
                          color=st["color"], marker=st["marker"], linestyle=st["linestyle"],
                          markersize=3.5, linewidth=1.2)
        handles[labeller(strategy)] = line
    overall = ax.axhline(100 / compression, color=DENSE_COLOR, linestyle="--", linewidth=1.0)
    handles[f"whole model: 1/{compression:g} = {100 / compression:.3g}%"] = overall
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=90 if len(names) > 6 else 0,
                       fontsize=6 if len(names) > 20 else 7)
    ax.set_xlim(-0.5, len(names) - 0.5)
    log_percent_axis(ax, chosen["density"] * 100)
    ax.set_xlabel("Prunable layer (forward order)")
    ax.set_ylabel("Weights kept (%, log scale)")
    ax.set_title(f"{title + ', ' if title else ''}compression {compression:g}")
    legend_outside(fig, list(handles.values()), list(handles), title="Strategy")
    return fig
