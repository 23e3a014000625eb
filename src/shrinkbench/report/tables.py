"""Report tables built from results DataFrames, with cells formatted for reading (mean ± std)."""

from __future__ import annotations

import math
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from .. import __version__
from ..results import analysis
from ..results.checks import MANY_CLASSES, num_classes
from ..results.frame import KEY_COLUMNS, METRIC_KEYS
from ..results.names import display_name
from .defaults import CONFIG_DEFAULTS, DEFINING, same_value
from .names import metric_label

PASS, FAIL = "\u2713", "\u2717"
PM = "\u00b1"


def fmt_number(value: object, digits: int = 2, scale: float = 1.0, suffix: str = "") -> str:
    """A number with fixed decimals (empty for missing values)."""
    try:
        x = float(value) * scale  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "" if value is None else str(value)
    if not math.isfinite(x):
        return ""
    text = f"{x:.{digits}f}"
    if text.startswith("-") and not text.strip("-0."):  # -0.00: a small negative shown as zero
        text = text[1:]
    return f"{text}{suffix}"


def fmt_pm(mean: object, std: object, digits: int = 2, scale: float = 1.0) -> str:
    """'mean ± std', or the mean alone when the spread is unknown (a single seed)."""
    m = fmt_number(mean, digits, scale)
    s = fmt_number(std, digits, scale)
    if not m:
        return ""
    return f"{m} {PM} {s}" if s else m


def fmt_ratio(value: object) -> str:
    """A compression or speedup ratio: '8', '12.5', '1.33'."""
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
    return f"{x:.3g}" if math.isfinite(x) else ""


def _finite(value: object) -> float | None:
    """The value as a finite float, or None."""
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def fmt_p(value: object) -> str:
    """A p-value: three significant digits, '<0.001' below that."""
    x = _finite(value)
    if x is None:
        return ""
    return "<0.001" if x < 1e-3 else f"{x:.3f}"


def with_changes(runs: pd.DataFrame, metrics: Iterable[str]) -> pd.DataFrame:
    """`runs` with delta_<metric> (run minus its unpruned reference) for each metric present."""
    out = runs
    for metric in metrics:
        if metric in out.columns and len(out):
            out = analysis.accuracy_change(out, metric)
    return out


def show_top5(runs: pd.DataFrame, dataset: object = None) -> bool:
    """Whether top-5 means something for `dataset` (all data sets of `runs` when None).

    True for more than MANY_CLASSES classes (the checklist's rule); for a data set whose class count
    is unknown, True when top-5 was recorded.
    """
    datasets = runs["dataset"].dropna().unique() if dataset is None else [dataset]
    for name in datasets:
        classes = num_classes(runs, name)
        if classes is not None:
            if classes > MANY_CLASSES:
                return True
            continue
        top5 = pd.to_numeric(runs.loc[runs["dataset"] == name].get("post_test_top5_pct"), errors="coerce")
        if top5 is not None and top5.notna().any():
            return True
    return False


SUMMARY_METRICS: tuple[tuple[str, str, float, int], ...] = (
    # column, header, scale, decimals
    ("compression_ratio", "Compression ratio", 1.0, 2),
    ("speedup", "Speedup", 1.0, 2),
    ("pre_test_top1_pct", "Top-1 before FT (%)", 1.0, 2),
    ("post_test_top1_pct", "Top-1 after FT (%)", 1.0, 2),
    ("delta_post_test_top1_pct", "\u0394 top-1 (pp)", 1.0, 2),
    ("post_test_top5_pct", "Top-5 after FT (%)", 1.0, 2),
    ("delta_post_test_top5_pct", "\u0394 top-5 (pp)", 1.0, 2),
)


def summary_table(runs: pd.DataFrame, top5: bool | None = None) -> pd.DataFrame:
    """Per strategy and requested compression: seeds and mean ± std of the headline metrics.

    Top-5 columns only when `top5` (default: `show_top5(runs)`). Where latencies were measured, the
    theoretical and the measured speedup stand side by side, each named as such.
    """
    top5 = show_top5(runs) if top5 is None else top5
    data = with_changes(runs, ("post_test_top1_pct", "post_test_top5_pct") if top5 else ("post_test_top1_pct",))
    measured = analysis.has_measured_speed(data)
    spec = [(m, metric_label(m, measured) if m == "speedup" else h, sc, d) for m, h, sc, d in SUMMARY_METRICS]
    if measured:
        data = data.assign(speedup_measured=analysis.measured_speedup(data))  # broken timings: NaN
        at = next(i for i, (m, *_) in enumerate(spec) if m == "speedup") + 1
        spec.insert(at, ("speedup_measured", metric_label("speedup_measured"), 1.0, 2))
    metrics = [m for m, *_ in spec if m in data.columns and (top5 or "top5" not in m)]
    # the seeds column counts the runs behind the accuracy and cost figures; a latency is optional
    counted = [m for m in metrics if m != "speedup_measured"]
    agg = analysis.aggregate(data, metrics=metrics, by=("strategy", "compression"))
    if len(agg):  # by name, a lottery ticket before its controls
        order = sorted(range(len(agg)), key=lambda i: (analysis.strategy_sort_key(agg["strategy"].iloc[i]),
                                                       agg["compression"].iloc[i]))
        agg = agg.iloc[order]
    rows = []
    for _, r in agg.iterrows():
        row = {"Strategy": display_name(r["strategy"]), "Compression": fmt_ratio(r["compression"]),
               # the seeds behind every number of the row (a run without a value is not counted)
               "Seeds": int(min(r[f"{m}_n"] for m in counted)) if counted else 0}
        for column, header, scale, digits in spec:
            if column in metrics:
                row[header] = fmt_pm(r[f"{column}_mean"], r[f"{column}_std"], digits, scale)
        rows.append(row)
    return pd.DataFrame(rows)


def checklist_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The paper's reporting checklist: pass/fail, what it asks, what was found, where it comes from."""
    rows = [
        {"": PASS if item.passed else FAIL, "Rule": item.description, "Found": item.detail,
         "Paper": item.reference}
        for item in analysis.checklist(runs)
    ]
    return pd.DataFrame(rows, columns=["", "Rule", "Found", "Paper"])


def comparison_table(runs: pd.DataFrame, metric: str = "post_test_top1_pct",
                     comparisons: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every pair of strategies at each compression, paired over seeds, with Holm-adjusted p-values.

    Each row names the strategy with the higher mean first, so every difference is >= 0. Where the runs
    recorded their training cost, a last column gives the ratio of the two strategies' training MACs
    (higher / lower mean), "equal" within analysis.EQUAL_COST.
    """
    if comparisons is None:
        comparisons = analysis.compare_per_compression(runs, metric)
    costs = "macs_ratio" in comparisons and bool(np.isfinite(comparisons["macs_ratio"].astype(float)).any())
    rows = []
    order = comparisons.assign(_size=comparisons["mean_diff"].abs()).sort_values(
        ["compression", "_size"], ascending=[True, False], kind="stable") if len(comparisons) else comparisons
    for _, c in order.iterrows():
        flip = c["mean_diff"] < 0
        higher, lower = (c["b"], c["a"]) if flip else (c["a"], c["b"])
        sign = -1.0 if flip else 1.0
        low, high = sorted((sign * c["ci95_low"], sign * c["ci95_high"]))
        rows.append({"Compression": fmt_ratio(c["compression"]),
                     "Higher mean": display_name(higher), "Lower mean": display_name(lower),
                     "Seeds": int(c["n"]), "\u0394 (pp)": fmt_number(sign * c["mean_diff"], 2),
                     "95% CI": fmt_interval(low, high), "p": fmt_p(c["p_value"]),
                     "Holm p": fmt_p(c["p_holm"]), "Significant": "yes" if c["significant"] else "no"})
        if costs:
            rows[-1][COST_HEADER] = fmt_cost_ratio(1.0 / c["macs_ratio"] if flip else c["macs_ratio"],
                                                   c["equal_cost"])
    return pd.DataFrame(rows)


COST_HEADER = "Training MACs, higher / lower"


def fmt_cost_ratio(ratio: object, equal: object) -> str:
    """The ratio of two training costs: "equal" (within analysis.EQUAL_COST), "5.2×", or empty."""
    if isinstance(equal, (bool, np.bool_)) and equal:
        return "equal"
    return fmt_times(ratio) if isinstance(equal, (bool, np.bool_)) else ""


def fmt_times(value: object) -> str:
    """A ratio of two costs: '0.94×', '4.00×', '123×' (empty when unknown)."""
    x = _finite(value)
    if x is None:
        return ""
    return f"{x:.0f}\u00d7" if abs(x) >= 100 else f"{x:.2f}\u00d7"


def fmt_interval(low: object, high: object, digits: int = 2) -> str:
    """'[low, high]', or empty when either end is unknown."""
    lo, hi = fmt_number(low, digits), fmt_number(high, digits)
    return f"[{lo}, {hi}]" if lo and hi else ""


def auc_table(runs: pd.DataFrame, metric: str = "post_test_top1_pct") -> pd.DataFrame:
    """Mean accuracy over the log2 compression and log2 speedup ranges all strategies share."""
    parts = {}
    speedup = "theoretical speedup" if analysis.has_measured_speed(runs) else "speedup"
    for x, label in (("compression_ratio", "compression"), ("speedup", speedup)):
        if x in runs.columns and pd.to_numeric(runs[x], errors="coerce").notna().any():
            parts[label] = analysis.auc(runs, metric=metric, x=x, by=("dataset", "model"))
    if not parts:
        return pd.DataFrame()
    strategies = sorted({s for t in parts.values() for s in t["strategy"]}, key=analysis.strategy_sort_key)
    rows = []
    for strategy in strategies:
        row = {"Strategy": display_name(strategy)}
        for label, table in parts.items():
            hit = table[table["strategy"] == strategy]
            if hit.empty:
                continue
            r = hit.iloc[0]
            shared = np.isfinite(r["log2_lo"]) and np.isfinite(r["log2_hi"])
            span = (f"{2 ** r['log2_lo']:.3g}\u2013{2 ** r['log2_hi']:.3g}\u00d7"
                    if shared and r["log2_hi"] > r["log2_lo"] else "no common range" if shared else "")
            row[f"Mean top-1 over {label} (%)"] = fmt_number(r["auc"], 2)
            row[f"{label[0].upper()}{label[1:]} range"] = span
        rows.append(row)
    return pd.DataFrame(rows)


def pareto_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Operating points (seed means) not beaten in both compression ratio and top-1 after fine-tuning."""
    needed = ("compression_ratio", "post_test_top1_pct", "speedup")
    metrics = [m for m in needed if m in runs.columns]
    if len(metrics) < 2 or runs.empty:
        return pd.DataFrame()
    measured = analysis.has_measured_speed(runs)
    if measured:
        metrics.append("speedup_measured")
        runs = runs.assign(speedup_measured=analysis.measured_speedup(runs))
    means = analysis.aggregate(runs, metrics=metrics, by=("strategy", "compression"))
    front = analysis.pareto_front(means, x="compression_ratio_mean", y="post_test_top1_pct_mean")
    rows = []
    for _, r in front.iterrows():
        row = {"Strategy": display_name(r["strategy"]),
               "Compression ratio": fmt_number(r["compression_ratio_mean"]),
               metric_label("speedup", measured): fmt_number(r.get("speedup_mean"))}
        if measured:
            row[metric_label("speedup_measured")] = fmt_number(r.get("speedup_measured_mean"))
        row["Top-1 after FT (%)"] = fmt_number(r["post_test_top1_pct_mean"], 2)
        rows.append(row)
    return pd.DataFrame(rows)


def fmt_ms(value: object) -> str:
    """A latency in milliseconds to about three significant digits ('0.123', '4.56', '78.9', '1234')."""
    x = _finite(value)
    if x is None:
        return ""
    digits = 0 if abs(x) >= 100 else 1 if abs(x) >= 10 else 2 if abs(x) >= 1 else 3
    return fmt_number(x, digits)


def _values(values: object) -> str:
    """Distinct settings (a tuple from analysis.measured_speed) as one cell."""
    if not isinstance(values, tuple):
        return ""
    return ", ".join(_plain(v) for v in values)


def _pruning_kind(structured: float, compression: object) -> str:
    """'structured', 'unstructured' or 'mixed' from the fraction of structured runs; the control is 'none'."""
    try:
        if math.isclose(float(compression), 1.0):  # type: ignore[arg-type]
            return "none (control)"
    except (TypeError, ValueError):
        pass
    if structured >= 1.0:
        return "structured"
    return "unstructured" if structured <= 0.0 else "mixed"


def measured_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per strategy and compression: theoretical speedup, measured speedup (median [min, max] over
    seeds), dense and pruned latency (medians) and the batch, threads and device they were timed at."""
    table = analysis.measured_speed(runs, by=("strategy", "compression"))
    if table.empty:
        return pd.DataFrame()

    def present(column: str) -> bool:
        return column in table and table[column].notna().any()

    channels = present("channels_kept_fraction_median") and (table["structured"] > 0).any()
    sparse = present("speedup_measured_sparse_median") or present("latency_sparse_ms_median")
    rows = []
    for _, r in table.iterrows():
        row = {"Strategy": display_name(r["strategy"]), "Compression": fmt_ratio(r["compression"]),
               "Seeds": int(r["n"]), metric_label("structured"): _pruning_kind(r["structured"], r["compression"])}
        if channels:
            row[metric_label("channels_kept_fraction")] = fmt_number(r["channels_kept_fraction_median"], 1, 100.0)
        row[metric_label("speedup")] = fmt_number(r.get("speedup_median"))
        median = fmt_number(r["speedup_measured_median"])
        spread = (fmt_interval(r["speedup_measured_min"], r["speedup_measured_max"])
                  if r["n"] > 1 else "")
        row[metric_label("speedup_measured")] = f"{median} {spread}".strip()
        if sparse:
            row[metric_label("speedup_measured_sparse")] = fmt_number(r.get("speedup_measured_sparse_median"))
        row[metric_label("latency_dense_ms")] = fmt_ms(r.get("latency_dense_ms_median"))
        row[metric_label("latency_ms")] = fmt_ms(r.get("latency_ms_median"))
        if sparse:
            row[metric_label("latency_sparse_ms")] = fmt_ms(r.get("latency_sparse_ms_median"))
        for setting in analysis.SETTING_COLUMNS:
            row[metric_label(setting)] = _values(r.get(setting))
        rows.append(row)
    return pd.DataFrame(rows)


SLOWER_HEADERS = ["Run", "Data set", "Model", "Strategy", "Compression", "Seed"]


def slower_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs that need fewer MACs than the dense model yet run slower (analysis.slower_than_dense)."""
    flagged = analysis.slower_than_dense(runs)
    columns = [*SLOWER_HEADERS, metric_label("speedup"), metric_label("speedup_measured"),
               metric_label("latency_dense_ms"), metric_label("latency_ms")]
    rows = []
    for _, r in flagged.iterrows():
        strategy = r.get("strategy")
        rows.append(dict(zip(columns, (
            r["run_id"], r.get("dataset"), r.get("model"),
            display_name(strategy) if isinstance(strategy, str) else "", fmt_ratio(r.get("compression")),
            r.get("seed"), fmt_number(r.get("speedup")), fmt_number(r.get("speedup_measured")),
            fmt_ms(r.get("latency_dense_ms")), fmt_ms(r.get("latency_ms"))))))
    return pd.DataFrame(rows, columns=columns)


FAILED_COLUMNS = ["Run", "Dataset", "Model", "Strategy", "Compression", "Seed", "Error"]


def failed_table(failed: pd.DataFrame, limit: int = 300) -> pd.DataFrame:
    """Failed runs with their key and the first line of their error."""
    rows = []
    for _, r in failed.iterrows():
        error = str(r.get("error") or "").strip().splitlines()
        message = error[0] if error else ""
        strategy = r.get("strategy")
        rows.append({"Run": r["run_id"], "Dataset": r.get("dataset"), "Model": r.get("model"),
                     "Strategy": display_name(strategy) if isinstance(strategy, str) else "",
                     "Compression": fmt_ratio(r.get("compression")), "Seed": r.get("seed"),
                     "Error": message if len(message) <= limit else message[: limit - 1] + "\u2026"})
    return pd.DataFrame(rows, columns=FAILED_COLUMNS)


def _distinct(values: pd.Series, fmt: Callable[[object], str] = str) -> str:
    """Distinct values, with run counts when there is more than one."""
    counts = values.dropna().map(lambda v: fmt(v) if not isinstance(v, str) else v).value_counts(sort=False)
    if counts.empty:
        return ""
    if len(counts) == 1:
        return str(counts.index[0])
    return ", ".join(f"{v} ({n} runs)" for v, n in sorted(counts.items(), key=lambda kv: str(kv[0])))


def config_columns(runs: pd.DataFrame) -> list[str]:
    """The flattened config columns of a results DataFrame (dotted names other than env.*)."""
    fixed = {"run_id", "status", "error", *KEY_COLUMNS, *METRIC_KEYS}
    return [c for c in runs.columns
            if c not in fixed and "." in str(c) and not str(c).startswith("env.")]


def setup_table(runs: pd.DataFrame, counts: dict[str, dict[str, int]]) -> tuple[pd.DataFrame, int]:
    """What was run: run counts, the grid, the training budgets and every setting not at its default.

    Returns the table and the number of known settings left out because every run has the default.
    """
    rows = []
    for kind, per_status in counts.items():
        text = ", ".join(f"{n} {s}" for s, n in per_status.items() if n)
        rows.append((f"{'pruned' if kind == 'prune' else kind} runs", text or "none", ""))
    pruned = runs[~np.isclose(pd.to_numeric(runs.get("compression"), errors="coerce"), 1.0)] if len(runs) else runs
    controls = len(runs) - len(pruned)
    datasets = sorted(runs["dataset"].dropna().unique(), key=str) if "dataset" in runs else []
    shown = []
    for name in datasets:
        classes = num_classes(runs, name)
        shown.append(f"{name} ({classes} classes)" if classes else str(name))
    rows.append(("Data set", ", ".join(shown), ""))
    rows.append(("Model", ", ".join(str(v) for v in sorted(runs["model"].dropna().unique(), key=str))
                 if "model" in runs else "", ""))
    strategies = [display_name(v) for v in sorted(pruned["strategy"].dropna().unique(),
                                                  key=analysis.strategy_sort_key)] \
        if len(pruned) else []
    rows.append(("Strategies", ", ".join(strategies) + ("; Unpruned: the compression-1 control"
                                                        if controls else ""), ""))
    compressions = sorted(runs["compression"].dropna().unique()) if "compression" in runs else []
    rows.append(("Compressions", ", ".join(fmt_ratio(v) for v in compressions), ""))
    rows.append(("Seeds", ", ".join(str(v) for v in sorted(runs["seed"].dropna().unique()))
                 if "seed" in runs else "", ""))
    left_out = 0
    # top-level settings (threads, precision, ...) have no dot in their name: take them from the defaults
    top_level = [k for k in CONFIG_DEFAULTS if "." not in k and k in runs and k not in KEY_COLUMNS]
    for column in [*DEFINING, *(c for c in [*config_columns(runs), *top_level] if c not in DEFINING)]:
        if column not in runs:
            continue
        # a control resets pruning.* to the defaults: judge those settings on pruned runs alone
        values = (pruned if column.startswith("pruning.") and len(pruned) else runs)[column]
        known = column in CONFIG_DEFAULTS
        default = CONFIG_DEFAULTS.get(column)
        if column not in DEFINING:
            if known and all(same_value(v, default) for v in values):
                left_out += 1
                continue
            if not known and all(same_value(v, None) or v == () for v in values):
                continue
        label = {"dense.recipe.epochs": "Dense training epochs (dense.recipe.epochs)",
                 "finetune.epochs": "Fine-tuning epochs (finetune.epochs)"}.get(column, column)
        values = values.map(lambda v: "none" if same_value(v, None) else v)
        rows.append((label, _distinct(values, fmt=_plain),
                     _plain(default) if known and default is not None else ("none" if known else "")))
    return pd.DataFrame(rows, columns=["Setting", "Value", "Default"]), left_out


def setup_note(left_out: int) -> str:
    """The sentence under the setup table about the settings it leaves out."""
    return (f"The other {left_out} settings have their default values in every run (shrinkbench "
            f"{__version__}; docs/experiments.md lists them).")


def _plain(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, tuple):
        return "[" + ", ".join(_plain(v) for v in value) + "]"
    return str(value)


def dense_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The dense models' test accuracy per data set and model (mean ± std over seeds); top-5 where it counts."""
    rows = []
    for (dataset, model), group in runs.groupby(["dataset", "model"], sort=True):
        per_seed = group.groupby("seed")[[c for c in ("dense_test_top1_pct", "dense_test_top5_pct") if c in group]]
        means = per_seed.mean()
        row = {"Data set": dataset, "Model": model, "Seeds": len(means)}
        for column, header in (("dense_test_top1_pct", "Top-1 (%)"), ("dense_test_top5_pct", "Top-5 (%)")):
            if column in means and ("top1" in column or show_top5(runs, dataset)):
                row[header] = fmt_pm(means[column].mean(), means[column].std(), 2)
        rows.append(row)
    return pd.DataFrame(rows)


def environment_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The recorded environment (env.* columns): each field's distinct values over the runs."""
    columns = [c for c in runs.columns if str(c).startswith("env.")]
    return pd.DataFrame([(c[len("env."):], _distinct(runs[c], fmt=_plain)) for c in columns],
                        columns=["Field", "Value"])
