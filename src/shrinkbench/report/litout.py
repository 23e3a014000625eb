"""Outputs of `shrinkbench literature`: the printed summary and the per-pair figures and tables."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from ..results.files import atomic_write_text, to_json
from .document import slug
from .literature import Survey, load_survey, pair_results, summary, top_pairs
from .litplots import literature_figure
from .style import save_figure

SUMMARY_FORMATS = ("table", "csv", "json")


# The survey's accuracies are held as fractions; what a user reads shows them as everything else
# in shrinkbench does: percent (and percentage points for changes), the unit in the column name.
_PERCENT_COLUMNS = {"top1": "top1_pct", "dense_top1": "dense_top1_pct", "dtop1": "dtop1_pp",
                    "top5": "top5_pct", "dense_top5": "dense_top5_pct", "dtop5": "dtop5_pp"}


def percent_columns(results: "pd.DataFrame") -> "pd.DataFrame":
    """The normalized survey results with accuracies in percent / percentage points, renamed."""
    out = results.copy()
    for column, renamed in _PERCENT_COLUMNS.items():
        if column in out:
            out[column] = (out[column] * 100).round(6)  # no 0.019999999999997797 for 0.02
    return out.rename(columns=_PERCENT_COLUMNS)


def format_summary(info: dict, fmt: str = "table") -> str:
    """The summary as an aligned text table, CSV (the pairs) or JSON."""
    if fmt == "json":
        return to_json(info)
    pairs = info["top_pairs"]
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["dataset", "model", "papers", "results", "plottable"],
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(pairs)
        return buf.getvalue().rstrip("\n")
    lines = [
        f"survey: {info['source']}",
        f"papers: {info['papers']}    results: {info['results']}    "
        f"data sets: {info['datasets']}    models: {info['models']}",
        f"results with an accuracy change and a compression ratio: {info['results_with_compression']}; "
        f"with a speedup: {info['results_with_speedup']}",
        "",
        "most used (dataset, model) pairs:",
    ]
    width_d = max([len("dataset"), *(len(p["dataset"]) for p in pairs)])
    width_m = max([len("model"), *(len(p["model"]) for p in pairs)])
    lines.append(f"  {'dataset':<{width_d}}  {'model':<{width_m}}  papers  results  plottable")
    for p in pairs:
        lines.append(f"  {p['dataset']:<{width_d}}  {p['model']:<{width_m}}  {p['papers']:>6}  "
                     f"{p['results']:>7}  {p['plottable']:>9}")
    lines.append("(plottable: results with an accuracy change and a compression ratio or speedup)")
    return "\n".join(lines)


def write_literature(data_dir: str | os.PathLike | Survey, out_dir: str | os.PathLike,
                     n_pairs: int = 5) -> list[Path]:
    """Write the summary (JSON), all pairs (CSV), the normalized results (CSV) and figures.

    Figures are drawn for the `n_pairs` most used pairs that have plottable results.
    """
    survey = data_dir if isinstance(data_dir, Survey) else load_survey(data_dir)
    out = Path(out_dir)
    written = [
        atomic_write_text(out / "summary.json", to_json(summary(survey, n_pairs)) + "\n"),
        atomic_write_text(out / "pairs.csv", top_pairs(survey.results, None).to_csv(index=False)),
        atomic_write_text(out / "normalized_results.csv", percent_columns(survey.results).to_csv(index=False)),
    ]
    pairs = top_pairs(survey.results, None)
    for pair in pairs[pairs["plottable"] > 0].head(n_pairs).to_dict(orient="records"):
        points = pair_results(survey, pair["dataset"], pair["model"])
        title = f"{pair['model']} on {pair['dataset']} ({pair['papers']} papers)"
        fig = literature_figure(points, title)
        written += save_figure(fig, out / f"{slug(pair['dataset'])}_{slug(pair['model'])}")
    return written

