"""The report's Measured speed section: the figure, the table of latencies, why masks do not run
faster, the runs that got slower, and nothing of it for a store from before latencies were timed."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba

from shrinkbench.report import build_report, write_report
from shrinkbench.report.document import Heading, Image, Table, Text
from shrinkbench.report.plots import measured_speed_figure, speed_points
from shrinkbench.report.style import strategy_style
from shrinkbench.report.tables import measured_table, summary_table
from shrinkbench.results import load

from report_synthetic import build_store

SLOW_RUN = "lenet300-global_magnitude-8-1"
WHY = "Why unstructured pruning does not run faster"


@pytest.fixture(scope="module")
def measured_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Masks (GlobalMagWeight) and removed channels (channel_l1), 2 seeds, one masked run slower than dense."""
    return build_store(tmp_path_factory.mktemp("measured") / "out", seeds=(0, 1), compressions=(1, 2, 4, 8),
                       failed=0, strategies={"global_magnitude": 0.01, "channel_l1": 0.03},
                       structured=("channel_l1",), slow={SLOW_RUN: 0.8})


@pytest.fixture(scope="module")
def markdown(measured_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report(measured_dir, tmp_path_factory.mktemp("md") / "report.md", fmt="md")


@pytest.fixture(scope="module")
def html_text(measured_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = write_report(measured_dir, tmp_path_factory.mktemp("html") / "report.html")
    return path.read_text(encoding="utf-8")


def _section(text: str, start: str, end: str) -> str:
    return text[text.index(start):text.index(end)]


def _expected_row(runs: pd.DataFrame, strategy: str, compression: float) -> list[str]:
    """Theoretical speedup, measured speedup (median [min, max]) and latencies, computed here."""
    at = runs[(runs["strategy"] == strategy) & (runs["compression"] == compression)]
    measured = at["speedup_measured"]
    return [f"{at['speedup'].median():.2f}",
            f"{measured.median():.2f} [{measured.min():.2f}, {measured.max():.2f}]",
            f"{at['latency_dense_ms'].median():.2f}", f"{at['latency_ms'].median():.2f}"]


def test_markdown_section_table_flags_and_explanation(measured_dir, markdown):
    text = markdown.read_text(encoding="utf-8")
    runs = load(measured_dir)
    section = _section(text, "## Measured speed", "## Setup")
    assert text.index("## Tables") < text.index("## Measured speed")
    header = ("| Strategy | Compression | Seeds | Pruning | Channels kept (%) | Theoretical speedup | "
              "Measured speedup | Dense latency (ms) | Pruned latency (ms) | Batch | Threads | Device |")
    assert header in section
    mag = _expected_row(runs, "GlobalMagWeight", 8.0)
    assert mag[1] == "0.89 [0.80, 0.99]"  # the slow seed (0.8) and a seed at the dense speed
    assert f"| GlobalMagWeight | 8 | 2 | unstructured |  | {' | '.join(mag)} | 32 | 1 | cpu |" in section
    chan = _expected_row(runs, "channel_l1", 4.0)
    assert chan[:2] == ["4.00", f"{4 ** 0.7:.2f} [{4 ** 0.7:.2f}, {4 ** 0.7:.2f}]"]
    assert f"| channel_l1 | 4 | 2 | structured | 50.0 | {' | '.join(chan[:3])} | 0.758 | 32 | 1 | cpu |" in section
    assert "| GlobalMagWeight | 1 | 2 | none (control) |" in section
    # why masks do not run faster, with the numbers of these runs
    assert WHY in section and "keep every tensor's shape" in section
    masks = runs[(runs["strategy"] == "GlobalMagWeight") & (runs["compression"] > 1)]["speedup_measured"]
    assert ("unstructured masks (6 pruned runs here)" in section
            and f"median {masks.median():.2f}\u00d7, from 0.80\u00d7 to {masks.max():.2f}\u00d7" in section)
    assert "Only structured (channel) pruning" in section and "sparse kernels" in section
    assert "not deterministic" in section
    # the one run slower than its dense model, named with both speedups and its latencies
    slow = runs.set_index("run_id").loc[SLOW_RUN]
    assert (f"| {SLOW_RUN} | mnist | lenet300 | GlobalMagWeight | 8 | 1 | {slow['speedup']:.2f} | 0.80 | "
            "2.00 | 2.50 |") in section
    assert section.count(f"| {SLOW_RUN} |") == 1 and "1 pruned run with theoretical speedup > 1.05" in section
    summary = _section(text, "## Summary", "## Plots")
    assert "Measured speed: 1 pruned run needs fewer multiply-accumulates than its dense model" in summary
    # the figure: PNG and SVG beside the Markdown
    stem = markdown.parent / "report_files" / "mnist-lenet300-measured-speed"
    assert stem.with_suffix(".png").read_bytes().startswith(b"\x89PNG")
    assert b"<svg" in stem.with_suffix(".svg").read_bytes()[:2000]
    assert "](report_files/mnist-lenet300-measured-speed.png)" in section


def test_html_section_and_summary(html_text):
    section = _section(html_text, '<h2 id="measured-speed">', '<h2 id="setup">')
    assert section.count("<img") == 1 and "data:image/svg+xml;base64," in section
    assert WHY in section and "Pruned runs slower than the dense model" in section
    assert f">{SLOW_RUN}</td>" in section
    assert re.search(r'<td class="num">0\.89 \[0\.80, 0\.99\]</td>', section)  # right-aligned number
    summary = _section(html_text, '<h2 id="summary">', '<h2 id="plots">')
    assert "1 pruned run needs fewer multiply-accumulates" in summary
    assert '<a href="#measured-speed">Measured speed</a>' in html_text  # in the contents


def test_both_speedups_are_named_where_both_appear(measured_dir):
    runs = load(measured_dir)
    table = summary_table(runs[runs["strategy"] == "GlobalMagWeight"])
    columns = list(table.columns)
    assert columns.index("Theoretical speedup") + 1 == columns.index("Measured speedup")
    assert "Speedup" not in columns
    row = table[table["Compression"] == "8"].iloc[0]
    at = runs[(runs["strategy"] == "GlobalMagWeight") & (runs["compression"] == 8)]["speedup_measured"]
    assert row["Measured speedup"] == f"{at.mean():.2f} \u00b1 {at.std():.2f}"
    doc = build_report(measured_dir)
    pareto = next(b for b in doc.blocks if isinstance(b, Table) and "Pareto" in b.caption).frame
    assert {"Theoretical speedup", "Measured speedup"} <= set(pareto.columns)
    auc = next(b for b in doc.blocks if isinstance(b, Table) and "area under" in b.caption).frame
    assert "Theoretical speedup range" in auc.columns


def test_old_store_has_no_measured_section(store_dir):
    doc = build_report(store_dir)  # the shared store: written before latencies were timed
    headings = [b.text for b in doc.blocks if isinstance(b, Heading)]
    assert "Measured speed" not in headings
    texts = " ".join(b.text for b in doc.blocks if isinstance(b, Text))
    assert "Measured speed" not in texts and WHY not in texts
    tables = [b.frame for b in doc.blocks if isinstance(b, Table)]
    assert not any("Measured speedup" in t.columns or "Theoretical speedup" in t.columns for t in tables)
    assert any("Speedup" in t.columns for t in tables)  # one kind of speedup: named as before
    assert not any("measured" in i.name for i in doc.images())


def test_only_structured_runs_need_no_explanation(tmp_path):
    out = build_store(tmp_path / "out", seeds=(0,), compressions=(1, 4), failed=0,
                      strategies={"channel_l1": 0.03}, structured=("channel_l1",), sparse=True)
    doc = build_report(out)
    texts = " ".join(b.text for b in doc.blocks if isinstance(b, Text))
    assert WHY not in texts and "Structured pruning (1 pruned run, channels removed)" in texts
    assert "No run has theoretical speedup > 1.05" in texts
    table = next(b for b in doc.blocks if isinstance(b, Table) and "forward pass" in b.caption).frame
    row = table[table["Compression"] == "4"].iloc[0]
    assert row["Measured speedup, sparse kernels"] == "2.00"  # 0.5 x theoretical 4
    assert row["Pruned latency, sparse kernels (ms)"] == "1.00"
    assert row["Measured speedup"] == f"{4 ** 0.7:.2f}"  # one seed: no range


def test_structured_absent_counts_as_masks(tmp_path):
    out = build_store(tmp_path / "out", seeds=(0,), compressions=(1, 4), failed=0,
                      strategies={"global_magnitude": 0.01}, structured=())
    with sqlite3.connect(out / "results.sqlite") as conn:  # a metrics writer without `structured`
        conn.execute("UPDATE runs SET metrics = json_remove(metrics, '$.structured')")
    assert "structured" not in load(out).columns
    doc = build_report(out)
    assert WHY in " ".join(b.text for b in doc.blocks if isinstance(b, Text))
    table = next(b for b in doc.blocks if isinstance(b, Table) and "forward pass" in b.caption).frame
    assert list(table["Pruning"]) == ["none (control)", "unstructured"]
    assert "Channels kept (%)" not in table.columns


def test_speed_points_and_figure(measured_dir):
    runs = load(measured_dir)
    points = speed_points(runs).set_index(["strategy", "compression"])
    assert 1.0 not in points.index.get_level_values("compression")  # the control is the reference
    at = runs[(runs["strategy"] == "GlobalMagWeight") & (runs["compression"] == 8)]
    point = points.loc[("GlobalMagWeight", 8.0)]
    assert point["measured"] == pytest.approx(at["speedup_measured"].mean())
    assert point["measured_std"] == pytest.approx(at["speedup_measured"].std())
    assert point["top1"] == pytest.approx(at["post_test_top1_pct"].mean())
    assert point["structured"] == 0.0 and points.loc[("channel_l1", 8.0), "structured"] == 1.0
    fig = measured_speed_figure(runs)
    left, right = fig.axes[:2]
    assert left.get_xlabel().startswith("Measured speedup") and left.get_ylabel().startswith("Top-1")
    assert right.get_xlabel().startswith("Theoretical speedup") and right.get_ylabel() == "Measured speedup"
    # markers at the seed means, in the strategy's fixed colour; masks hollow, channels filled
    markers = [c for c in left.collections if len(c.get_offsets()) == 3]  # 3 compressions each
    assert sorted(float(x) for c in markers for x, _ in c.get_offsets()) == pytest.approx(
        sorted(points["measured"]))
    for strategy, face in (("GlobalMagWeight", "white"), ("channel_l1", None)):
        color = to_rgba(strategy_style(strategy)["color"])
        mine = [c for c in markers if tuple(c.get_edgecolors()[0]) == color]
        assert len(mine) == 1
        assert tuple(mine[0].get_facecolors()[0]) == to_rgba(face or color)
    ideal = [line for line in right.get_lines() if line.get_linestyle() == "--"]
    assert len(ideal) == 1 and np.allclose(ideal[0].get_xdata(), ideal[0].get_ydata())  # y = x
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[:2] == ["GlobalMagWeight", "channel_l1"]
    assert "ideal: measured = theoretical" in labels and "hollow: unstructured (masks)" in labels


def test_broken_timings_are_left_out(measured_dir):
    runs = load(measured_dir)
    broken = runs.copy()
    broken.loc[broken["compression"] == 8, "speedup_measured"] = np.array([np.inf, -1.0, np.nan, 0.0])
    table = measured_table(broken)
    assert "8" not in set(table["Compression"]) and "4" in set(table["Compression"])
    assert 8.0 not in set(speed_points(broken)["compression"])
    assert measured_speed_figure(broken) is not None
    nothing = runs.assign(speedup_measured=np.nan)
    assert measured_table(nothing).empty and measured_speed_figure(nothing) is None
    doc = build_report(measured_dir)
    assert [i.name for i in doc.images() if "measured" in i.name] == ["mnist-lenet300-measured-speed"]
    assert all(isinstance(i, Image) for i in doc.images())
