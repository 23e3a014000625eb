"""The report's Schedules section: every schedule its own curve, the sparsity paths, the accuracy after
each round (tickets and controls on the same axes), the training cost table and the sentence on
comparisons at unequal cost; and nothing of it for a store from before schedules."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.colors import to_hex

from shrinkbench.report import build_report, write_report
from shrinkbench.report.document import Heading, Table, Text
from shrinkbench.report.schedules import cost_table, fmt_si, unequal_cost_sentence
from shrinkbench.report.style import STRATEGY_STYLES, legend_label, strategy_style
from shrinkbench.results import load

from report_synthetic import (DENSE_EPOCHS, FINETUNE_EPOCHS, FORWARD, EXAMPLES, STEPS_PER_EPOCH,
                              build_schedule_store, build_store, epoch_macs, schedule_run)

G = "GlobalMagWeight"
ITERATIVE, GRADUAL = f"{G} [iterative 20%/round]", f"{G} [gradual]"
TICKET = f"{G} [lottery (rewind init)]"
CONTROL, RANDOM = f"{G} [lottery (rewind init) reinit control]", f"{G} [lottery (rewind init) random control]"
LABELS = {"oneshot": G, "iterative": ITERATIVE, "gradual": GRADUAL, "lottery": TICKET, "reinit": CONTROL,
          "random": RANDOM}


@pytest.fixture(scope="module")
def sched_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One-shot, iterative, gradual, lottery ticket and its reinit and random controls at 4x and 8x, 2 seeds."""
    return build_schedule_store(tmp_path_factory.mktemp("sched") / "out")


@pytest.fixture(scope="module")
def markdown(sched_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report(sched_dir, tmp_path_factory.mktemp("md") / "report.md", fmt="md")


@pytest.fixture(scope="module")
def doc(sched_dir: Path):
    return build_report(sched_dir)


def _section(text: str, start: str, end: str) -> str:
    return text[text.index(start):text.index(end)]


def _legend(fig) -> list[str]:
    return [t.get_text().replace("\n", " ") for legend in fig.legends for t in legend.get_texts()]


def _macs(name: str, c: float) -> float:
    return schedule_run(name, c)["train_macs"]


def test_section_headings_text_and_figure_files(markdown):
    text = markdown.read_text(encoding="utf-8")
    assert text.index("## Tables") < text.index("## Schedules") < text.index("## Setup")
    section = _section(text, "## Schedules", "## Setup")
    assert re.findall(r"^#+ .*$", section, flags=re.M) == [
        "## Schedules", "### LeNet-300-100 on MNIST", "#### Training cost"]
    assert 'labelled "Strategy [schedule]" in every figure and table' in section
    assert "accuracy against compression and speedup plots (Plots)" in section
    for described in ("iterative (r%/round): rounds", "gradual: sparsity raised", "lottery (rewind r)",
                      "reinit control:", "random control:"):
        assert described in section
    assert "shuffle control:" not in section and "at init:" not in section  # not run here
    for stem in ("mnist-lenet300-sparsity-path", "mnist-lenet300-rounds"):
        png = markdown.parent / "report_files" / f"{stem}.png"
        svg = png.with_suffix(".svg")
        assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 10_000
        assert b"<svg" in svg.read_bytes()[:2000]
        assert f"](report_files/{stem}.png)" in section
    # the random control pruned in one step: named in the caption, not drawn; the reinit control
    # carries its ticket's path
    assert f"so not drawn: {RANDOM}." in section
    summary = _section(text, "## Summary", "## Plots")
    assert "each schedule is its own curve" in summary


def test_training_cost_table_values_and_ratios(sched_dir, markdown):
    section = _section(markdown.read_text(encoding="utf-8"), "#### Training cost", "## Setup")
    assert ("| Strategy | Compression | Runs | Training epochs | Optimizer steps | Training MACs | "
            "\u00d7 one-shot MACs | One-shot reference |") in section
    # one-shot at 4x by hand: 10 dense epochs at full density and 2 fine-tuning epochs at 1/4
    assert 3 * FORWARD * EXAMPLES * (10 + 2 / 4) == pytest.approx(83.853e9)
    assert f"| {G} | 4 | 2 | 12 | 1,200 | 83.9 G | 1.00\u00d7 | itself |" in section
    for name, label in LABELS.items():
        for c in (4, 8):
            run = schedule_run(name, c)
            epochs = run["train_epochs"]
            ratio = run["train_macs"] / _macs("oneshot", c)
            reference = "itself" if name == "oneshot" else G
            row = (f"| {label} | {c} | 2 | {epochs:g} | {epochs * STEPS_PER_EPOCH:,.0f} | "
                   f"{fmt_si(run['train_macs'])} | {ratio:.2f}\u00d7 | {reference} |")
            assert row in section, row
    # the lottery ticket: the dense model, then 10 epochs per round at each round's density
    lottery = schedule_run("lottery", 8)
    assert lottery["train_epochs"] == DENSE_EPOCHS * (1 + 10)
    assert lottery["train_macs"] / _macs("oneshot", 8) == pytest.approx(4.476, abs=1e-3)
    assert f"| {TICKET} | 8 | 2 | 110 | 11,000 | 366 G | 4.48\u00d7 | {G} |" in section
    # the reinit control trains the ticket's final mask once: the ticket's cost
    assert f"| {CONTROL} | 8 | 2 | 110 | 11,000 | 366 G | 4.48\u00d7 | {G} |" in section
    # ticket right before its controls, one-shot first at each compression
    rows = [line.split(" | ")[0][2:] for line in section.splitlines() if line.startswith(f"| {G}")]
    assert rows[:6] == [G, GRADUAL, ITERATIVE, TICKET, RANDOM, CONTROL]
    assert "| Unpruned | 1 | 2 | 12 | 1,200 |" in section
    assert FINETUNE_EPOCHS == 2


def test_unequal_cost_sentence(sched_dir, markdown):
    section = _section(markdown.read_text(encoding="utf-8"), "#### Training cost", "## Setup")
    ratio = {(n, c): _macs(n, c) / _macs("oneshot", c) for n in LABELS for c in (4, 8)}
    expected = (f"{TICKET} used {ratio['lottery', 4]:.2f}\u00d7 the training MACs of one-shot {G} at "
                f"compression 4, {ratio['lottery', 8]:.2f}\u00d7 at compression 8")
    assert expected == (f"{TICKET} used 4.00\u00d7 the training MACs of one-shot {G} at compression 4, "
                        "4.48\u00d7 at compression 8")
    sentence = next(line for line in section.splitlines() if line.startswith("Compared at unequal"))
    assert sentence.startswith("Compared at unequal training cost (training MACs 1% or more apart): ")
    assert expected in sentence
    assert f"{GRADUAL} used {ratio['gradual', 4]:.2f}\u00d7" in sentence  # 3.6% more: unequal
    assert f"{ITERATIVE} used {ratio['iterative', 4]:.2f}\u00d7" in sentence
    assert f"{RANDOM} used {ratio['random', 4]:.2f}\u00d7" in sentence
    assert sentence.index(f"{TICKET} used") < sentence.index(f"{RANDOM} used") < sentence.index(f"{CONTROL} used")
    assert f"{G} used" not in sentence  # one-shot is the reference


def _costs(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"dataset": "d", "model": "m", "strategy": s, "compression": 4.0, "seed": 0,
                          "schedule": kind, "train_macs": macs, "train_epochs": 1.0, "train_steps": 10}
                         for s, kind, macs in rows])


def test_equal_costs_are_said_to_be_equal():
    runs = _costs([("A", "oneshot", 100.0), ("A [gradual]", "gradual", 100.9)])
    assert unequal_cost_sentence(runs) == ("Every strategy and schedule used the training MACs of one-shot "
                                           "pruning at its compression (within 1%): they were compared at "
                                           "equal cost.")
    assert list(cost_table(runs)["\u00d7 one-shot MACs"]) == ["1.00\u00d7", "1.01\u00d7"]
    assert fmt_si(83.853e9) == "83.9 G" and fmt_si(1.5e12) == "1.5 T" and fmt_si(512) == "512"


def test_every_curve_is_labelled_with_its_schedule(doc):
    images = {image.name: image for image in doc.images()}
    assert list(images) == ["mnist-lenet300-top1", "mnist-lenet300-sparsity-path", "mnist-lenet300-rounds"]
    accuracy = _legend(images["mnist-lenet300-top1"].figure)
    assert accuracy == [G, GRADUAL, ITERATIVE, TICKET, RANDOM, CONTROL, "dense model",
                        "unpruned control, fine-tuned (c = 1)"]
    rounds = images["mnist-lenet300-rounds"].figure
    assert _legend(rounds) == [ITERATIVE, TICKET, RANDOM, CONTROL, "dense model",  # tickets and controls
                               "unpruned control, fine-tuned (c = 1)"]
    ax = rounds.axes[0]
    assert ax.get_xscale() == "log" and "Compression ratio" in ax.get_xlabel()
    assert ax.get_ylabel() == "Top-1 test accuracy (%)"
    colors = [to_hex(line.get_color()) for line in ax.get_lines()[:4]]
    assert colors == [strategy_style(label)["color"].lower() for label in (ITERATIVE, TICKET, RANDOM, CONTROL)]
    # the same strategy's schedules differ by marker (and controls by colour too)
    looks = [(to_hex(line.get_color()), line.get_marker(), line.get_linestyle()) for line in ax.get_lines()[:4]]
    assert len(set(looks)) == 4 and len({look[1] for look in looks}) >= 3
    # the ticket after its last round at 8x: the mean over seeds of 98.0 - 0.4 * 3 ** 1.6 (+0.1 for seed 1)
    ticket, control = ax.get_lines()[1], ax.get_lines()[3]
    assert ticket.get_xdata()[-1] == pytest.approx(8.0)
    assert ticket.get_ydata()[-1] == pytest.approx(98.0 - 0.4 * 3 ** 1.6 + 0.05)
    assert len(ticket.get_xdata()) == 11  # 1.25x ... 4x (the last round of the 4x runs), ... 8x
    assert list(control.get_xdata()) == pytest.approx([4.0, 8.0])  # one round each: trained once
    path = images["mnist-lenet300-sparsity-path"].figure
    titles = [a.get_title().replace("\n", " ") for a in path.axes if a.get_visible() and a.get_title()]
    assert titles == [GRADUAL, ITERATIVE, TICKET, CONTROL]
    assert _legend(path) == ["4\u00d7", "8\u00d7"]
    panel = path.axes[0]
    assert panel.get_yscale() == "log" and panel.get_ylabel() == "Compression ratio"
    assert panel.get_xlabel() == "Training step (optimizer steps)"
    # 2 x 2 panels; sparsity on the right of the last panel of each row, at the same ticks: 8x is 87.5% sparse
    right = [c for a in path.axes for c in a.child_axes]
    assert [c.get_ylabel() for c in right] == ["Sparsity (%)"] * 2
    assert [bool(a.child_axes) for a in path.axes] == [False, True, False, True]
    labels = dict(zip(path.axes[-1].get_yticks(), (t.get_text() for t in right[0].get_yticklabels())))
    assert labels[8.0] == "87.5" and labels[1.0] == "0"
    assert [c.get_xlabel() for c in ax.child_axes] == ["Weights remaining (%)"]


def test_comparisons_and_findings_flag_unequal_cost(markdown):
    text = markdown.read_text(encoding="utf-8")
    tables = _section(text, "## Tables", "## Schedules")
    assert "| Training MACs, higher / lower |" in tables
    assert (f"| 8 | {TICKET} | {G} | 2 | 3.48 | [3.48, 3.48] | 0.500 | 1.000 | no | 4.48\u00d7 |") in tables
    assert f"| 8 | {TICKET} | {CONTROL} | 2 |" in tables
    ticket_control = next(line for line in tables.splitlines()
                          if line.startswith(f"| 8 | {TICKET} | {CONTROL} |"))
    assert ticket_control.endswith("| equal |")  # the control trains the ticket's mask: the same cost
    # 6 strategies, 15 pairs at each of 2 compressions; ticket against reinit control is equal
    assert ("28 of these 30 comparisons are between strategies trained at unequal cost (training MACs 1% "
            "or more apart") in tables
    summary = _section(text, "## Summary", "## Plots")
    ratio = _macs("lottery", 4) / _macs("iterative", 4)
    assert (f"Best and runner-up trained at unequal cost (training MACs 1% or more apart): at 4\u00d7 {TICKET} "
            f"used {ratio:.2f}\u00d7 the training MACs of {ITERATIVE}") in summary
    assert "| Training MACs, best / runner-up |" in summary


def test_html_section(sched_dir, tmp_path):
    text = write_report(sched_dir, tmp_path / "report.html").read_text(encoding="utf-8")
    section = _section(text, '<h2 id="schedules">', '<h2 id="setup">')
    assert section.count("<img") == 2 and "<h4" in section and section.count("<table>") == 1
    assert '<a href="#schedules">Schedules</a>' in text


def test_store_from_before_schedules_has_no_schedules_section(store_dir, tmp_path):
    text = write_report(store_dir, tmp_path / "report.md", fmt="md").read_text(encoding="utf-8")
    assert "## Schedules" not in text and "Training MACs" not in text and "training cost" not in text.lower()
    assert "[" not in "".join(load(store_dir)["strategy"])
    doc = build_report(store_dir)
    assert "Schedules" not in [b.text for b in doc.blocks if isinstance(b, Heading)]
    assert not [n for n in (i.name for i in doc.images()) if "sparsity" in n or "rounds" in n]


def test_one_shot_only_store_with_costs_has_no_schedules_section(tmp_path):
    out = build_schedule_store(tmp_path / "out", schedules=("oneshot",))
    text = write_report(out, tmp_path / "report.md", fmt="md").read_text(encoding="utf-8")
    assert "## Schedules" not in text


def test_at_init_alone_opens_the_section_without_paths_or_rounds(tmp_path):
    out = build_schedule_store(tmp_path / "out", schedules=("oneshot", "init"))
    doc = build_report(out)
    headings = [b.text for b in doc.blocks if isinstance(b, Heading)]
    assert "Schedules" in headings and "Training cost" in headings
    assert [i.name for i in doc.images()] == ["mnist-lenet300-top1"]  # no path over time, no rounds
    table = next(b.frame for b in doc.blocks if isinstance(b, Table) and "One-shot reference" in b.frame)
    row = table[(table["Strategy"] == f"{G} [one-shot at init]") & (table["Compression"] == "8")].iloc[0]
    ratio = epoch_macs(1 / 8, DENSE_EPOCHS + FINETUNE_EPOCHS) / _macs("oneshot", 8)
    assert row["\u00d7 one-shot MACs"] == f"{ratio:.2f}\u00d7" == "0.15\u00d7"
    texts = [b.text for b in doc.blocks if isinstance(b, Text)]
    at4 = epoch_macs(1 / 4, DENSE_EPOCHS + FINETUNE_EPOCHS) / _macs("oneshot", 4)
    assert at4 == pytest.approx(3 / 10.5)  # 12 epochs at 1/4 density against 10 dense + 2 at 1/4
    assert any(f"{G} [one-shot at init] used 0.29\u00d7 the training MACs of one-shot {G} at compression 4, "
               "0.15\u00d7 at compression 8" in t for t in texts)
    assert any("one-shot at init: pruned once at initialization" in t for b in doc.blocks
               if hasattr(b, "items") for t in b.items)


def test_store_mixing_old_runs_and_scheduled_runs(tmp_path):
    out = build_store(tmp_path / "out", seeds=(0, 1), compressions=(1, 2, 4, 8), failed=1)
    build_schedule_store(out, compressions=(4, 8), schedules=("iterative",))
    text = write_report(out, tmp_path / "report.md", fmt="md").read_text(encoding="utf-8")
    section = _section(text, "## Schedules", "## Setup")
    # the old one-shot runs counted no cost: nothing to take a ratio against
    assert f"| {ITERATIVE} | 8 | 2 | 30 | 3,000 | 137 G |  |  |" in section
    assert "No one-shot run at the compressions of the other runs recorded its training cost" in section
    assert "mnist-lenet300-rounds.png" in section
    tables = _section(text, "## Tables", "## Schedules")
    assert "Training MACs, higher / lower" not in tables  # no pair with both costs known


def test_schedule_styles_keep_the_base_colour_and_name_the_schedule():
    base = strategy_style(G)
    assert base == {"color": STRATEGY_STYLES[G][0], "marker": "o", "linestyle": "-"}  # unchanged
    styles = {label: strategy_style(label) for label in LABELS.values()}
    looks = {(s["color"], s["marker"], s["linestyle"]) for s in styles.values()}
    assert len(looks) == len(styles)  # every schedule of one strategy looks different
    assert styles[TICKET]["color"] == STRATEGY_STYLES[G][0] != styles[CONTROL]["color"]
    assert styles[CONTROL]["linestyle"] == "--" and styles[TICKET]["linestyle"] == "-"
    assert strategy_style(f"{G} [lottery (rewind 1ep)]")["color"] == styles[TICKET]["color"]
    assert strategy_style(f"{G} [lottery (rewind 1ep)]")["linestyle"] != "-"
    # strategies stay apart within one schedule
    assert strategy_style("SNIP [one-shot at init]")["color"] != strategy_style("RandomPruning [one-shot at init]")["color"]
    assert legend_label(CONTROL) == f"{G}\n[lottery (rewind init) reinit control]"
    assert legend_label("global_magnitude") == G and legend_label("A [x]") == "A [x]"


def test_a_pair_without_schedules_says_so(tmp_path):
    out = build_store(tmp_path / "out", models=("resnet56",), seeds=(0, 1), compressions=(1, 2), failed=0)
    build_schedule_store(out, compressions=(4,), schedules=("oneshot", "lottery"))
    doc = build_report(out)
    start = next(i for i, b in enumerate(doc.blocks) if isinstance(b, Heading) and b.text == "Schedules")
    blocks = doc.blocks[start:]
    texts = [b.text for b in blocks if isinstance(b, (Heading, Text))]
    at = texts.index("ResNet-56 on CIFAR-10")
    assert texts[at + 1] == "Every run of this data set and model was pruned one-shot."
    assert "LeNet-300-100 on MNIST" in texts and "Training cost" in texts
