"""The survey's published tables: reading them and normalizing every result to common units."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ..errors import DataError

# How a column's bare numbers (without "%") are read: "number" as is; "percent" as a fraction when
# |x| <= 1, else as percent; "points" (accuracy changes) always as percentage points.
COLUMN_KINDS: dict[str, str] = {
    "Err1": "percent", "Err5": "percent", "Top1": "percent", "Top5": "percent",
    "OrigTop1": "percent", "OrigTop5": "percent", "OrigErr1": "percent", "OrigErr5": "percent",
    "stdTop1": "points", "stdOrigTop1": "points", "dTop1": "points", "dTop5": "points",
    "savedParams": "percent", "keptParams": "percent", "savedFLOPS": "percent", "keptFLOPS": "percent",
    "MParams": "number", "OrigMParams": "number", "GFLOPS": "number", "OrigGFLOPS": "number",
    "old/new Nparam": "number", "old/new FLOPS": "number", "NumTrials": "number",
}
ID_COLUMNS = ("Name", "Paper", "Dataset", "Model", "Method")
REQUIRED_RESULT_COLUMNS = ("Paper", "Dataset", "Model")
TABLES = {"papers": "Papers", "results": "Results", "models": "Models", "datasets": "Datasets"}
UNKNOWN_NAMES = {"", "???", "?", "nan"}
_MISSING = {"", "-", "--", "?", "???", "n/a", "na", "nan", "none"}


def parse_value(cell: object, kind: str = "number") -> float:
    """One published cell as a float: '93.55%' -> 0.9355, '-0.4%' -> -0.004, '13x' -> 13, '' -> nan."""
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return math.nan
    text = str(cell).strip().replace("\u2212", "-").replace(",", "").replace(" ", "")
    if text.lower() in _MISSING:
        return math.nan
    percent = text.endswith("%")
    text = re.sub(r"[%x\u00d7X]$", "", text)
    try:
        value = float(text)
    except ValueError:
        return math.nan
    if percent or kind == "points" or (kind == "percent" and abs(value) > 1):
        return value / 100
    return value


def parse_columns(raw: pd.DataFrame) -> pd.DataFrame:
    """The survey's numeric columns parsed to floats (fractions for percentages); absent columns are nan."""
    out = pd.DataFrame(index=raw.index)
    for column, kind in COLUMN_KINDS.items():
        if column in raw:
            out[column] = [parse_value(v, kind) for v in raw[column]]
        else:
            out[column] = np.nan
    return out


def _positive(series: pd.Series) -> pd.Series:
    """Keep finite positive values, nan elsewhere."""
    return series.where(np.isfinite(series) & (series > 0))


def _inverse_kept(kept: pd.Series) -> pd.Series:
    return _positive(1.0 / kept.where(kept > 0))


def _inverse_saved(saved: pd.Series) -> pd.Series:
    return _positive(1.0 / (1.0 - saved.where(saved < 1)))


def _ratio(orig: pd.Series, new: pd.Series) -> pd.Series:
    return _positive(orig / new.where(new > 0))


Form = tuple[str, Callable[[pd.DataFrame], pd.Series]]

# Each quantity, from the first form a row gives, in this order (the most direct form first).
COMPRESSION_FORMS: list[Form] = [
    ("old/new Nparam", lambda p: _positive(p["old/new Nparam"])),
    ("keptParams", lambda p: _inverse_kept(p["keptParams"])),
    ("savedParams", lambda p: _inverse_saved(p["savedParams"])),
    ("OrigMParams/MParams", lambda p: _ratio(p["OrigMParams"], p["MParams"])),
]
SPEEDUP_FORMS: list[Form] = [
    ("old/new FLOPS", lambda p: _positive(p["old/new FLOPS"])),
    ("keptFLOPS", lambda p: _inverse_kept(p["keptFLOPS"])),
    ("savedFLOPS", lambda p: _inverse_saved(p["savedFLOPS"])),
    ("OrigGFLOPS/GFLOPS", lambda p: _ratio(p["OrigGFLOPS"], p["GFLOPS"])),
]


def _accuracy_forms(k: int) -> tuple[list[Form], list[Form], list[Form]]:
    """Forms of the pruned accuracy, the original accuracy and their change, for top-k."""
    pruned = [(f"Top{k}", lambda p: p[f"Top{k}"]), (f"Err{k}", lambda p: 1 - p[f"Err{k}"])]
    orig = [(f"OrigTop{k}", lambda p: p[f"OrigTop{k}"]), (f"OrigErr{k}", lambda p: 1 - p[f"OrigErr{k}"])]
    change = [
        (f"dTop{k}", lambda p: p[f"dTop{k}"]),
        (f"Top{k}-OrigTop{k}", lambda p: _first(p, pruned)[0] - _first(p, orig)[0]),
    ]
    return pruned, orig, change


def _first(parsed: pd.DataFrame, forms: list[Form]) -> tuple[pd.Series, pd.Series]:
    """The value from the first form present in each row, and the name of that form."""
    value = pd.Series(np.nan, index=parsed.index, dtype=float)
    source = pd.Series(None, index=parsed.index, dtype=object)
    for name, fn in forms:
        candidate = fn(parsed).astype(float)
        take = value.isna() & candidate.notna()
        value.loc[take] = candidate[take]
        source.loc[take] = name
    return value, source


def normalize_results(raw: pd.DataFrame) -> pd.DataFrame:
    """One row per published result in common units: compression ratio, speedup, top-1/top-5 change.

    Accuracies and their changes are fractions (0.01 = one percentage point); `*_from` columns name
    the published column each value was derived from.
    """
    parsed = parse_columns(raw)
    out = pd.DataFrame(index=raw.index)
    for column, name in (("Name", "result"), ("Paper", "paper"), ("Dataset", "dataset"),
                         ("Model", "model"), ("Method", "method")):
        values = raw[column] if column in raw else pd.Series(None, index=raw.index, dtype=object)
        out[name] = [_clean_name(v) for v in values]
    out["compression"], out["compression_from"] = _first(parsed, COMPRESSION_FORMS)
    out["speedup"], out["speedup_from"] = _first(parsed, SPEEDUP_FORMS)
    for k in (1, 5):
        pruned, orig, change = _accuracy_forms(k)
        out[f"top{k}"], _ = _first(parsed, pruned)
        out[f"dense_top{k}"], _ = _first(parsed, orig)
        out[f"dtop{k}"], out[f"dtop{k}_from"] = _first(parsed, change)
    return out.reset_index(drop=True)


def _clean_name(value: object) -> str | None:
    """A stripped name, None for empty cells and the survey's '???' placeholders."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return None if text.lower() in UNKNOWN_NAMES else text


@dataclass(frozen=True)
class Survey:
    """The survey's papers (as published) and its results (normalized)."""

    papers: pd.DataFrame
    results: pd.DataFrame
    source: Path

    @property
    def n_papers(self) -> int:
        """Distinct papers in the Papers table."""
        return int(self.papers["Name"].map(_clean_name).dropna().nunique())

    @property
    def n_results(self) -> int:
        """Rows in the Results table."""
        return len(self.results)


def find_table(data_dir: Path, table: str) -> Path:
    """The CSV of one survey table in `data_dir` (e.g. 'Results-Grid view.csv' for 'Results')."""
    matches = sorted(p for p in data_dir.glob("*.csv") if re.match(rf"{table}\b", p.name, re.IGNORECASE))
    if not matches:
        raise DataError(
            f"survey folder {data_dir} has no {table} table; expected a file named like "
            f"'{table}-Grid view.csv' (the survey data export of the original ShrinkBench repository)"
        )
    return matches[0]


def _read_csv(path: Path) -> pd.DataFrame:
    """A survey table with every cell as text (the encoding's byte-order mark removed)."""
    try:
        return pd.read_csv(path, dtype=str, encoding="utf-8-sig", keep_default_na=True)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"survey table {path} is not a readable CSV file: {exc}") from exc


def load_survey(data_dir: str | Path) -> Survey:
    """Read the survey's Papers and Results tables from `data_dir` and normalize the results."""
    folder = Path(data_dir).expanduser()
    if not folder.is_dir():
        raise DataError(f"survey folder {folder} does not exist or is not a folder")
    papers = _read_csv(find_table(folder, TABLES["papers"]))
    results_path = find_table(folder, TABLES["results"])
    raw = _read_csv(results_path)
    missing = [c for c in REQUIRED_RESULT_COLUMNS if c not in raw]
    if missing or "Name" not in papers:
        what = ", ".join(missing) if missing else "Name (in the Papers table)"
        raise DataError(f"survey table {results_path} lacks the column(s) {what}")
    results = normalize_results(raw)
    labels = _paper_labels(papers)
    results["paper_label"] = [labels.get(p, p) for p in results["paper"]]
    return Survey(papers=papers, results=results, source=folder)


def _paper_labels(papers: pd.DataFrame) -> dict[str, str]:
    """Paper id -> 'Author Year' for legends, when the Papers table gives both."""
    labels = {}
    for _, row in papers.iterrows():
        name = _clean_name(row.get("Name"))
        author = _clean_name(row.get("AuthorName"))
        date = _clean_name(row.get("Date"))
        if name:
            year = date.split("-")[0] if date else ""
            labels[name] = f"{author} {year}".strip() if author else name
    return labels


def plottable(results: pd.DataFrame) -> pd.Series:
    """Rows with an accuracy change and a compression ratio or a speedup (a point on some plot)."""
    has_x = results["compression"].notna() | results["speedup"].notna()
    return has_x & (results["dtop1"].notna() | results["dtop5"].notna())


def top_pairs(results: pd.DataFrame, n: int | None = 10) -> pd.DataFrame:
    """The (dataset, model) pairs used by the most papers: dataset, model, papers, results, plottable."""
    known = results.dropna(subset=["dataset", "model", "paper"])
    known = known.assign(plottable=plottable(known).astype(int))
    table = (
        known.groupby(["dataset", "model"])
        .agg(papers=("paper", "nunique"), results=("paper", "size"), plottable=("plottable", "sum"))
        .reset_index()
        .sort_values(["papers", "results", "dataset", "model"], ascending=[False, False, True, True])
        .reset_index(drop=True)
    )
    return table if n is None else table.head(n)


def pair_results(survey: Survey, dataset: str, model: str) -> pd.DataFrame:
    """The normalized results of one (dataset, model) pair, in the survey's spelling."""
    r = survey.results
    return r[(r["dataset"] == dataset) & (r["model"] == model)].reset_index(drop=True)


def summary(survey: Survey, n_pairs: int = 10) -> dict:
    """Counts and top pairs: papers, results, results usable per axis, the most used pairs."""
    r = survey.results
    has_change = r["dtop1"].notna() | r["dtop5"].notna()
    return {
        "source": str(survey.source),
        "papers": survey.n_papers,
        "papers_with_results": int(r["paper"].dropna().nunique()),
        "results": survey.n_results,
        "results_with_compression": int((r["compression"].notna() & has_change).sum()),
        "results_with_speedup": int((r["speedup"].notna() & has_change).sum()),
        "datasets": int(r["dataset"].dropna().nunique()),
        "models": int(r["model"].dropna().nunique()),
        "top_pairs": top_pairs(r, n_pairs).to_dict(orient="records"),
    }
