"""The report of a results folder: summary, plots, tables, setup, checklist, failures, environment."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from .. import __version__
from ..errors import ConfigError, StoreError
from ..results import Store, analysis, load, load_epochs, load_layers
from ..results.files import atomic_write_bytes
from . import headline, language, schedules, tables
from .tables import fmt_number, fmt_ratio
from .document import Bullets, Document, Heading, Image, Preformatted, Table, Text, to_html, to_markdown
from .literature import Survey, load_survey, pair_results, plottable
from .names import pair_title, survey_dataset, survey_model

FORMATS = {"html": "html", "md": "md", "markdown": "md"}
CHANGE_METRICS = ("pre_test_top1_pct", "post_test_top1_pct", "pre_test_top5_pct", "post_test_top5_pct")
MAX_TRACEBACKS = 5  # failed runs whose traceback tail is shown
TRACEBACK_LINES = 12


def _pairs(runs: pd.DataFrame) -> list[tuple[str, str]]:
    """The (dataset, model) pairs present, sorted."""
    keys = runs[["dataset", "model"]].dropna().drop_duplicates()
    return sorted((str(d), str(m)) for d, m in keys.itertuples(index=False, name=None))


def _of_pair(frame: pd.DataFrame, dataset: str, model: str) -> pd.DataFrame:
    if frame.empty or "dataset" not in frame:
        return frame
    return frame[(frame["dataset"] == dataset) & (frame["model"] == model)]


def _load_runs(out_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict[str, int]]]:
    """Done and failed pruned runs, and the run counts per kind and status; an empty store is an error."""
    runs = load(out_dir, status=("done", "failed"))
    done = runs[runs["status"] == "done"].drop(columns="error").reset_index(drop=True)
    failed = runs[runs["status"] == "failed"].reset_index(drop=True)
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
    """The report of the results in `out_dir` as a Document (nothing written).

    Sections: summary (findings first), plots, tables, language models (when some data set and
    model has perplexities and no accuracy: those pairs are left out of the accuracy plots and
    tables), schedules (when some run was not pruned one-shot), measured speed (when the runs timed
    their forward passes), setup, checklist, literature (when given), failed runs, environment.
    """
    folder = Path(out_dir)
    done, failed, counts = _load_runs(folder)
    survey = literature
    if literature is not None and not isinstance(literature, Survey):
        survey = load_survey(literature)
    doc = Document(title or f"ShrinkBench report: {folder.resolve().name}")
    runs = tables.with_changes(done, CHANGE_METRICS) if len(done) else done
    pairs = _pairs(runs) if len(runs) else []
    # language models (perplexity, no accuracy) get their own section instead of the accuracy ones
    text = language.language_pairs(runs, pairs, _of_pair)
    accuracy = [pair for pair in pairs if pair not in text]
    comparisons = {pair: analysis.compare_per_compression(_of_pair(runs, *pair)) for pair in accuracy}
    _summary(doc, folder, runs, counts, pairs, comparisons, text)
    if accuracy:
        _plots(doc, folder, runs, accuracy, text)
    if accuracy or not text:
        _tables(doc, runs, accuracy, comparisons, text)
    if text:
        language.section(doc, runs, text, _of_pair, load_layers(folder))
    if pairs and analysis.has_schedules(runs):
        schedules.section(doc, runs, pairs, _of_pair)
    if pairs and analysis.has_measured_speed(runs):
        _measured_speed(doc, runs, pairs, text)
    _setup(doc, done, counts, text)
    _checklist(doc, done)
    if survey is not None:
        _literature(doc, runs, survey, text)
    _failures(doc, failed)
    _environment(doc, done)
    return doc


def _controls(runs: pd.DataFrame) -> int:
    """How many of the done runs are unpruned controls (compression 1)."""
    if "compression" not in runs or runs.empty:
        return 0
    return int((pd.to_numeric(runs["compression"], errors="coerce") == 1).sum())


ACCURACY_NOTE = ("Accuracies are on the test split, in percent; changes are in percentage points (pp). "
                 "Strategies are compared at each compression on runs paired by seed (paired t-test), with "
                 "Holm's correction over all the comparisons shown for a data set and model.")
LANGUAGE_NOTE = ("Language models (perplexity, no accuracy) are ranked by their lowest perplexity "
                 "(lower is better), compared only between runs evaluated under an identical protocol; "
                 "see Language models.")


def _summary(doc: Document, folder: Path, runs: pd.DataFrame, counts: dict[str, dict[str, int]],
             pairs: list[tuple[str, str]], comparisons: dict[tuple[str, str], pd.DataFrame],
             text: list[tuple[str, str]] = ()) -> None:
    prune = counts["prune"]
    holds = sum(item.passed for item in analysis.checklist(runs)) if len(runs) else 0
    notes = [ACCURACY_NOTE] if len(text) < len(pairs) or not pairs else []
    notes += [LANGUAGE_NOTE] if text else []
    doc.add(Heading("Summary"),
            Text(f"Results folder {folder}: {prune['done']} runs done ({_controls(runs)} of them "
                 f"unpruned control{'s' if _controls(runs) != 1 else ''} at compression 1), "
                 f"{prune['failed']} failed, "
                 f"{prune['pending'] + prune['running']} pending or running; {holds} of 6 items of the "
                 "reporting checklist hold (see Checklist). " + " ".join(notes)))
    if len(runs) and analysis.has_schedules(runs):
        doc.add(Text("Schedules: some runs were pruned on a schedule other than one-shot; each schedule "
                     "is its own curve, labelled \"Strategy [schedule]\" in every figure and table (see "
                     "Schedules, with the training cost of each)."))
    slower = len(analysis.slower_than_dense(runs)) if len(runs) else 0
    if slower:
        one = slower == 1
        doc.add(Text(f"Measured speed: {_runs_text(slower)} need{'s' if one else ''} fewer "
                     f"multiply-accumulates than {'its' if one else 'their'} dense model (theoretical "
                     f"speedup > {analysis.THEORETICAL_MIN:g}) but run{'s' if one else ''} slower than it "
                     f"(measured speedup < {analysis.MEASURED_MAX:g}); see Measured speed."))
    if not pairs:
        doc.add(Text("No finished runs to summarize."))
    for dataset, model in pairs:
        pair = _of_pair(runs, dataset, model)
        name = pair_title(dataset, model)
        if (dataset, model) in text:
            language.summary(doc, pair, name)
            continue
        table = headline.winners(pair, comparisons[(dataset, model)])
        doc.add(Heading(name, level=3),
                Bullets(tuple(headline.findings(table, comparisons[(dataset, model)], pair))))
        if not table.empty:
            winners = headline.winners_table(table)
            doc.add(Table(winners,
                          f"{name}: the best strategy at each compression by mean top-1 after fine-tuning "
                          "(with its 95% t interval over seeds) against the runner-up, paired by seed; "
                          "Holm p from the per-compression comparisons (see Tables)"
                          + ("; training MACs: the best strategy's training cost over the runner-up's, "
                             f"\"equal\" within {100 * analysis.EQUAL_COST:g}%"
                             if headline.COST_COLUMN in winners else "")))


def _language_pointer(doc: Document, text: list[tuple[str, str]]) -> None:
    """A line naming the language-model pairs that a section of accuracy leaves out."""
    if text:
        doc.add(Text("Language models, measured by perplexity (see Language models): "
                     + "; ".join(pair_title(*pair) for pair in text) + "."))


def _plots(doc: Document, folder: Path, runs: pd.DataFrame, pairs: list[tuple[str, str]],
           text: list[tuple[str, str]] = ()) -> None:
    from .plots import accuracy_figure, finetune_figure, layer_density_figure  # matplotlib
    from .style import legend_label  # display names; "Strategy [schedule]" on two lines

    doc.add(Heading("Plots"))
    _language_pointer(doc, text)
    layers = load_layers(folder)
    epochs = load_epochs(folder, kind="prune")
    for dataset, model in pairs:
        pair = _of_pair(runs, dataset, model)
        name = pair_title(dataset, model)
        doc.add(Heading(name, level=3))
        if not (pd.to_numeric(pair["compression"], errors="coerce") > 1).any():
            doc.add(Text("Only unpruned controls (compression 1) finished: nothing to plot yet."))
            continue
        for k in (1, 5) if tables.show_top5(pair, dataset) else (1,):
            fig = accuracy_figure(pair, k=k, title=name, labeller=legend_label)
            doc.add(Image(fig, f"{dataset}-{model}-top{k}",
                          f"{name}: top-{k} test accuracy before and after fine-tuning against the "
                          "compression ratio (all parameters / nonzero parameters, top row) and the "
                          "theoretical speedup (dense / remaining multiply-accumulates, bottom row); lines "
                          "are seed means, bands \u00b11 std. Dashed: the dense model; dotted: the "
                          "unpruned control fine-tuned with the same recipe."))
        fig = finetune_figure(_of_pair(epochs, dataset, model), pair, title=name, labeller=legend_label)
        if fig is not None:
            doc.add(Image(fig, f"{dataset}-{model}-finetuning",
                          f"{name}: validation top-1 during fine-tuning, one panel per strategy, one line "
                          "per compression (mean over seeds; darker is more compressed). Epoch 0 is the "
                          "pruned model before fine-tuning; dotted: the unpruned control."))
        pair_layers = _of_pair(layers, dataset, model)
        fig = layer_density_figure(pair_layers, title=name, labeller=legend_label) if len(pair_layers) else None
        if fig is not None:
            doc.add(Image(fig, f"{dataset}-{model}-layer-density",
                          f"{name}: fraction of each prunable layer's weights kept, one run per strategy "
                          "at the largest compression all strategies reached."))


def _tables(doc: Document, runs: pd.DataFrame, pairs: list[tuple[str, str]],
            comparisons: dict[tuple[str, str], pd.DataFrame], text: list[tuple[str, str]] = ()) -> None:
    doc.add(Heading("Tables"))
    _language_pointer(doc, text)
    if not pairs:
        doc.add(Text("No finished runs to compare."))
        return
    for dataset, model in pairs:
        pair = _of_pair(runs, dataset, model)
        name = pair_title(dataset, model)
        doc.add(Heading(name, level=3),
                Table(tables.summary_table(pair, top5=tables.show_top5(pair, dataset)),
                      f"{name}: mean \u00b1 std over seeds (FT = fine-tuning; \u0394 = change from the "
                      "unpruned reference of the same seed)"))
        comparison = tables.comparison_table(pair, comparisons=comparisons[(dataset, model)])
        if comparison.empty:
            doc.add(Text("No pair of strategies shares a compression and seed to compare on."))
        else:
            n_tests = int(comparisons[(dataset, model)]["p_holm"].notna().sum())
            doc.add(Table(comparison, f"{name}: top-1 after fine-tuning, every pair of strategies at each "
                                      "compression, paired by seed: mean difference \u0394 (higher minus "
                                      "lower mean, pp) with its 95% t interval, paired t-test p, and p "
                                      f"adjusted by Holm's method over these {n_tests} tests (significant: "
                                      "Holm p < 0.05)"
                                      + ("; training MACs: the higher-mean strategy's training cost "
                                         "over the lower's, \"equal\" within "
                                         f"{100 * analysis.EQUAL_COST:g}%"
                                         if tables.COST_HEADER in comparison else "")))
            note = schedules.comparison_cost_note(comparisons[(dataset, model)])
            if note:
                doc.add(Text(note))
        auc = tables.auc_table(pair)
        if not auc.empty:
            doc.add(Table(auc, f"{name}: area under the curve, the mean top-1 after fine-tuning over the "
                               "log2 range every strategy covers (higher is better)"))
        front = tables.pareto_table(pair)
        if not front.empty:
            doc.add(Table(front, f"{name}: Pareto front, the operating points no other beats in both "
                                 "compression and top-1 after fine-tuning"))


def _runs_text(n: int) -> str:
    return f"{n} pruned run{'s' if n != 1 else ''}"


def _measured_speed(doc: Document, runs: pd.DataFrame, pairs: list[tuple[str, str]],
                    text: list[tuple[str, str]] = ()) -> None:
    """Accuracy against measured speedup, measured against theoretical, the latencies behind them, why
    unstructured masks do not run faster, and the runs that got slower while needing fewer MACs."""
    from .plots import measured_speed_figure  # matplotlib
    from .style import legend_label

    doc.add(Heading("Measured speed"),
            Text("The theoretical speedup counts multiply-accumulates (dense / remaining); the measured "
                 "speedup is the dense model's latency over the pruned model's: the median wall-clock time "
                 "of one eval-mode forward pass of each, timed side by side in one process at the batch "
                 "size, thread count and device listed. Latencies are measurements, not deterministic: "
                 "they vary between repeats and machines, so compare them only between runs timed with "
                 "the same settings, and read differences of a few percent as noise."))
    kinds = analysis.measured_by_kind(runs)
    unstructured = kinds[kinds["kind"] == "unstructured"]
    if len(unstructured):
        u = unstructured.iloc[0]
        doc.add(Text(
            f"Why unstructured pruning does not run faster: unstructured masks ({_runs_text(int(u['runs']))} "
            "here) set weights to zero but keep every tensor's shape, so the dense kernels do the same "
            "work and the measured speedup stays near 1.0× whatever the theoretical speedup says "
            "(many zeros can make the same kernels a little faster, never by the theoretical factor) "
            f"(these runs: median {fmt_number(u['measured_median'])}×, from "
            f"{fmt_number(u['measured_min'])}× to {fmt_number(u['measured_max'])}×, at theoretical "
            f"speedups up to {fmt_ratio(u['theoretical_max'])}×). Only structured (channel) pruning, "
            "which leaves a smaller dense model, or sparse kernels turn fewer MACs into less time."))
    structured = kinds[kinds["kind"] == "structured"]
    if len(structured):
        r = structured.iloc[0]
        doc.add(Text(f"Structured pruning ({_runs_text(int(r['runs']))}, channels removed): median measured "
                     f"speedup {fmt_number(r['measured_median'])}×, from {fmt_number(r['measured_min'])}"
                     f"× to {fmt_number(r['measured_max'])}×, at theoretical speedups up to "
                     f"{fmt_ratio(r['theoretical_max'])}×."))
    unmeasured = []
    for dataset, model in pairs:
        pair = _of_pair(runs, dataset, model)
        name = pair_title(dataset, model)
        table = tables.measured_table(pair)
        if table.empty:
            unmeasured.append(name)
            continue
        doc.add(Heading(name, level=3))
        # its left panel is top-1 against measured speed: nothing to draw for a language model
        fig = measured_speed_figure(pair, title=name, labeller=legend_label) if (dataset, model) not in text \
            else None
        if fig is not None:
            doc.add(Image(fig, f"{dataset}-{model}-measured-speed",
                          f"{name}, left: top-1 test accuracy after fine-tuning against the measured "
                          "speedup (dense / pruned latency), one line per strategy through its "
                          "compressions; markers are seed means, error bars ±1 std over seeds. "
                          "Right: measured against theoretical speedup; on the dashed diagonal (ideal) "
                          "every multiply-accumulate saved would save its time, below it the latency falls "
                          "short. Filled markers: structured (channels removed); hollow: unstructured "
                          "masks. Dash-dotted: the dense model's speed (1×)."))
        doc.add(Table(table, f"{name}: theoretical speedup (median over seeds), measured speedup (median "
                             "[min, max] over seeds), and the median latencies of one forward pass of the "
                             "dense and the pruned model (ms), timed at the batch, threads and device shown"))
    if unmeasured:
        doc.add(Text("No run recorded a latency for: " + "; ".join(unmeasured) + "."))
    slower = tables.slower_table(runs)
    doc.add(Heading("Pruned runs slower than the dense model", level=3))
    condition = (f"theoretical speedup > {analysis.THEORETICAL_MIN:g} (fewer MACs) and measured speedup < "
                 f"{analysis.MEASURED_MAX:g} (slower than the dense model beyond timing noise)")
    if slower.empty:
        doc.add(Text(f"No run has {condition}."))
    else:
        doc.add(Table(slower, f"{_runs_text(len(slower))} with {condition}: the pruning saved "
                              "multiply-accumulates but not time (latencies are medians of the run's "
                              "repeats, in ms)"))


def _setup(doc: Document, runs: pd.DataFrame, counts: dict[str, dict[str, int]],
           text: list[tuple[str, str]] = ()) -> None:
    table, left_out = tables.setup_table(runs, counts)
    doc.add(Heading("Setup"),
            Table(table, "What was run: the grid, the training budgets and every setting that is not at "
                         "its default"))
    if left_out:
        doc.add(Text(tables.setup_note(left_out)))
    # the dense language models' perplexities are in the Language models section, per protocol
    keys = list(zip(runs["dataset"], runs["model"])) if len(runs) and text else []
    image = runs[[key not in text for key in keys]] if keys else runs
    if len(image):
        doc.add(Table(tables.dense_table(image), "Dense (unpruned) models, test accuracy"))


def _checklist(doc: Document, runs: pd.DataFrame) -> None:
    table = tables.checklist_table(runs)
    passed = int((table[""] == tables.PASS).sum())
    doc.add(Heading("Checklist"),
            Text(f"{passed} of {len(table)} items of the reporting checklist of Blalock et al. (2020) "
                 "hold for these runs."),
            Table(table))


def _literature(doc: Document, runs: pd.DataFrame, survey: Survey, text: list[tuple[str, str]] = ()) -> None:
    doc.add(Heading("Comparison with the literature"),
            Text(f"Published results from the survey of Blalock et al. (2020), {survey.n_papers} papers, "
                 f"{survey.n_results} results, normalized to compression ratio, theoretical speedup and "
                 "change in accuracy. Published figures use each paper's own baseline, training budget "
                 "and FLOP counting, so they are context, not a controlled comparison."))
    unmatched = []
    for dataset, model in _pairs(runs):
        if (dataset, model) in text:  # the survey holds accuracies of image classifiers only
            continue
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
        from .litplots import literature_figure  # matplotlib
        from .style import legend_label

        pair = _of_pair(runs, dataset, model)
        topk = (1, 5) if tables.show_top5(pair, dataset) else (1,)
        pruned = pair[pd.to_numeric(pair["compression"], errors="coerce") > 1]  # the control is the 0 line
        fig = literature_figure(points, name, ours=pruned, labeller=legend_label, topk=topk)
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
