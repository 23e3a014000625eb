"""Language models in the report: perplexity figures, tables and summary, one group per protocol."""

from __future__ import annotations

import re
import statistics

import numpy as np
import pandas as pd
import pytest

from shrinkbench.report import build_report, write_report
from shrinkbench.report.document import Bullets, Heading, Table, Text
from shrinkbench.report.headline import winners
from shrinkbench.report.language import protocol_titles
from shrinkbench.report.language_plots import perplexity_ticks
from shrinkbench.results import analysis, load
from shrinkbench.results.store import Store

from report_lm_synthetic import LM_STRATEGIES, build_lm_store, ppl, protocol
from report_synthetic import build_store

SEEDS = (0, 1, 2)


def _mean(split: str, stage: str, strategy: str, c: float, stride: int = 64, epochs: int = 1) -> float:
    return statistics.mean(ppl(split, stage, LM_STRATEGIES[strategy][1], c, s, stride, epochs) for s in SEEDS)


def _std(split: str, stage: str, strategy: str, c: float, stride: int = 64) -> float:
    return statistics.stdev(ppl(split, stage, LM_STRATEGIES[strategy][1], c, s, stride) for s in SEEDS)


def _dense(split: str, stride: int = 64) -> float:
    return statistics.mean(ppl(split, "dense", 0.0, 1, s, stride) for s in SEEDS)


def _section(doc, title: str, level: int = 2) -> list:
    """The blocks under the heading `title` of `level`, up to the next heading of that level or above."""
    start = next(i for i, b in enumerate(doc.blocks) if isinstance(b, Heading) and b.text == title
                 and b.level == level)
    out = []
    for block in doc.blocks[start + 1:]:
        if isinstance(block, Heading) and block.level <= level:
            break
        out.append(block)
    return out


def _headings(doc, level: int = 2) -> list[str]:
    return [b.text for b in doc.blocks if isinstance(b, Heading) and b.level == level]


def _text(blocks) -> str:
    parts = []
    for b in blocks:
        if isinstance(b, Text):
            parts.append(b.text)
        elif isinstance(b, Bullets):
            parts.extend(b.items)
    return "\n".join(parts)


@pytest.fixture(scope="module")
def lm_store(tmp_path_factory):
    return build_lm_store(tmp_path_factory.mktemp("lm") / "out")


@pytest.fixture(scope="module")
def lm_doc(lm_store):
    return build_report(lm_store)


@pytest.fixture(scope="module")
def two_doc(tmp_path_factory):
    return build_report(build_lm_store(tmp_path_factory.mktemp("two") / "out", strides=(64, 128)))


@pytest.fixture(scope="module")
def mixed_doc(tmp_path_factory):
    out = build_store(tmp_path_factory.mktemp("mixed") / "out", seeds=(0, 1), compressions=(1, 2, 4, 8),
                      failed=0)
    with Store(out) as store:
        build_lm_store(out, store=store)
    return build_report(out)


def test_language_model_store_gets_perplexity_not_accuracy(lm_doc):
    assert _headings(lm_doc) == ["Summary", "Language models", "Setup", "Checklist", "Failed runs",
                                 "Environment"]  # no accuracy Plots or Tables
    assert [image.name for image in lm_doc.images()] == ["shakespeare-char_gpt-perplexity"]
    summary = _text(_section(lm_doc, "Summary"))
    assert "No pruned runs with a top-1 accuracy" not in summary
    assert "Accuracies are on the test split" not in summary
    assert "lower is better" in summary
    # the dense accuracy table would be empty: the dense perplexities are in the section's tables
    setup = _section(lm_doc, "Setup")
    assert not any(isinstance(b, Table) and "accuracy" in b.caption for b in setup)


def test_summary_names_the_lowest_perplexity(lm_doc):
    bullets = next(b for b in _section(lm_doc, "Summary") if isinstance(b, Bullets)).items
    assert bullets[0] == ("Language model, evaluated under one protocol (eval length 128, stride 64, char "
                          "tokenizer, vocab c9bb6d42); see Language models.")
    dense = _dense("val")
    for c, line in zip((2, 4, 8), bullets[1:4]):
        # SparseGPT loses least (lowest slope): the lowest perplexity wins, not the highest
        best, runner = _mean("val", "post", "sparsegpt", c), _mean("val", "post", "wanda", c)
        assert line.startswith(f"Lowest validation perplexity after fine-tuning at {c}\u00d7: SparseGPT "
                               f"{best:.2f} (dense {dense:.2f}); runner-up Wanda {runner:.2f}, ")
    assert "Holm's correction over the 9 tests" in bullets[4]
    assert bullets[5] == (f"Reference: the unpruned control (compression 1, fine-tuned with the same recipe) "
                          f"reaches validation perplexity {_dense('val'):.2f} over 3 seeds.")


def test_results_table_values(lm_doc):
    section = _section(lm_doc, "Language models")
    tables = [b for b in section if isinstance(b, Table)]
    assert len(tables) == 2  # the protocol, the results
    results = tables[1].frame
    assert list(results.columns) == ["Strategy", "Compression", "Seeds", "Val ppl before FT", "Val ppl after FT",
                                     "Test ppl after FT", "Test bpc after FT", "\u0394 val ppl vs dense",
                                     "Compression ratio", "Speedup"]
    assert results["Strategy"].tolist()[:2] == ["Dense model", "Unpruned"]
    dense = results.iloc[0]
    assert dense["Val ppl after FT"].startswith(f"{_dense('val'):.2f} \u00b1 ")
    assert dense["Seeds"] == 3
    row = results[(results["Strategy"] == "Wanda") & (results["Compression"] == "4")].iloc[0]
    assert row["Seeds"] == 3
    mean, std = _mean("val", "post", "wanda", 4), _std("val", "post", "wanda", 4)
    assert row["Val ppl after FT"] == f"{mean:.2f} \u00b1 {std:.2f}"
    assert row["Val ppl before FT"].startswith(f"{_mean('val', 'pre', 'wanda', 4):.2f} ")
    assert row["Test ppl after FT"].startswith(f"{_mean('test', 'post', 'wanda', 4):.2f} ")
    bpc = statistics.mean(np.log2(ppl("test", "post", 0.020, 4, s)) for s in SEEDS)
    assert row["Test bpc after FT"].startswith(f"{bpc:.3f} ")
    delta = _mean("val", "post", "wanda", 4) - _dense("val")
    assert row["\u0394 val ppl vs dense"].startswith(f"+{delta:.2f} ")
    assert row["Compression ratio"].startswith("4.00") and row["Speedup"].startswith(f"{4 ** 0.9:.2f}")


def test_protocol_table(lm_doc):
    table = next(b for b in _section(lm_doc, "Language models") if isinstance(b, Table)).frame
    assert table["Split"].tolist() == ["validation: valid.txt (md5 3f2a9c0d)", "test: test.txt (md5 0b1c2d3e)"]
    assert table["Tokens scored"].tolist() == ["111,539 of 111,540", "55,769 of 55,770"]
    assert table["Eval length"].tolist() == [128, 128] and table["Stride"].tolist() == [64, 64]
    assert table["Vocabulary"].iloc[0] == "65 tokens, hash c9bb6d42e1f0a3b7"
    assert table["Calibration"].iloc[0] == "128 sequences \u00d7 128 tokens, seeds 0, 1, 2"
    assert table["Tokenizer"].iloc[0] == "char" and table["Data set"].iloc[0] == "shakespeare"


def test_perplexity_figure_is_readable(lm_doc):
    image = lm_doc.images()[0]
    axes = [ax for ax in image.figure.axes if ax.get_visible()]
    assert len(axes) == 4  # validation and test, before and after fine-tuning
    assert [ax.get_title() for ax in axes] == ["Validation, before fine-tuning", "Validation, after fine-tuning",
                                               "Test, before fine-tuning", "Test, after fine-tuning"]
    for ax in axes:
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
        assert ax.get_xlabel() == "Compression ratio (log scale)"
    assert axes[0].get_ylabel() == "Validation perplexity\n(log scale; lower is better)"
    legend = [t.get_text() for t in image.figure.legends[0].get_texts()]
    assert legend == ["GlobalMagWeight", "SparseGPT", "Wanda", "dense model",
                      "unpruned control, fine-tuned (c = 1)"]
    # the dense model: a dashed horizontal line at its mean validation perplexity
    dense = [line for line in axes[1].get_lines() if line.get_linestyle() == "--"]
    assert dense and dense[0].get_ydata()[0] == pytest.approx(_dense("val"))
    # Wanda's curve after fine-tuning goes through the seed means
    wanda = next(line for line in axes[1].get_lines() if line.get_color() == "#AA4499")
    assert list(wanda.get_ydata()) == pytest.approx([_mean("val", "post", "wanda", c) for c in (2, 4, 8)])
    assert "lower is better" in image.caption and "Dashed: the dense model" in image.caption


def test_oneshot_runs_draw_one_panel(tmp_path):
    doc = build_report(build_lm_store(tmp_path / "out", finetune_epochs=0, seeds=(0, 1)))
    axes = [ax for ax in doc.images()[0].figure.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["Validation, one-shot, no fine-tuning",
                                               "Test, one-shot, no fine-tuning"]
    results = [b for b in _section(doc, "Language models") if isinstance(b, Table)][1].frame
    assert "Val ppl" in results.columns and not any("FT" in c for c in results.columns)
    bullets = next(b for b in _section(doc, "Summary") if isinstance(b, Bullets)).items
    assert bullets[1].startswith("Lowest validation perplexity (one-shot, no fine-tuning) at 2\u00d7: SparseGPT")
    assert not any(b.startswith("Reference: the unpruned control") for b in bullets)


def test_two_protocols_are_never_compared(two_doc):
    section = _section(two_doc, "Language models")
    groups = [b.text for b in section if isinstance(b, Heading) and b.level == 4]
    assert groups == ["Protocol: eval length 128, stride 64, char tokenizer, vocab c9bb6d42",
                      "Protocol: eval length 128, stride 128, char tokenizer, vocab c9bb6d42"]
    sentence = ("These runs were evaluated under 2 different protocols, shown as separate groups; results "
                "under different protocols are not compared: a perplexity depends on the split, tokenizer, "
                "vocabulary and evaluation windows.")
    assert sentence in _text(section)
    assert len(two_doc.images()) == 2
    tables = [b for b in section if isinstance(b, Table)]
    assert len(tables) == 4  # per group: protocol, results
    for stride, (proto, results) in zip((64, 128), (tables[0:2], tables[2:4])):
        assert set(proto.frame["Stride"]) == {stride}
        # every row of a group's table holds that protocol's runs alone: 3 seeds, never 6
        assert set(results.frame["Seeds"]) == {3}
        dense = results.frame.iloc[0]["Val ppl after FT"]
        assert dense.startswith(f"{_dense('val', stride):.2f} ")
        row = results.frame[(results.frame["Strategy"] == "Wanda") & (results.frame["Compression"] == "2")]
        assert row.iloc[0]["Val ppl after FT"].startswith(f"{_mean('val', 'post', 'wanda', 2, stride):.2f} ")
    for image, stride in zip(two_doc.images(), (64, 128)):
        assert f"stride {stride}," in image.caption
        wanda = next(line for line in image.figure.axes[1].get_lines() if line.get_color() == "#AA4499")
        assert list(wanda.get_ydata()) == pytest.approx([_mean("val", "post", "wanda", c, stride)
                                                         for c in (2, 4, 8)])
    summary = _text(_section(two_doc, "Summary"))
    assert "evaluated under 2 different protocols; results under different protocols are not compared" in summary
    assert "Protocol eval length 128, stride 128, char tokenizer, vocab c9bb6d42:" in summary
    assert f"(dense {_dense('val', 128):.2f})" in summary and f"(dense {_dense('val', 64):.2f})" in summary


def test_mixed_store_renders_both(mixed_doc):
    assert _headings(mixed_doc)[:4] == ["Summary", "Plots", "Tables", "Language models"]
    names = [image.name for image in mixed_doc.images()]
    assert "mnist-lenet300-top1" in names and "shakespeare-char_gpt-perplexity" in names
    assert not any(n.startswith("shakespeare") and "top" in n for n in names)
    plots = _section(mixed_doc, "Plots")
    assert [b.text for b in plots if isinstance(b, Heading)] == ["LeNet-300-100 on MNIST"]
    assert "Language models, measured by perplexity (see Language models): char_gpt on shakespeare." in _text(plots)
    tables = _section(mixed_doc, "Tables")
    assert [b.text for b in tables if isinstance(b, Heading)] == ["LeNet-300-100 on MNIST"]
    summary = _section(mixed_doc, "Summary")
    text = _text(summary)
    assert "Highest mean top-1 after fine-tuning: GlobalMagWeight" in text
    assert "Lowest validation perplexity after fine-tuning at 2\u00d7: SparseGPT" in text
    assert "Accuracies are on the test split" in text and "Language models (perplexity" in text
    dense = next(b for b in _section(mixed_doc, "Setup") if isinstance(b, Table) and "accuracy" in b.caption)
    assert dense.frame["Data set"].tolist() == ["mnist"]


def test_markdown_report_writes_the_perplexity_figure(lm_store, tmp_path):
    path = write_report(lm_store, tmp_path / "r.md", fmt="md")
    text = path.read_text(encoding="utf-8")
    assert "## Language models" in text and "#### Protocol: eval length 128, stride 64" in text
    assert re.search(r"\]\(r_files/shakespeare-char-gpt-perplexity\.png\)", text)
    assert (tmp_path / "r_files" / "shakespeare-char-gpt-perplexity.png").read_bytes().startswith(b"\x89PNG")
    assert "top1" not in text


def test_test_split_only_and_missing_perplexity(tmp_path):
    out = build_lm_store(tmp_path / "out", val=False, seeds=(0, 1), strategies=("wanda", "sparsegpt"),
                         compressions=(1, 2))
    with Store(out) as store:  # a run that diverged and recorded no perplexity
        store.register("nan-run", "prune", {"data": {"name": "shakespeare"}, "model": {"name": "char_gpt"},
                                            "pruning": {"strategy": "wanda", "compression": 2},
                                            "finetune": {"epochs": 1}, "seed": 5})
        store.start("nan-run")
        store.finish("nan-run", {"post_test_ppl": None, "compression_ratio": 2.0, "strategy_name": "Wanda",
                                 "lm_protocol": protocol(val=False)})
    doc = build_report(out)
    bullets = next(b for b in _section(doc, "Summary") if isinstance(b, Bullets)).items
    assert bullets[1].startswith("Lowest test perplexity after fine-tuning at 2\u00d7: SparseGPT "
                                 f"{statistics.mean(ppl('test', 'post', 0.015, 2, s) for s in (0, 1)):.2f}")
    assert "1 done run has no finite test perplexity and is left out: Wanda 2\u00d7 seed 5." in bullets
    axes = [ax for ax in doc.images()[0].figure.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["Test, before fine-tuning", "Test, after fine-tuning"]
    results = [b for b in _section(doc, "Language models") if isinstance(b, Table)][1].frame
    assert "\u0394 test ppl vs dense" in results.columns and "Val ppl after FT" not in results.columns


def test_winners_lower_is_better():
    rows = [{"dataset": "d", "model": "m", "strategy": s, "compression": 2.0, "seed": seed, "ppl": v + 0.01 * seed}
            for seed in range(3) for s, v in (("A", 7.0), ("B", 6.0), ("C", 9.0))]
    frame = pd.DataFrame(rows)
    comparisons = analysis.compare_per_compression(frame, metric="ppl")
    table = winners(frame, comparisons, metric="ppl", lower=True)
    assert table.iloc[0]["best"] == "B" and table.iloc[0]["next"] == "A"
    assert table.iloc[0]["best_mean"] == pytest.approx(6.01)
    assert winners(frame, comparisons, metric="ppl").iloc[0]["best"] == "C"  # accuracy's direction


def test_protocol_titles_tell_protocols_apart():
    a, b = protocol(stride=64), protocol(stride=128)
    titles = protocol_titles([a, b, ""])
    assert titles == {a: "eval length 128, stride 64, char tokenizer, vocab c9bb6d42",
                      b: "eval length 128, stride 128, char tokenizer, vocab c9bb6d42",
                      "": "protocol not recorded"}
    c = protocol(stride=64, val=False)  # the same windows, but no validation split
    titles = protocol_titles([a, c])
    assert titles[a].endswith(", val valid.txt md5 3f2a9c0d, test test.txt md5 0b1c2d3e")
    assert titles[c].endswith(", no validation split, test test.txt md5 0b1c2d3e")


def test_perplexity_ticks():
    assert perplexity_ticks(6.0, 16.0) == [6, 7, 8, 9, 10, 15]
    assert perplexity_ticks(4.0, 60.0) == [5, 10, 20, 50]
    assert perplexity_ticks(6.1, 6.9) == [6.1, 6.3, 6.5, 6.7, 6.9]
    assert perplexity_ticks(6.15, 6.25) == [6.16, 6.18, 6.2, 6.22, 6.24]
    assert perplexity_ticks(5.0, 5.0) == [] and perplexity_ticks(0.0, 5.0) == []


def test_frame_of_the_lm_store(lm_store):
    runs = load(lm_store)
    assert analysis.is_language_model(runs)
    assert set(runs["post_val_ppl"].map(type)) == {float}
    row = runs[runs["run_id"] == "lm-wanda-4-1-64"].iloc[0]
    assert row["post_val_ppl"] == pytest.approx(ppl("val", "post", 0.020, 4, 1))
    assert row["strategy"] == "Wanda"
