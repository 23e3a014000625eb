"""Plots: curve statistics, the choice of runs for layer densities, axes and legends."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shrinkbench.report.plots import accuracy_figure, choose_layer_runs, curves, layer_density_figure
from shrinkbench.report.style import PALETTE, data_uri, log2_axis, new_figure, style_for
from shrinkbench.results import load, load_layers


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
    fig = accuracy_figure(runs, x="speedup", change=False, title="t")
    assert len(fig.axes) == 4
    assert not any(ax.get_legend() for ax in fig.axes)  # one legend, outside the panels
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == ["GlobalMagWeight", "LayerMagWeight", "RandomPruning", "dense model"]
    ax = fig.axes[1]  # top-1 after fine-tuning
    assert ax.get_xscale() == "log" and ax.get_xlabel().startswith("Theoretical speedup")
    assert ax.get_ylabel() == "Top-1 accuracy (%)" and ax.get_title() == "Top-1, after fine-tuning"
    lines = ax.get_lines()
    assert len(lines) == 4  # 3 strategies + the dense reference
    assert lines[-1].get_ydata()[0] == pytest.approx(98.0)  # the dense accuracy, in percent
    random = runs[runs["strategy"] == "RandomPruning"].groupby("compression")["post_test_top1_pct"].mean()
    assert lines[2].get_ydata() == pytest.approx(random.to_numpy())
    assert lines[0].get_color().lower() == PALETTE[0].lower()
    assert data_uri(fig).startswith("data:image/png;base64,")


def test_change_figure_is_relative_to_the_dense_model(store_dir):
    runs = load(store_dir)
    fig = accuracy_figure(runs, x="compression", change=True)
    ax = fig.axes[3]  # top-5 after fine-tuning
    assert ax.get_ylabel() == "Change in top-5 accuracy (pp)"
    expected = (runs["post_test_top5_pct"] - runs["dense_test_top5_pct"])[runs["strategy"] == "RandomPruning"]
    expected = expected.groupby(runs["compression"]).mean()
    assert ax.get_lines()[2].get_ydata() == pytest.approx(expected.to_numpy())


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


def test_log2_axis_ticks_cover_powers_of_two():
    fig, axes = new_figure()
    ax = axes[0, 0]
    ax.plot([1.5, 20.0], [0, 1])
    log2_axis(ax, [1.5, 20.0, np.nan])
    assert list(ax.get_xticks()) == [1, 2, 4, 8, 16, 32]
    assert [t.get_text() for t in ax.get_xticklabels()][:3] == ["1\u00d7", "2\u00d7", "4\u00d7"]


def test_series_styles_differ_in_colour_and_marker():
    styles = [style_for(i) for i in range(8)]
    assert len({s["color"] for s in styles}) == 8 and len({s["marker"] for s in styles}) == 8
