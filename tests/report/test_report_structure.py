"""The report as a reader meets it: findings first, top-5 only where it counts, embedded figures,
scrolling tables, and one colour per strategy in every report."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from shrinkbench.report import build_report, write_report
from shrinkbench.report.document import Image, Table
from shrinkbench.report.style import STRATEGY_STYLES, strategy_style

from report_synthetic import build_store

ORDER = ["summary", "plots", "tables", "setup", "checklist", "failed-runs", "environment"]


@pytest.fixture(scope="module")
def many_classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CIFAR-100 store (100 classes: top-5 counts) with another set of strategies, one of them a user's."""
    return build_store(tmp_path_factory.mktemp("c100") / "out", models=("resnet56",), seeds=(0, 1, 2),
                       compressions=(1, 2, 4, 8), datasets={"resnet56": "cifar100"}, failed=0,
                       strategies={"layer_magnitude": 0.02, "random": 0.06, "my_pruner": 0.01})


def _html(store: Path, tmp_path: Path) -> str:
    return write_report(store, tmp_path / "report.html").read_text(encoding="utf-8")


def _svgs(text: str) -> list[str]:
    sources = re.findall(r'<img src="([^"]*)"', text)
    assert sources and all(s.startswith("data:image/svg+xml;base64,") for s in sources)
    return [base64.b64decode(s.split(",", 1)[1]).decode("utf-8") for s in sources]


def test_findings_come_before_plots_before_tables(store_dir, tmp_path):
    text = _html(store_dir, tmp_path)
    positions = [text.index(f'<h2 id="{anchor}">') for anchor in ORDER]
    assert positions == sorted(positions)
    summary = text[positions[0]:positions[1]]
    assert "<img" not in summary and "Highest mean top-1 after fine-tuning" in summary
    assert "Holm" in summary and "95% CI" in summary
    plots = text[positions[1]:positions[2]]
    assert plots.count("<img") == 3 and "<table" not in plots
    assert text.index("<img") > positions[1] and text.rindex("<img") < positions[2]


def test_every_image_is_embedded_and_every_table_scrolls(store_dir, tmp_path):
    text = _html(store_dir, tmp_path)
    for svg in _svgs(text):
        assert "<svg" in svg[:1000] and "href=\"http" not in svg
    assert re.findall(r'<img [^>]*src="(?!data:)', text) == []
    n_tables = text.count("<table>")
    assert n_tables >= 8 and text.count('<div class="table-wrap"><table>') == n_tables
    assert re.search(r"\.table-wrap\{[^}]*overflow-x:auto", text)


def test_no_top5_for_ten_classes(store_dir, tmp_path):
    text = _html(store_dir, tmp_path)  # MNIST
    headers = re.findall(r"<th>([^<]*)</th>", text)
    assert headers and not [h for h in headers if "top-5" in h.lower()]
    captions = re.findall(r"<figcaption>([^<]*)</figcaption>", text)
    assert captions and not [c for c in captions if "top-5" in c.lower()]
    doc = build_report(store_dir)
    titles = [ax.get_title() for image in doc.images() for ax in image.figure.axes]
    assert titles and not [t for t in titles if "top-5" in t.lower()]


def test_top5_for_many_classes(many_classes, tmp_path):
    doc = build_report(many_classes)
    names = [image.name for image in doc.images()]
    assert names == ["cifar100-resnet56-top1", "cifar100-resnet56-top5", "cifar100-resnet56-finetuning",
                     "cifar100-resnet56-layer-density"]
    top5 = doc.images()[1].figure
    assert [ax.get_title() for ax in top5.axes] == ["Top-5, before fine-tuning", "Top-5, after fine-tuning"] * 2
    headers = {c for block in doc.blocks if isinstance(block, Table) for c in block.frame.columns}
    assert {"Top-5 after FT (%)", "\u0394 top-5 (pp)", "Top-5 (%)"} <= headers
    text = _html(many_classes, tmp_path)
    assert "<td>Data set</td><td>cifar100 (100 classes)</td>" in text


def _legend_colours(doc) -> dict[str, str]:
    """Strategy label -> colour of its line in the accuracy figures of a report."""
    colours: dict[str, str] = {}
    for image in doc.images():
        if not image.name.endswith("-top1"):
            continue
        for legend in image.figure.legends:
            for text, handle in zip(legend.get_texts(), legend.legend_handles):
                colours[text.get_text()] = str(handle.get_color()).lower()
    return colours


def test_a_strategy_keeps_its_colour_across_reports(store_dir, many_classes, tmp_path):
    first = _legend_colours(build_report(store_dir))  # GlobalMagWeight, LayerMagWeight, RandomPruning
    second = _legend_colours(build_report(many_classes))  # LayerMagWeight, RandomPruning, my_pruner
    shared = {"LayerMagWeight", "RandomPruning"}
    assert shared <= set(first) & set(second)
    for name in shared:
        assert first[name] == second[name] == STRATEGY_STYLES[name][0].lower()
    assert first["GlobalMagWeight"] == STRATEGY_STYLES["GlobalMagWeight"][0].lower()
    assert second["my_pruner"] == strategy_style("my_pruner")["color"].lower()
    assert len(set(second.values())) == len(second)  # no two entries of one legend share a colour
    # and the colours reach the embedded SVG files
    svg = _svgs(_html(many_classes, tmp_path))[0]
    for name in ("LayerMagWeight", "RandomPruning", "my_pruner"):
        assert strategy_style(name)["color"].lower() in svg


def test_summary_says_plainly_when_nothing_is_distinguishable(store_dir):
    doc = build_report(store_dir)  # 2 seeds: Holm over 9 tests with 1 degree of freedom each
    start = next(i for i, b in enumerate(doc.blocks) if getattr(b, "text", "") == "Plots")
    items = [item for block in doc.blocks[:start] for item in getattr(block, "items", ())]
    assert any("At no compression is the best strategy distinguishable from the runner-up" in i for i in items)
    assert any("nothing is distinguishable" in i for i in items)
    winners = next(b for b in doc.blocks[:start] if isinstance(b, Table))
    assert winners.frame["Compression"].tolist() == ["2\u00d7", "4\u00d7", "8\u00d7"]
    assert set(winners.frame["Significant"]) == {"no"}
    assert not [b for b in doc.blocks[:start] if isinstance(b, Image)]


def test_heading_ids_are_unique(tmp_path):
    from shrinkbench.report.document import Document, Heading, to_html

    doc = Document("t", [Heading("Plots", 2), Heading("a on b", 3), Heading("Tables", 2), Heading("a on b", 3),
                         Heading("a on b", 3)])
    ids = re.findall(r'id="([^"]+)"', to_html(doc))
    assert ids == ["plots", "a-on-b", "tables", "a-on-b-2", "a-on-b-3"]
