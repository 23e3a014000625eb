"""The survey's tables: parsing published cells, normalizing each result, counting papers per pair."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shrinkbench.errors import DataError
from shrinkbench.report.literature import load_survey, normalize_results, parse_value, summary, top_pairs
from shrinkbench.report.names import survey_dataset, survey_model

RESULT_COLUMNS = [
    "Name", "Paper", "Dataset", "Model", "Method", "Notes", "NumTrials", "Err1", "Err5", "Top1", "stdTop1",
    "dTop1", "Top5", "dTop5", "MParams", "savedParams", "keptParams", "GFLOPS", "savedFLOPS", "keptFLOPS",
    "OrigTop1", "stdOrigTop1", "OrigTop5", "OrigMParams", "OrigGFLOPS", "old/new Nparam", "old/new FLOPS",
    "OrigErr1", "OrigErr5",
]
PAPER_COLUMNS = ["Name", "Date", "AuthorName", "Venue", "BibTeX", "Notes", "Compares To", "Models",
                 "Datasets", "Non-pruning", "Results"]

# One row per published form; each yields compression 4, speedup 2, top-1 change -1.5 pp where given.
ROWS = [
    {"Name": "1", "Paper": "p-saved", "Dataset": "CIFAR-10", "Model": "ResNet-56",
     "savedParams": "75.00%", "savedFLOPS": "50.00%", "Top1": "91.50%", "OrigTop1": "93.00%"},
    {"Name": "2", "Paper": "p-kept", "Dataset": "CIFAR-10", "Model": "ResNet-56",
     "keptParams": "25.00%", "keptFLOPS": "50.00%", "dTop1": "-1.500%"},
    {"Name": "3", "Paper": "p-ratio", "Dataset": "ImageNet", "Model": "VGG-16",
     "old/new Nparam": "4.00", "old/new FLOPS": "2.000", "Err1": "31.50%", "OrigErr1": "30.00%",
     "Err5": "11.00%", "OrigErr5": "10.00%"},
    {"Name": "4", "Paper": "p-absolute", "Dataset": "ImageNet", "Model": "VGG-16",
     "MParams": "34.5000", "OrigMParams": "138.000", "GFLOPS": "7.7500", "OrigGFLOPS": "15.500",
     "Top1": "70.00%", "OrigTop1": "71.50%", "Top5": "89.00%", "dTop5": "-0.500%"},
    {"Name": "5", "Paper": "p-empty", "Dataset": "???", "Model": "ResNet-56",
     "Notes": "nothing usable, \"quoted, with commas\""},
    {"Name": "6", "Paper": "p-saved", "Dataset": "CIFAR-10", "Model": "ResNet-56",
     "savedParams": "0.75", "Top1": "0.915", "OrigTop1": "93", "dTop1": ""},
]


def write_table(path: Path, columns: list[str], rows: list[dict]) -> None:
    """A table in the survey's published form: UTF-8 with BOM, every column, empty cells blank."""
    with open(path, "w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)


def write_survey(folder: Path, rows: list[dict] = ROWS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_table(folder / "Results-Grid view.csv", RESULT_COLUMNS, rows)
    papers = sorted({r["Paper"] for r in rows})
    write_table(folder / "Papers-Grid view.csv", PAPER_COLUMNS,
                [{"Name": p, "Date": "2018-6", "AuthorName": p.split("-")[1].title()} for p in papers])
    write_table(folder / "Models-Grid view.csv", ["Name", "Notes"], [{"Name": "ResNet-56"}])
    write_table(folder / "Datasets-Grid view.csv", ["Name", "Notes"], [{"Name": "CIFAR-10"}])
    return folder


@pytest.mark.parametrize(
    "cell, kind, expected",
    [
        ("93.55%", "percent", 0.9355),
        ("-0.400%", "points", -0.004),
        ("0.75", "percent", 0.75),  # a bare fraction
        ("75", "percent", 0.75),  # a bare percentage
        ("-0.4", "points", -0.004),  # accuracy changes are percentage points
        ("19.6000", "number", 19.6),
        ("13x", "number", 13.0),
        (" 1,234.5 ", "number", 1234.5),
        ("\u22121.2%", "points", -0.012),  # a typographic minus
    ],
)
def test_parse_value_forms(cell, kind, expected):
    assert parse_value(cell, kind) == pytest.approx(expected)


@pytest.mark.parametrize("cell", ["", "  ", None, float("nan"), "???", "n/a", "-", "abc"])
def test_parse_value_missing_is_nan(cell):
    assert math.isnan(parse_value(cell, "percent"))


@given(st.floats(min_value=-100, max_value=100, allow_nan=False).map(lambda x: round(x, 3)))
def test_parse_percent_string_is_value_over_100(x):
    for kind in ("percent", "points", "number"):
        assert parse_value(f"{x:.3f}%", kind) == pytest.approx(x / 100, abs=1e-12)


def test_normalize_every_form(tmp_path):
    survey = load_survey(write_survey(tmp_path / "survey"))
    r = survey.results.set_index("result")
    assert list(r.index) == ["1", "2", "3", "4", "5", "6"]
    for name in ("1", "2", "3", "4", "6"):
        assert r.loc[name, "compression"] == pytest.approx(4.0), name
    for name in ("1", "2", "3", "4"):
        assert r.loc[name, "speedup"] == pytest.approx(2.0), name
    for name in ("1", "2", "3", "4"):
        assert r.loc[name, "dtop1"] == pytest.approx(-0.015), name
    assert r.loc["6", "dtop1"] == pytest.approx(-0.015)  # bare fraction against bare percent
    assert r.loc["3", "dtop5"] == pytest.approx(-0.01)  # from errors
    assert r.loc["4", "dtop5"] == pytest.approx(-0.005)  # the published change wins
    assert r.loc["3", "top1"] == pytest.approx(0.685)
    assert list(r["compression_from"][["1", "2", "3", "4"]]) == [
        "savedParams", "keptParams", "old/new Nparam", "OrigMParams/MParams"]
    assert list(r["dtop1_from"][["1", "2", "3"]]) == ["Top1-OrigTop1", "dTop1", "Top1-OrigTop1"]
    empty = r.loc["5"]
    assert pd.isna(empty["dataset"]) and empty["model"] == "ResNet-56"
    assert all(math.isnan(empty[c]) for c in ("compression", "speedup", "dtop1", "dtop5"))
    assert r.loc["1", "paper_label"] == "Saved 2018"


def test_impossible_values_are_dropped():
    raw = pd.DataFrame([
        {"Paper": "a", "Dataset": "D", "Model": "M", "savedParams": "100%", "keptFLOPS": "0%",
         "MParams": "0", "OrigMParams": "10"},
        {"Paper": "a", "Dataset": "D", "Model": "M", "old/new Nparam": "-2", "GFLOPS": "2",
         "OrigGFLOPS": "8"},
    ])
    out = normalize_results(raw)
    assert math.isnan(out.loc[0, "compression"]) and math.isnan(out.loc[0, "speedup"])
    assert math.isnan(out.loc[1, "compression"]) and out.loc[1, "speedup"] == pytest.approx(4.0)


def test_top_pairs_count_distinct_papers(tmp_path):
    survey = load_survey(write_survey(tmp_path / "survey"))
    pairs = top_pairs(survey.results)
    assert pairs.to_dict(orient="records") == [
        {"dataset": "CIFAR-10", "model": "ResNet-56", "papers": 2, "results": 3, "plottable": 3},
        {"dataset": "ImageNet", "model": "VGG-16", "papers": 2, "results": 2, "plottable": 2},
    ]
    info = summary(survey)
    assert info["papers"] == 5 and info["results"] == 6
    assert info["results_with_compression"] == 5 and info["results_with_speedup"] == 4


def test_missing_folder_and_tables_name_the_path(tmp_path):
    with pytest.raises(DataError, match="nowhere"):
        load_survey(tmp_path / "nowhere")
    folder = tmp_path / "partial"
    folder.mkdir()
    write_table(folder / "Papers-Grid view.csv", PAPER_COLUMNS, [])
    with pytest.raises(DataError, match=r"partial.*Results"):
        load_survey(folder)
    write_table(folder / "Results-Grid view.csv", ["Name", "Paper"], [{"Name": "1", "Paper": "x"}])
    with pytest.raises(DataError, match="Dataset, Model"):
        load_survey(folder)


def test_name_mapping_is_one_table():
    assert survey_dataset("cifar10") == "CIFAR-10" and survey_model("resnet56") == "ResNet-56"
    assert survey_dataset("mnist") == "MNIST" and survey_model("lenet300") == "LeNet-300-100"
    assert survey_model("ResNet56") == "ResNet-56"  # case and punctuation do not matter
    assert survey_model("resnet_110", known=["ResNet-110"]) == "ResNet-110"
    assert survey_model("my_net", known=["ResNet-110"]) is None


SHARED = os.environ.get("SHRINKBENCH_TEST_LITERATURE")


@pytest.mark.skipif(not SHARED, reason="SHRINKBENCH_TEST_LITERATURE is not set")
def test_published_survey_counts():
    survey = load_survey(SHARED)
    assert survey.n_papers == 81
    pairs = top_pairs(survey.results, 3)
    assert [tuple(p) for p in pairs[["dataset", "model", "papers"]].itertuples(index=False)] == [
        ("ImageNet", "VGG-16", 22), ("ImageNet", "ResNet-50", 15), ("CIFAR-10", "ResNet-56", 14)]
    r = survey.results
    assert r["compression"].dropna().gt(1).mean() > 0.95  # pruning compresses
    assert r["dtop1"].dropna().abs().lt(0.2).all()  # changes are fractions, not percents
