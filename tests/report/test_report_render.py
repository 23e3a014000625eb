"""The report of a results folder: self-contained HTML, Markdown with image files, clear errors."""

from __future__ import annotations

import base64
import html
import re
import sqlite3

import pytest

from shrinkbench.errors import ConfigError, DataError, StoreError
from shrinkbench.report import build_report, write_report
from shrinkbench.report.document import Image
from shrinkbench.results import load
from shrinkbench.results.checks import RULES
from shrinkbench.results.store import Store

from test_report_literature import write_survey

PNG = b"\x89PNG\r\n\x1a\n"


def expected_cell(store_dir, strategy: str, compression: float, column: str) -> str:
    """The summary-table cell of one operating point, computed here from the DataFrame."""
    runs = load(store_dir)
    values = runs[(runs["strategy"] == strategy) & (runs["compression"] == compression)][column]
    assert len(values) == 2
    return f"{values.mean():.2f} \u00b1 {values.std(ddof=1):.2f}"


def test_html_report_is_self_contained_and_complete(store_dir, tmp_path):
    path = write_report(store_dir, tmp_path / "report.html")
    assert path == tmp_path / "report.html"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    sources = re.findall(r'\bsrc="([^"]*)"', text)
    assert len(sources) == 3  # top-1 accuracy, fine-tuning curves, layer densities (MNIST: no top-5)
    assert all(s.startswith("data:image/svg+xml;base64,") for s in sources)
    assert b"<svg" in base64.b64decode(sources[0].split(",", 1)[1])[:1000]
    assert all(h.startswith("#") for h in re.findall(r'\bhref="([^"]*)"', text))
    for external in ("http:", "https:", "<link", "<script", "url(", "@import"):
        assert external not in text
    for description, _ in RULES.values():  # the checklist
        assert html.escape(description) in text
    assert expected_cell(store_dir, "GlobalMagWeight", 8.0, "post_test_top1_pct") in text
    assert expected_cell(store_dir, "RandomPruning", 4.0, "pre_test_top1_pct") in text
    assert "GlobalMagWeight" in text and "RandomPruning" in text
    # failed runs, with their error escaped
    assert "failed-0" in text and "failed-1" in text
    assert "compression 64 cannot be reached &lt;&amp;&gt;" in text and "<&>" not in text
    assert "Traceback (most recent call last)" in text
    # setup: the grid, the budgets and the settings not at their defaults (finetune.lr 0.01 is one)
    cells = lambda row: re.sub(r"<td[^>]*>", "<td>", row)  # noqa: E731  (alignment classes aside)
    assert "<td>Fine-tuning epochs (finetune.epochs)</td><td>2</td><td>4</td>" in cells(text)
    assert "<td>data.batch_size</td><td>128</td><td></td>" in cells(text)  # no default known
    setup = text[text.index('<h2 id="setup">'):text.index('<h2 id="checklist">')]
    assert "finetune.lr" not in setup and "finetune.optimizer" not in setup
    assert "The other 2 settings have their default values" in setup  # finetune.lr, finetune.optimizer
    assert "testhost" in text and "2.3.0" in text


def test_markdown_report_writes_its_images(store_dir, tmp_path):
    out = tmp_path / "paper" / "appendix.md"
    (out.parent / "appendix_files").mkdir(parents=True)
    (out.parent / "appendix_files" / "stale.png").write_bytes(b"old")
    path = write_report(store_dir, out, fmt="md")
    text = path.read_text(encoding="utf-8")
    links = re.findall(r"\]\((appendix_files/[^)]+)\)", text)
    pngs = [link for link in links if link.endswith(".png")]
    svgs = [link for link in links if link.endswith(".svg")]
    assert len(pngs) == 3 and len(svgs) == 3
    for link in pngs:
        assert (out.parent / link).read_bytes().startswith(PNG)
    for link in svgs:
        assert b"<svg" in (out.parent / link).read_bytes()[:2000]
    assert sorted(p.name for p in (out.parent / "appendix_files").iterdir()) == sorted(
        link.split("/")[1] for link in links)  # the stale file is gone
    assert "## Checklist" in text and "## Failed runs" in text
    assert "| \u2713 |" in text or "| \u2717 |" in text
    assert expected_cell(store_dir, "LayerMagWeight", 2.0, "post_test_top1_pct") in text
    assert "Top-5" not in text  # MNIST has 10 classes
    assert "data:image" not in text


def test_literature_overlay_matches_our_names(store_dir, tmp_path):
    rows = [
        {"Name": "1", "Paper": "p-one", "Dataset": "MNIST", "Model": "LeNet-300-100", "savedParams": "90%",
         "dTop1": "-0.10%"},
        {"Name": "2", "Paper": "p-two", "Dataset": "MNIST", "Model": "LeNet-300-100", "keptParams": "5%",
         "Top1": "97.9%", "OrigTop1": "98.4%"},
        {"Name": "3", "Paper": "p-two", "Dataset": "CIFAR-10", "Model": "ResNet-56", "savedParams": "50%",
         "dTop1": "0.1%"},
    ]
    doc = build_report(store_dir, literature=write_survey(tmp_path / "survey", rows))
    overlay = [b for b in doc.images() if b.name.startswith("literature-")]
    assert [b.name for b in overlay] == ["literature-mnist-lenet300"]
    assert "2 published results from 2 papers" in overlay[0].caption
    axes = overlay[0].figure.axes
    assert axes[0].get_xlabel().startswith("Compression ratio")
    # published points (2 papers) plus our 3 strategies and the zero line in the top-1 panel
    assert len(axes[0].get_lines()) == 2 + 3 + 1


def test_literature_without_plottable_points_says_so(store_dir, tmp_path):
    rows = [{"Name": str(i), "Paper": f"p-{i}", "Dataset": "MNIST", "Model": "LeNet-300-100",
             "Notes": "numbers only in a figure"} for i in range(3)]
    doc = build_report(store_dir, literature=write_survey(tmp_path / "survey", rows))
    assert not [b for b in doc.images() if b.name.startswith("literature-")]
    texts = [getattr(b, "text", "") for b in doc.blocks]
    assert any(t.startswith("LeNet-300-100 on MNIST: the survey lists 3 papers, but none") for t in texts)


def test_errors_name_the_path_and_write_nothing(store_dir, tmp_path):
    with pytest.raises(StoreError, match="nowhere"):
        write_report(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    Store(empty).close()
    with pytest.raises(StoreError, match=r"empty has no pruned runs"):
        write_report(empty)
    assert not (empty / "report.html").exists()
    (tmp_path / "junk").mkdir()
    with open(tmp_path / "junk" / "results.sqlite", "wb") as handle:
        handle.write(b"not a database at all" * 10)
    with pytest.raises(StoreError, match="junk"):
        write_report(tmp_path / "junk")
    with pytest.raises(ConfigError, match="html, md"):
        write_report(store_dir, tmp_path / "r.pdf", fmt="pdf")
    old = tmp_path / "kept.html"
    old.write_text("previous report")
    with pytest.raises(DataError, match="no-survey"):
        write_report(store_dir, old, literature=tmp_path / "no-survey")
    assert old.read_text() == "previous report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "junk", "kept.html"]


def test_only_failed_runs_still_render_their_failures(tmp_path):
    out = tmp_path / "out"
    with Store(out) as store:
        store.register("bad", "prune", {"data": {"name": "mnist"}, "model": {"name": "lenet300"},
                                        "pruning": {"strategy": "random", "compression": 4}, "seed": 0})
        store.start("bad")
        store.fail("bad", "DataError: mnist files missing", "")
    doc = build_report(out)
    assert doc.images() == []
    texts = [getattr(b, "text", "") for b in doc.blocks]
    assert "No finished runs to compare." in texts
    table = [b for b in doc.blocks if getattr(b, "frame", None) is not None and "Error" in b.frame]
    assert table[0].frame["Error"].tolist() == ["DataError: mnist files missing"]
    assert not any(isinstance(b, Image) for b in doc.blocks)
    assert sqlite3.connect(out / "results.sqlite").execute("select count(*) from runs").fetchone() == (1,)
