"""`shrinkbench report` and `shrinkbench literature` through the main entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shrinkbench.cli.main import main
from shrinkbench.cli import report_cmd

from test_report_literature import write_survey


def test_report_command_writes_markdown_and_prints_its_path(store_dir, tmp_path, capsys):
    out = tmp_path / "report.md"
    assert main(["report", str(store_dir), "--out", str(out), "--title", "My sweep"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert out.read_text().startswith("# My sweep\n")
    # MNIST (10 classes): top-1 accuracy, fine-tuning curves, layer densities; no top-5 figure
    assert len(list((tmp_path / "report_files").glob("*.png"))) == 3


@pytest.mark.parametrize(
    "argv, fmt, out",
    [
        ([], "html", None),
        (["--out", "x.MD"], "md", "x.MD"),
        (["--out", "x.md", "--format", "html"], "html", "x.md"),
        (["--format", "md"], "md", None),
    ],
)
def test_report_format_follows_flag_then_suffix(monkeypatch, capsys, argv, fmt, out):
    seen = {}

    def fake(out_dir, out=None, fmt="html", literature=None, title=None):
        seen.update(out_dir=out_dir, out=out, fmt=fmt, literature=literature)
        return Path("somewhere")

    monkeypatch.setattr("shrinkbench.report.write_report", fake)
    assert main(["report", "results", *argv, "--literature", "lit"]) == 0
    assert seen == {"out_dir": "results", "out": out, "fmt": fmt, "literature": "lit"}
    assert capsys.readouterr().out == "somewhere\n"


def test_report_user_errors_are_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path / "missing") in err and err.startswith("shrinkbench: error:")
    with pytest.raises(SystemExit) as exc:
        main(["report", str(tmp_path), "--format", "pdf"])
    assert exc.value.code == 2


def test_literature_command_summary_and_outputs(tmp_path, capsys, monkeypatch):
    survey = write_survey(tmp_path / "survey")
    monkeypatch.delenv(report_cmd.LITERATURE_ENV, raising=False)
    assert main(["literature", "--data", str(survey)]) == 0
    text = capsys.readouterr().out
    assert "papers: 5    results: 6" in text
    assert "CIFAR-10  ResNet-56       2        3          3" in text

    assert main(["literature", "--data", str(survey), "--format", "csv", "--top", "1"]) == 0
    assert capsys.readouterr().out == "dataset,model,papers,results,plottable\nCIFAR-10,ResNet-56,2,3,3\n"

    monkeypatch.setenv(report_cmd.LITERATURE_ENV, str(survey))
    out = tmp_path / "lit"
    assert main(["literature", "--format", "json", "--out", str(out), "--top", "1"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["papers"] == 5 and info["top_pairs"][0]["papers"] == 2
    assert sorted(p.name for p in out.iterdir()) == [
        "cifar-10_resnet-56.png", "cifar-10_resnet-56.svg", "normalized_results.csv", "pairs.csv",
        "summary.json"]
    assert json.loads((out / "summary.json").read_text())["results"] == 6


def test_literature_needs_data(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(report_cmd.LITERATURE_ENV, raising=False)
    assert main(["literature"]) == 2
    err = capsys.readouterr().err
    assert "--data" in err and report_cmd.LITERATURE_ENV in err
    (tmp_path / "empty").mkdir()
    assert main(["literature", "--data", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "empty") in err and "Papers" in err
