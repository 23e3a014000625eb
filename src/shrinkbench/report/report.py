"""The report of a results folder: setup, checklist, plots, tables, comparisons, failures, environment."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from .. import __version__
from ..errors import ConfigError, StoreError
from ..results import Store, load, load_layers
from ..results.files import atomic_write_bytes
from ..results.names import display_name
from . import tables
from .document import Bullets, Document, Heading, Image, Preformatted, Table, Text, to_html, to_markdown
from .literature import Survey, load_survey, pair_results, plottable
from .litplots import literature_figure
from .names import survey_dataset, survey_model
from .plots import accuracy_figure, layer_density_figure, pair_title

FORMATS = {"html": "html", "md": "md", "markdown": "md"}
CHANGE_METRICS = ("pre_test_top1_pct", "post_test_top1_pct", "pre_test_top5_pct", "post_test_top5_pct")
MAX_TRACEBACKS = 5  # failed runs whose traceback tail is shown
TRACEBACK_LINES = 12


def _pairs(runs: pd.DataFrame) -> list[tuple[str, str]]:
    """The (dataset, model) pairs present, sorted."""
    keys = runs[["dataset", "model"]].dropna().drop_duplicates()
    return sorted((str(d), str(m)) for d, m in keys.itertuples(index=False, name=None))


def _load_runs(out_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict[str, int]]]:
    """Done and failed pruned runs, and the run counts per kind and status; an empty store is an error."""
    done = load(out_dir, status="done")
    failed = load(out_dir, status="failed")
    with Store(out_dir, create=False) as store:
        counts = {kind: store.counts(kind) for kind in ("prune", "dense")}
        if sum(counts["prune"].values()) == 0:
            raise StoreError(f"results folder {out_dir} has no pruned runs yet; run a sweep into it first")
        tracebacks = {}
        for run_id in failed["run_id"].head(MAX_TRACEBACKS):
            run = store.get(run_id) or {}
            tail = str(run.get("traceback") or "").rstrip().splitlines()[-TRACEBACK_LINES:]
            if tail:
                tracebacks[run_id] = "\n".join(tail)
    failed.attrs["tracebacks"] = tracebacks
    return done, failed, counts


def build_report(out_dir: str | os.PathLike, literature: str | os.PathLike | Survey | None = None,
                 title: str | None = None) -> Document:
    """The report of the results in `out_dir` as a Document (nothing written)."""
    folder = Path(out_dir)
    done, failed, counts = _load_runs(folder)
    survey = literature
    if literature is not None and not isinstance(literature, Survey):
        survey = load_survey(literature)
    doc = Document(title or f"ShrinkBench report: {folder.resolve().name}")
    n_done, n_failed = counts["prune"]["done"], counts["prune"]["failed"]
    doc.add(Text(f"Results folder {folder}: {n_done} pruned runs done, {n_failed} failed, "
                 f"{counts['prune']['pending'] + counts['prune']['running']} pending or running. "
                 "Accuracies are on the test split, as fractions shown in percent; changes are in "
                 "percentage points (pp) against the unpruned reference of the same seed; "
                 "tables give mean \u00b1 standard deviation over seeds."))
    _setup(doc, done, counts)
    _checklist(doc, done)
    layers = load_layers(folder) if len(done) else pd.DataFrame()
    runs = tables.with_changes(done, CHANGE_METRICS) if len(done) else done
    for dataset, model in _pairs(runs):
        pair = runs[(runs["dataset"] == dataset) & (runs["model"] == model)]
        pair_layers = layers
        if len(layers):
            pair_layers = layers[(layers["dataset"] == dataset) & (layers["model"] == model)]
        _results(doc, pair, pair_layers, dataset, model)
    _comparisons(doc, runs)
    if survey is not None:
        _literature(doc, runs, survey)
    _failures(doc, failed)
    _environment(doc, done)
    return doc


def _setup(doc: Document, runs: pd.DataFrame, counts: dict[str, dict[str, int]]) -> None:
    doc.add(Heading("Setup"), Table(tables.setup_table(runs, counts), "What was run"))
    if len(runs):
        doc.add(Table(tables.dense_table(runs), "Dense (unpruned) models, test accuracy"))


def _checklist(doc: Document, runs: pd.DataFrame) -> None:
    table = tables.checklist_table(runs)
    passed = int((table[""] == tables.PASS).sum())
    doc.add(Heading("Checklist"),
            Text(f"{passed} of {len(table)} items of the reporting checklist of Blalock et al. (2020) "
                 "hold for these runs."),
            Table(table))


def _results(doc: Document, runs: pd.DataFrame, layers: pd.DataFrame, dataset: str, model: str) -> None:
    name = pair_title(dataset, model)
    doc.add(Heading(f"Results: {name}"),
            Table(tables.summary_table(runs), f"{name}: mean \u00b1 std over seeds (FT = fine-tuning)"))
    for x, x_text in (("compression", "compression ratio"), ("speedup", "theoretical speedup")):
        for change in (False, True):
            what = "Change in accuracy" if change else "Accuracy"
            fig = accuracy_figure(runs, x=x, change=change, title=name, labeller=display_name)
            doc.add(Image(fig, f"{dataset}-{model}-{'change' if change else 'accuracy'}-{x}",
                          f"{name}: {what.lower()} (top-1, top-5; before and after fine-tuning) against "
                          f"{x_text}; lines are seed means, bands \u00b11 std; dashed: "
                          f"{'no change' if change else 'dense model'}."))
    if len(layers):
        fig = layer_density_figure(layers, title=name, labeller=display_name)
        if fig is not None:
            doc.add(Image(fig, f"{dataset}-{model}-layer-density",
                          f"{name}: fraction of each prunable layer's weights kept, one run per strategy "
                          "at the largest compression all strategies reached."))


def _comparisons(doc: Document, runs: pd.DataFrame) -> None:
    doc.add(Heading("Comparisons"))
    if runs.empty:
        doc.add(Text("No finished runs to compare."))
        return
    for dataset, model in _pairs(runs):
        pair = runs[(runs["dataset"] == dataset) & (runs["model"] == model)]
        name = pair_title(dataset, model)
        doc.add(Heading(name, level=3))
        comparison = tables.comparison_table(pair)
        if comparison.empty:
            doc.add(Text("No pair of strategies shares a compression and seed to compare on."))
        else:
            doc.add(Table(comparison, "Top-1 after fine-tuning, strategy A minus B, runs paired by "
                                      "compression and seed (pp; p-values of a paired t-test and a "
                                      "Wilcoxon signed-rank test, the latter for 6 pairs or more)"))
        auc = tables.auc_table(pair)
        if not auc.empty:
            doc.add(Table(auc, "Area under the curve: mean top-1 after fine-tuning over the log2 range "
                               "every strategy covers (higher is better)"))
        front = tables.pareto_table(pair)
        if not front.empty:
            doc.add(Table(front, "Pareto front: operating points no other beats in both compression "
                                 "and top-1 after fine-tuning"))


def _literature(doc: Document, runs: pd.DataFrame, survey: Survey) -> None:
    doc.add(Heading("Comparison with the literature"),
            Text(f"Published results from the survey of Blalock et al. (2020), {survey.n_papers} papers, "
                 f"{survey.n_results} results, normalized to compression ratio, theoretical speedup and "
                 "change in accuracy. Published figures use each paper's own baseline, training budget "
                 "and FLOP counting, so they are context, not a controlled comparison."))
    unmatched = []
    for dataset, model in _pairs(runs):
        theirs_d = survey_dataset(dataset, survey.results["dataset"].dropna().unique())
        theirs_m = survey_model(model, survey.results["model"].dropna().unique())
        points = pair_results(survey, theirs_d, theirs_m) if theirs_d and theirs_m else pd.DataFrame()
        name = f"{theirs_m} on {theirs_d}"
        if points.empty:
            unmatched.append(pair_title(dataset, model))
            continue
        n_listed = points["paper"].nunique()
        points = points[plottable(points)]
        if points.empty:
            doc.add(Text(f"{name}: the survey lists {n_listed} papers, but none gives both an accuracy "
                         "change and a compression ratio or speedup, so there is nothing to plot."))
            continue
        pair = runs[(runs["dataset"] == dataset) & (runs["model"] == model)]
        fig = literature_figure(points, name, ours=pair, labeller=display_name)
        n_papers = points["paper"].nunique()
        doc.add(Image(fig, f"literature-{dataset}-{model}",
                      f"{name}: our strategies after fine-tuning (lines, bands \u00b11 std) over "
                      f"{len(points)} published results from {n_papers} papers (grey markers)."))
    if unmatched:
        doc.add(Text("No published results for: " + "; ".join(unmatched) + "."))


def _failures(doc: Document, failed: pd.DataFrame) -> None:
    doc.add(Heading("Failed runs"))
    if failed.empty:
        doc.add(Text("No run failed."))
        return
    doc.add(Text(f"{len(failed)} runs failed; rerun them with the sweep's --retry-failed option once "
                 "the cause is fixed. The first line of each error:"),
            Table(tables.failed_table(failed)))
    for run_id, tail in failed.attrs.get("tracebacks", {}).items():
        doc.add(Text(f"End of the traceback of run {run_id}:"), Preformatted(tail))


def _environment(doc: Document, runs: pd.DataFrame) -> None:
    env = tables.environment_table(runs)
    doc.add(Heading("Environment"))
    if env.empty:
        doc.add(Text("The runs recorded no environment."))
    else:
        doc.add(Table(env, "Where the runs ran (values that differ between runs list their run counts)"))
    doc.add(Bullets((f"Report generated by shrinkbench {__version__}.",)))


def write_report(out_dir: str | os.PathLike, out: str | os.PathLike | None = None, fmt: str = "html",
                 literature: str | os.PathLike | Survey | None = None, title: str | None = None) -> Path:
    """Write the report of `out_dir` as one HTML file or as Markdown plus images; returns its path."""
    if fmt not in FORMATS:
        raise ConfigError(f"report format {fmt!r} is not supported; choose from: html, md")
    kind = FORMATS[fmt]
    target = Path(out) if out is not None else Path(out_dir) / f"report.{kind}"
    if target.is_dir():
        raise ConfigError(f"report output {target} is a folder; give a file name such as report.{kind}")
    _check_writable(target)
    doc = build_report(out_dir, literature=literature, title=title)
    try:
        if kind == "html":
            atomic_write_bytes(target, to_html(doc).encode("utf-8"))
            return target
        image_dir = target.parent / f"{target.stem}_files"
        text, files = to_markdown(doc, image_dir, image_dir.name)
        _replace_folder(image_dir, files)
        atomic_write_bytes(target, text.encode("utf-8"))
    except OSError as exc:
        raise ConfigError(f"report output {target} cannot be written: "
                          f"{exc.strerror or exc}") from None
    return target


def _check_writable(target: Path) -> None:
    """Refuse, before the report is built, an output path whose folder cannot be made or written."""
    folder = target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ConfigError(f"report output {target} cannot be written: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"report output {target} cannot be written: folder {folder} is not "
                          "writable")


def _replace_folder(folder: Path, files: dict[Path, bytes]) -> None:
    """Write `files` into a fresh temporary folder, then swap it in for `folder` by renames."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        staging.chmod(0o755)
        for path, data in files.items():
            (staging / path.name).write_bytes(data)
        old = None
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            folder.rename(old)
        staging.rename(folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
