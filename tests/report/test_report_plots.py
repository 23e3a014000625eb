"""Plots: curve statistics, fine-tuning curves, the choice of runs for layer densities, axes, styles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shrinkbench.report.plots import (accuracy_figure, choose_layer_runs, curves, finetune_curves,
                                     finetune_figure, layer_density_figure)
from shrinkbench.report.style import (STRATEGY_STYLES, USER_COLORS, USER_MARKERS, data_uri, log2_axis,
                                     log_percent_axis, new_figure, strategy_style, style_for)
from shrinkbench.results import load, load_epochs, load_layers


def test_curves_mean_std_per_operating_point():
    runs = pd.DataFrame({
        "strategy": ["a", "a", "a", "a", "b"],
        "compression": [2.0, 2.0, 4.0, 4.0, 2.0],
        "x": [2.0, 2.2, 4.0, np.nan, 1.8],
        "y": [10.0, 14.0, 5.0, 7.0, 3.0],
    })
    table = curves(runs, "x", "y")
    assert table[["strategy", "compression", "n"]].values.tolist() == [["a", 2.0, 2], ["a", 4.0, 1],
                                                                       ["b", 2.0, 1]]
    assert table["x"].tolist() == pytest.approx([2.1, 4.0, 1.8])
    assert table["mean"].tolist() == pytest.approx([12.0, 5.0, 3.0])  # the nan-x run is left out
    assert table["std"].tolist() == pytest.approx([np.std([10, 14], ddof=1), 0.0, 0.0])


def test_accuracy_figure_axes_and_legend(store_dir):
    runs = load(store_dir)
    fig = accuracy_figure(runs, k=1, title="t")
    assert len(fig.axes) == 4  # (compression, speedup) x (before, after fine-tuning)
    assert not any(ax.get_legend() for ax in fig.axes)  # one legend, outside the panels
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == ["GlobalMagWeight", "LayerMagWeight", "RandomPruning", "dense model",
                      "unpruned control, fine-tuned (c = 1)"]
    ax = fig.axes[1]  # top-1 after fine-tuning, against compression
    assert ax.get_xscale() == "log" and ax.get_xlabel().startswith("Compression ratio")
    assert ax.get_ylabel() == "Top-1 accuracy (%)" and ax.get_title() == "Top-1, after fine-tuning"
    assert fig.axes[3].get_xlabel().startswith("Theoretical speedup")
    lines = ax.get_lines()
    assert len(lines) == 4  # 3 strategies + the control reference
    controls = runs[runs["compression"] == 1]["post_test_top1_pct"].mean()
    assert lines[-1].get_ydata()[0] == pytest.approx(controls)  # the unpruned control, in percent
    assert fig.axes[0].get_lines()[-1].get_ydata()[0] == pytest.approx(98.0)  # dense model, before FT
    random = runs[(runs["strategy"] == "RandomPruning") & (runs["compression"] > 1)]
    random = random.groupby("compression")["post_test_top1_pct"].mean()
    assert lines[2].get_ydata() == pytest.approx(random.to_numpy())  # the control is not a point
    assert lines[0].get_color().lower() == STRATEGY_STYLES["GlobalMagWeight"][0].lower()
    assert lines[2].get_color().lower() == STRATEGY_STYLES["RandomPruning"][0].lower()
    assert data_uri(fig).startswith("data:image/svg+xml;base64,")
    assert data_uri(fig, "png").startswith("data:image/png;base64,")


def test_change_figure_is_relative_to_the_dense_model(store_dir):
    runs = load(store_dir)
    fig = accuracy_figure(runs, k=5, change=True, xs=("compression",))
    assert len(fig.axes) == 2
    ax = fig.axes[1]  # top-5 after fine-tuning
    assert ax.get_ylabel() == "Change in top-5 (pp)"
    pruned = runs[runs["compression"] > 1]
    expected = (pruned["post_test_top5_pct"] - pruned["dense_test_top5_pct"])[pruned["strategy"] == "RandomPruning"]
    expected = expected.groupby(pruned["compression"]).mean()
    assert ax.get_lines()[2].get_ydata() == pytest.approx(expected.to_numpy())


def test_finetune_curves_start_right_after_pruning(store_dir):
    runs = load(store_dir)
    epochs = load_epochs(store_dir, kind="prune")
    table = finetune_curves(epochs, runs)
    at = table[(table["strategy"] == "RandomPruning") & (table["compression"] == 8.0)]
    assert at["epoch"].tolist() == [0, 1, 2]
    chosen = runs[(runs["strategy"] == "RandomPruning") & (runs["compression"] == 8.0)]
    assert at["mean"].iloc[0] == pytest.approx(chosen["pre_val_top1_pct"].mean())  # epoch 0: just pruned
    assert at["mean"].iloc[-1] == pytest.approx(chosen["post_val_top1_pct"].mean())  # the synthetic runs end there
    assert at["n"].tolist() == [2, 2, 2]
    fig = finetune_figure(epochs, runs, title="t")
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["GlobalMagWeight", "LayerMagWeight", "RandomPruning"]  # one panel per strategy
    ax = fig.axes[2]
    assert len(ax.get_lines()) == 3 + 1  # compressions 2, 4, 8 and the unpruned control
    colours = [line.get_color() for line in ax.get_lines()[:3]]
    assert len({tuple(c) for c in colours}) == 3  # a sequential colour per compression
    assert [ax.get_ylim() for ax in fig.axes[:3]] == [fig.axes[0].get_ylim()] * 3  # one y range
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["2\u00d7", "4\u00d7", "8\u00d7", "unpruned control"]
    assert finetune_figure(epochs.iloc[0:0], runs) is None


def test_layer_runs_at_largest_common_compression(store_dir):
    layers = load_layers(store_dir)
    partial = layers[~((layers["strategy"] == "RandomPruning") & (layers["compression"] == 8))]
    compression, chosen = choose_layer_runs(partial)
    assert compression == 4.0
    assert sorted(chosen["run_id"].unique()) == [
        "lenet300-global_magnitude-4-0", "lenet300-layer_magnitude-4-0", "lenet300-random-4-0"]
    fig = layer_density_figure(layers)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["fc1", "fc2", "fc3"]
    assert ax.get_lines()[1].get_ydata() == pytest.approx([12.5, 12.5, 12.5], rel=1e-3)
    assert ax.get_yscale() == "log"
    assert layer_density_figure(layers.iloc[0:0]) is None


def test_log2_axis_ends_at_the_data():
    fig, axes = new_figure()
    ax = axes[0, 0]
    ax.plot([1.5, 20.0], [0, 1])
    log2_axis(ax, [1.5, 20.0, np.nan])
    assert list(ax.get_xticks()) == [2, 4, 8, 16]
    assert [t.get_text() for t in ax.get_xticklabels()][:3] == ["2\u00d7", "4\u00d7", "8\u00d7"]
    lo, hi = ax.get_xlim()
    assert 1.3 < lo < 1.5 and 20 < hi < 23  # a little padding, not an empty octave
    ax = new_figure()[1][0, 0]
    log2_axis(ax, [2.0, 32.01])  # achieved compressions overshoot a little: still ends at 32x
    assert list(ax.get_xticks()) == [2, 4, 8, 16, 32] and ax.get_xlim()[1] < 40
    ax = new_figure()[1][0, 0]
    log2_axis(ax, [1.1, 1.4])  # no power of two inside: the ends are labelled
    assert len(ax.get_xticks()) >= 2 and ax.get_xlim()[1] < 2


def test_log_percent_axis_ends_at_the_data():
    ax = new_figure()[1][0, 0]
    log_percent_axis(ax, [0.43, 3.1, 100.0])
    lo, hi = ax.get_ylim()
    assert 0.3 < lo < 0.43 and 100 < hi <= 130


def test_series_styles_differ_in_colour_and_marker():
    styles = [style_for(i) for i in range(8)]
    assert len({s["color"] for s in styles}) == 8 and len({s["marker"] for s in styles}) == 8


def test_strategy_styles_are_fixed_by_name():
    builtins = ["GlobalMagWeight", "LayerMagWeight", "GlobalMagGrad", "LayerMagGrad", "GlobalMagAct",
                "LayerMagAct", "RandomPruning"]
    styles = [strategy_style(name) for name in builtins]
    assert len({s["color"] for s in styles}) == len(builtins)
    assert len({s["marker"] for s in styles}) == len(builtins)
    assert strategy_style("global_magnitude") == strategy_style("GlobalMagWeight")  # canonical names too
    assert strategy_style("random")["color"] == "#D55E00"
    user = strategy_style("my_pruner")
    assert user == strategy_style("my_pruner")  # a user strategy's style depends on its name alone
    assert user["color"] not in {s["color"] for s in styles} and user["linestyle"] == "--"
    assert user["color"] in USER_COLORS and user["marker"] in USER_MARKERS
