"""Statistics over runs: seed aggregation, accuracy change, AUC, Pareto fronts, paired tests.

Only `scipy.special` is imported up front (the t distribution); `scipy.stats`, several times
slower to import, is loaded by `paired_comparison` alone.
"""

from __future__ import annotations

import itertools
import math
import re
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import special

from ..errors import ConfigError
from . import checks
from .checks import CheckItem
from .names import canonical_strategy, display_name

__all__ = [
    "GROUP_COLUMNS", "DEFAULT_METRICS", "aggregate", "accuracy_change", "auc", "pareto_front",
    "paired_comparison", "PairedComparison", "compare_per_compression", "holm", "checklist",
    "CheckItem", "t_halfwidth", "has_measured_speed", "measured_speedup", "is_structured", "measured_speed",
    "measured_by_kind", "slower_than_dense", "COST_KEYS", "EQUAL_COST", "base_strategy", "schedule_of",
    "schedule_kinds", "at_init", "is_oneshot", "strategy_sort_key", "has_schedules", "train_macs",
    "has_costs", "cost_ratio", "equal_cost", "training_cost", "unequal_costs", "round_points",
    "round_curves", "path_points", "LM_SPLITS", "is_lm_run", "is_language_model", "lm_splits",
    "lm_protocol_key", "parse_protocol", "protocol_groups", "lm_finetuned", "lm_change", "lm_dense",
    "lm_calibration", "NO_PROTOCOL",
]

GROUP_COLUMNS: tuple[str, ...] = ("dataset", "model", "strategy", "compression")
DEFAULT_METRICS: tuple[str, ...] = (
    "pre_test_top1_pct", "post_test_top1_pct", "post_test_top5_pct", "compression_ratio", "speedup",
    "speedup_measured",
)
PAIR_COLUMNS: tuple[str, ...] = ("dataset", "model", "compression", "seed")
CONTROL_PREFIXES: tuple[str, ...] = ("finetune.", "dense.")


def _require(df: pd.DataFrame, columns: Iterable[str], what: str = "column") -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ConfigError(
            f"results have no {what} {', '.join(map(repr, missing))}; "
            f"columns: {', '.join(map(str, df.columns))}"
        )


def _numeric(series: pd.Series) -> pd.Series:
    return pd.to_numeric(series, errors="coerce").astype(float)


def t_halfwidth(std: Any, n: Any, level: float = 0.95) -> Any:
    """Half-width of the t interval of a mean: t_{(1+level)/2, n-1} * std / sqrt(n); NaN for n < 2."""
    n_arr = np.asarray(n, dtype=float)
    std_arr = np.asarray(std, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        crit = special.stdtrit(np.where(n_arr >= 2, n_arr - 1, np.nan), 0.5 + level / 2)
        out = crit * std_arr / np.sqrt(n_arr)
    out = np.where(n_arr >= 2, out, np.nan)
    return out.item() if out.ndim == 0 else out


def _is_control(df: pd.DataFrame) -> np.ndarray:
    return np.isclose(_numeric(df["compression"]).to_numpy(), 1.0)


def aggregate(
    df: pd.DataFrame,
    metrics: Sequence[str] = DEFAULT_METRICS,
    by: Sequence[str] = GROUP_COLUMNS,
) -> pd.DataFrame:
    """Per group of `by`: <metric>_mean, _std (ddof=1), _ci95 (t half-width, NaN for n=1), _n (values)."""
    by = list(by)
    _require(df, by)
    if tuple(metrics) == DEFAULT_METRICS:
        metrics = [m for m in DEFAULT_METRICS if m in df.columns]
    else:
        metrics = list(metrics)
        _require(df, metrics, "metric")
    keys = [df[c] for c in by]
    parts = []
    for metric in metrics:
        grouped = _numeric(df[metric]).groupby(keys, dropna=False, sort=True)
        mean, std, n = grouped.mean(), grouped.std(ddof=1), grouped.count()
        parts += [
            mean.rename(f"{metric}_mean"),
            std.rename(f"{metric}_std"),
            pd.Series(t_halfwidth(std.to_numpy(), n.to_numpy()), index=n.index, name=f"{metric}_ci95"),
            n.rename(f"{metric}_n"),
        ]
    if not parts:
        groups = df.groupby(by, dropna=False, sort=True).size()
        return groups.index.to_frame(index=False)
    out = pd.concat(parts, axis=1)
    out.index.names = by
    return out.reset_index()


def _norm(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, (float, np.floating)) and math.isnan(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _row_keys(df: pd.DataFrame, columns: Sequence[str]) -> list[tuple]:
    if not columns:
        return [()] * len(df)
    return [tuple(_norm(v) for v in row) for row in df[list(columns)].itertuples(index=False, name=None)]


def control_columns(df: pd.DataFrame) -> list[str]:
    """Columns a compression-1 control shares with its runs: dataset, model, seed, finetune.*, dense.*."""
    recipe = sorted(c for c in df.columns if str(c).startswith(CONTROL_PREFIXES))
    return ["dataset", "model", "seed", *recipe]


def _dense_counterpart(metric: str) -> str | None:
    for stage in ("post_", "pre_"):
        if metric.startswith(stage):
            return "dense_" + metric[len(stage):]
    return None


def accuracy_change(df: pd.DataFrame, metric: str = "post_test_top1_pct") -> pd.DataFrame:
    """A copy of `df` with reference_<metric>, delta_<metric> (run - reference) and delta_reference."""
    _require(df, ["dataset", "model", "seed", "compression", metric])
    out = df.copy()
    values = _numeric(out[metric]).to_numpy()
    keys = _row_keys(out, control_columns(out))
    pooled: dict[tuple, list[float]] = {}
    for key, control, value in zip(keys, _is_control(out), values):
        if control and np.isfinite(value):
            pooled.setdefault(key, []).append(float(value))
    fallback_col = _dense_counterpart(metric)
    fallback = (
        _numeric(out[fallback_col]).to_numpy() if fallback_col in out.columns else np.full(len(out), np.nan)
    )
    reference = np.full(len(out), np.nan)
    source = np.full(len(out), "none", dtype=object)
    for i, key in enumerate(keys):
        if key in pooled:
            reference[i], source[i] = float(np.mean(pooled[key])), "control"
        elif np.isfinite(fallback[i]):
            reference[i], source[i] = fallback[i], "dense"
    out[f"reference_{metric}"] = reference
    out[f"delta_{metric}"] = values - reference
    out["delta_reference"] = source
    return out


def _curve(rows: pd.DataFrame, metric: str, x: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean (log2 x, metric) per operating point, sorted by x, non-finite points dropped."""
    point = rows["compression"] if "compression" in rows.columns else rows[x]
    means = pd.DataFrame({"x": _numeric(rows[x]), "y": _numeric(rows[metric])}).groupby(
        _numeric(point).to_numpy()
    ).mean()
    means = means[np.isfinite(means["x"]) & np.isfinite(means["y"]) & (means["x"] > 0)]
    means = means.sort_values("x")
    return np.log2(means["x"].to_numpy()), means["y"].to_numpy()


def _trapezoid(xs: np.ndarray, ys: np.ndarray) -> float:
    return float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2.0))


def auc(
    df: pd.DataFrame,
    metric: str = "post_test_top1_pct",
    x: str = "compression_ratio",
    by: Sequence[str] = ("dataset", "model"),
) -> pd.DataFrame:
    """Per (dataset, model, strategy): mean metric over log2(x), on the log2 range all strategies share."""
    by = list(by)
    _require(df, [*by, "strategy", metric, x])
    rows = df[~_is_control(df)] if "compression" in df.columns else df
    records = []
    for group_key, group in rows.groupby(by, dropna=False, sort=True):
        group_key = group_key if isinstance(group_key, tuple) else (group_key,)
        curves = {s: _curve(g, metric, x) for s, g in group.groupby("strategy", sort=True)}
        spans = [(lx[0], lx[-1]) for lx, _ in curves.values() if len(lx)]
        lo = max((a for a, _ in spans), default=np.nan)
        hi = min((b for _, b in spans), default=np.nan)
        for strategy, (lx, ly) in curves.items():
            value = np.nan
            if len(lx) and hi > lo:
                inner = lx[(lx > lo) & (lx < hi)]
                grid = np.concatenate([[lo], inner, [hi]])
                value = _trapezoid(grid, np.interp(grid, lx, ly)) / (hi - lo)
            records.append(
                {**dict(zip(by, group_key)), "strategy": strategy, "auc": value,
                 "points": len(lx), "log2_lo": lo, "log2_hi": hi}
            )
    columns = [*by, "strategy", "auc", "points", "log2_lo", "log2_hi"]
    return pd.DataFrame.from_records(records, columns=columns)


def _front_mask(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """True where no other point is >= in both coordinates and > in one."""
    keep = np.zeros(len(xs), dtype=bool)
    order = np.lexsort((-ys, -xs))
    best = -np.inf
    i = 0
    while i < len(order):
        j = i
        while j < len(order) and xs[order[j]] == xs[order[i]]:
            j += 1
        top = ys[order[i]]
        if top > best:
            for k in order[i:j]:
                keep[k] = ys[k] == top
            best = top
        i = j
    return keep


def pareto_front(
    df: pd.DataFrame,
    x: str = "compression_ratio",
    y: str = "post_test_top1_pct",
    by: Sequence[str] = (),
) -> pd.DataFrame:
    """The rows not dominated in (x, y), both higher-is-better (within each group of `by`), sorted by x."""
    by = list(by)
    _require(df, [*by, x, y])
    xs, ys = _numeric(df[x]).to_numpy(), _numeric(df[y]).to_numpy()
    finite = np.isfinite(xs) & np.isfinite(ys)
    keep = np.zeros(len(df), dtype=bool)
    groups = _row_keys(df, by)
    members: dict[tuple, list[int]] = {}
    for i, key in enumerate(groups):
        if finite[i]:
            members.setdefault(key, []).append(i)
    for idx in members.values():
        idx_arr = np.array(idx)
        keep[idx_arr[_front_mask(xs[idx_arr], ys[idx_arr])]] = True
    front = df[keep]
    return front.sort_values([*by, x], kind="stable") if len(front) else front


@dataclass(frozen=True)
class PairedComparison:
    """Strategy a minus strategy b over runs matched on (dataset, model, compression, seed)."""

    a: str
    b: str
    metric: str
    n: int
    mean_diff: float
    std_diff: float
    ci95_low: float
    ci95_high: float
    t_statistic: float
    p_value: float
    wilcoxon_p: float

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict."""
        return asdict(self)


def paired_comparison(
    df: pd.DataFrame,
    a: str,
    b: str,
    metric: str = "post_test_top1_pct",
    on: Sequence[str] = PAIR_COLUMNS,
) -> PairedComparison:
    """Paired difference a - b: mean, 95% t interval, paired t-test p and Wilcoxon p (n >= 6)."""
    on = list(on)
    _require(df, ["strategy", metric, *on])
    a, b = canonical_strategy(a), canonical_strategy(b)
    strategies = df["strategy"].map(canonical_strategy).to_numpy()
    present = sorted({str(s) for s in strategies if isinstance(s, str)})
    for name in (a, b):
        if name not in present:
            shown = sorted(display_name(s) for s in present if s != "none")
            raise ConfigError(f"strategy {display_name(name)!r} has no runs; strategies present: "
                              f"{', '.join(shown)}")
    pruned = ~_is_control(df) if "compression" in df.columns else np.ones(len(df), dtype=bool)

    def means(name: str) -> pd.Series:
        sub = df[(strategies == name) & pruned]
        values = _numeric(sub[metric])
        keep = values.notna()
        return values[keep].groupby([sub[c][keep] for c in on], dropna=False).mean()

    pairs = pd.concat([means(a).rename("a"), means(b).rename("b")], axis=1, join="inner")
    if pairs.empty:
        raise ConfigError(
            f"no matching pairs of {a!r} and {b!r} on ({', '.join(on)}) with a finite {metric}"
        )
    diff = (pairs["a"] - pairs["b"]).to_numpy()
    n = len(diff)
    mean = float(diff.mean())
    std = float(diff.std(ddof=1)) if n > 1 else math.nan
    half = t_halfwidth(std, n)
    t_stat = p = wil = math.nan
    from scipy import stats  # slow to import; only this function needs it

    if n > 1:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = stats.ttest_rel(pairs["a"].to_numpy(), pairs["b"].to_numpy())
        t_stat, p = float(result.statistic), float(result.pvalue)
    if n >= 6:
        try:
            wil = float(stats.wilcoxon(diff).pvalue)
        except ValueError:  # every difference is zero
            wil = math.nan
    return PairedComparison(display_name(a), display_name(b), metric, n, mean, std, mean - half,
                            mean + half, t_stat, p, wil)


def holm(p_values: Iterable[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the given order; NaN p-values stay NaN, outside the family."""
    p = np.asarray(list(p_values), dtype=float)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = len(finite)
    if m:
        order = finite[np.argsort(p[finite], kind="stable")]
        # the i-th smallest (from 0) is multiplied by m - i; adjusted values never decrease with rank
        scaled = (m - np.arange(m)) * p[order]
        out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out


COMPARISON_COLUMNS: tuple[str, ...] = (
    "compression", "a", "b", "n", "mean_a", "mean_b", "mean_diff", "std_diff", "ci95_low",
    "ci95_high", "t_statistic", "p_value", "p_holm", "significant", "macs_a", "macs_b", "macs_ratio",
    "equal_cost",
)


def _paired_t(diff: np.ndarray) -> tuple[float, float, float, float]:
    """Mean, sample std, t statistic and two-sided p of a one-sample t-test of `diff` against 0."""
    n = len(diff)
    mean = float(diff.mean())
    if n < 2:
        return mean, math.nan, math.nan, math.nan
    std = float(diff.std(ddof=1))
    if std == 0.0:
        # Every pair differs by the same amount (accuracies move in steps of one test example):
        # the t-test's p would be 0. Use the exact two-sided sign test instead: n differences of
        # one sign have probability 2 * 0.5**n under the null (0.25 for 3 seeds). Identical runs
        # (no difference at all) are not tested.
        t = math.nan if mean == 0.0 else math.copysign(math.inf, mean)
        p = math.nan if mean == 0.0 else min(1.0, 2.0 * 0.5 ** n)
        return mean, std, t, p
    t = mean / (std / math.sqrt(n))
    p = float(2.0 * special.stdtr(n - 1, -abs(t)))
    return mean, std, t, p


_TARGET = re.compile(r" \((speedup|channels)\)$")


def target_of(strategy: str) -> str:
    """What a strategy label's `compression` value is: `speedup` or `channels` for a channel
    strategy aimed at one (its label ends in "(speedup)"), else `compression`."""
    match = _TARGET.search(str(strategy))
    return match.group(1) if match else "compression"


def compare_per_compression(
    df: pd.DataFrame,
    metric: str = "post_test_top1_pct",
    by: Sequence[str] = ("dataset", "model"),
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Every pair of strategies at each compression, paired over seeds, Holm-corrected within each `by` group.

    One row per (*by, compression, a, b) with a < b by name: n pairs, mean_a, mean_b, mean_diff (a - b),
    std_diff, 95% t interval, paired t-test p, Holm-adjusted p over the group's rows, significant;
    and the mean training MACs of the paired runs of each (macs_a, macs_b), their ratio a / b and
    equal_cost (True within EQUAL_COST; None where a run did not record its cost).
    """
    by = list(by)
    _require(df, [*by, "strategy", "compression", "seed", metric])
    columns = [*by, *COMPARISON_COLUMNS]
    rows = df[~_is_control(df)]
    values = _numeric(rows[metric])
    keep = values.notna() & rows["strategy"].notna()
    rows, values = rows[keep], values[keep]
    # one value per (group, compression, strategy, seed): repeated runs of one key are averaged
    keys = [*by, "compression", "strategy", "seed"]
    means = values.groupby([rows[c] for c in keys], dropna=False, sort=True).mean()
    macs = train_macs(rows).groupby([rows[c] for c in keys], dropna=False, sort=True).mean()
    records: list[dict[str, Any]] = []
    for group_key, group in means.groupby(level=list(range(len(by))), dropna=False, sort=True):
        group_key = group_key if isinstance(group_key, tuple) else (group_key,)
        strategies = sorted({str(s) for s in group.index.get_level_values("strategy")})
        start = len(records)
        for compression, at in group.groupby(level="compression", sort=True):
            per_seed = {s: at.xs(s, level="strategy").droplevel(list(range(len(by) + 1)))
                        for s in strategies if s in at.index.get_level_values("strategy")}
            cost_at = macs.reindex(at.index)  # the same keys: one mean per run key
            per_seed_cost = {s: cost_at.xs(s, level="strategy").droplevel(list(range(len(by) + 1)))
                             for s in per_seed}
            for a, b in itertools.combinations([s for s in strategies if s in per_seed], 2):
                if target_of(a) != target_of(b):
                    continue  # "x2" means a speedup of 2 for one and a compression of 2 for the other
                pairs = pd.concat([per_seed[a].rename("a"), per_seed[b].rename("b")], axis=1,
                                  join="inner")
                if pairs.empty:
                    continue
                # differences rounded to 1e-9 pp, so float noise in equal accuracies is no "effect"
                diff = np.round(pairs["a"].to_numpy() - pairs["b"].to_numpy(), 9)
                mean, std, t, p = _paired_t(diff)
                half = t_halfwidth(std, len(diff))
                # the training cost of the runs paired here (NaN where the runs did not record it)
                cost = {s: per_seed_cost[s].reindex(pairs.index).mean() for s in (a, b)}
                records.append({
                    **dict(zip(by, group_key)), "compression": float(compression), "a": a, "b": b,
                    "n": len(diff), "mean_a": float(pairs["a"].mean()), "mean_b": float(pairs["b"].mean()),
                    "mean_diff": mean, "std_diff": std, "ci95_low": mean - half, "ci95_high": mean + half,
                    "t_statistic": t, "p_value": p, "macs_a": float(cost[a]), "macs_b": float(cost[b]),
                    "macs_ratio": cost_ratio(cost[a], cost[b]), "equal_cost": equal_cost(cost[a], cost[b]),
                })
        adjusted = holm([r["p_value"] for r in records[start:]])
        for record, p_adj in zip(records[start:], adjusted):
            record["p_holm"] = float(p_adj)
            record["significant"] = bool(np.isfinite(p_adj) and p_adj < alpha)
    return pd.DataFrame.from_records(records, columns=columns)


# --- measured speed -------------------------------------------------------------------------------
# A run is flagged when it needs clearly fewer multiply-accumulates than the dense model (theoretical
# speedup above THEORETICAL_MIN) yet runs clearly slower (measured speedup below MEASURED_MAX): the 5%
# margins keep timing noise from flagging runs whose latency simply did not move.
THEORETICAL_MIN = 1.05
MEASURED_MAX = 0.95
SETTING_COLUMNS: tuple[str, ...] = ("latency_batch", "latency_threads", "latency_device")
MEASURED_COLUMNS: tuple[str, ...] = (
    "speedup", "speedup_measured", "latency_dense_ms", "latency_ms", "latency_iqr_ms",
    "latency_dense_iqr_ms", "latency_sparse_ms", "speedup_measured_sparse", "channels_kept_fraction",
)
SLOWER_COLUMNS: tuple[str, ...] = (
    "run_id", "dataset", "model", "strategy", "compression", "seed", "structured", "speedup",
    "speedup_measured", "latency_dense_ms", "latency_ms",
)


def measured_speedup(df: pd.DataFrame) -> pd.Series:
    """The measured speedup of each run, NaN where absent, not finite or not positive."""
    if "speedup_measured" not in df.columns:
        return pd.Series(np.nan, index=df.index, dtype=float)
    values = _numeric(df["speedup_measured"])
    return values.where(np.isfinite(values) & (values > 0))


def has_measured_speed(df: pd.DataFrame) -> bool:
    """True when some run has a measured speedup (a store from before latencies were timed has none)."""
    return bool(measured_speedup(df).notna().any())


def is_structured(df: pd.DataFrame) -> np.ndarray:
    """Per run: True when it removed channels physically (`structured` 1); absent or NaN counts as masks."""
    if "structured" not in df.columns:
        return np.zeros(len(df), dtype=bool)
    return (_numeric(df["structured"]).fillna(0.0) >= 0.5).to_numpy()


def _distinct(values: pd.Series) -> tuple:
    """The distinct non-missing values of a column, in a stable order (integral floats as ints)."""
    out = set()
    for value in values:
        value = _norm(value)
        if value is None:
            continue
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        out.add(value)
    return tuple(sorted(out, key=lambda v: (isinstance(v, str), str(v) if isinstance(v, str) else v)))


def measured_speed(df: pd.DataFrame, by: Sequence[str] = GROUP_COLUMNS) -> pd.DataFrame:
    """Per group of `by`, over the runs with a measured speedup: n, the fraction of structured runs,
    <metric>_median of each measured-speed column present (theoretical `speedup` included),
    speedup_measured_min/_max, and the distinct latency settings (batch, threads, device) as tuples."""
    by = list(by)
    _require(df, by)
    measured = measured_speedup(df)
    rows = df[measured.notna()].assign(speedup_measured=measured[measured.notna()],
                                       _structured=is_structured(df)[measured.notna().to_numpy()])
    metrics = [c for c in MEASURED_COLUMNS if c in rows.columns]
    settings = [c for c in SETTING_COLUMNS if c in rows.columns]
    columns = [*by, "n", "structured", *(f"{m}_median" for m in metrics), "speedup_measured_min",
               "speedup_measured_max", *settings]
    records = []
    for key, group in rows.groupby(by, dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        record: dict[str, Any] = {**dict(zip(by, key)), "n": len(group),
                                  "structured": float(group["_structured"].mean())}
        for metric in metrics:
            values = _numeric(group[metric])
            values = values[np.isfinite(values)]
            record[f"{metric}_median"] = float(values.median()) if len(values) else np.nan
        record["speedup_measured_min"] = float(group["speedup_measured"].min())
        record["speedup_measured_max"] = float(group["speedup_measured"].max())
        for setting in settings:
            record[setting] = _distinct(group[setting])
        records.append(record)
    return pd.DataFrame.from_records(records, columns=columns)


def measured_by_kind(df: pd.DataFrame) -> pd.DataFrame:
    """Pruned runs (compression > 1) with a measured speedup, per kind ("structured", "unstructured"):
    runs, median / min / max measured speedup and the largest theoretical speedup among them."""
    columns = ["kind", "runs", "measured_median", "measured_min", "measured_max", "theoretical_max"]
    if "compression" not in df.columns:
        return pd.DataFrame(columns=columns)
    measured = measured_speedup(df)
    keep = (measured.notna() & ~_is_control(df)).to_numpy()
    structured = is_structured(df)
    theoretical = _numeric(df["speedup"]) if "speedup" in df.columns else pd.Series(np.nan, index=df.index)
    records = []
    for kind, mask in (("structured", structured), ("unstructured", ~structured)):
        chosen = keep & mask
        if not chosen.any():
            continue
        values = measured[chosen]
        theory = theoretical[chosen]
        theory = theory[np.isfinite(theory)]
        records.append({"kind": kind, "runs": int(chosen.sum()), "measured_median": float(values.median()),
                        "measured_min": float(values.min()), "measured_max": float(values.max()),
                        "theoretical_max": float(theory.max()) if len(theory) else np.nan})
    return pd.DataFrame.from_records(records, columns=columns)


def slower_than_dense(df: pd.DataFrame, theoretical_min: float = THEORETICAL_MIN,
                      measured_max: float = MEASURED_MAX) -> pd.DataFrame:
    """Runs that need fewer MACs (speedup > theoretical_min) yet run slower than the dense model
    (speedup_measured < measured_max), sorted by their key; the columns of SLOWER_COLUMNS present."""
    measured = measured_speedup(df)
    theoretical = _numeric(df["speedup"]) if "speedup" in df.columns else pd.Series(np.nan, index=df.index)
    flagged = df[(theoretical > theoretical_min) & (measured < measured_max)]
    flagged = flagged.assign(speedup_measured=measured[flagged.index])
    columns = [c for c in SLOWER_COLUMNS if c in df.columns or c == "speedup_measured"]
    order = [c for c in ("dataset", "model", "strategy", "compression", "seed", "run_id") if c in columns]
    out = flagged.reindex(columns=columns)
    return out.sort_values(order, kind="stable").reset_index(drop=True) if len(out) else out.reset_index(drop=True)


# --- schedules and training cost ------------------------------------------------------------------
# A run follows a schedule (results.frame: its label is "Strategy [schedule name]" unless one-shot).
# Pruned runs record their whole training cost (train_epochs, train_steps, train_macs: the dense
# training they started from included); iterative and lottery runs the accuracy after each round
# (round_compression, round_test_top1_pct); every scheduled run its sparsity path (path_step,
# path_sparsity, path_compression). Older stores have none of these: a run without them is one-shot.
SCHEDULE_KINDS: tuple[str, ...] = ("oneshot", "iterative", "gradual", "lottery")
ROUND_SCHEDULES: tuple[str, ...] = ("iterative", "lottery")
COST_KEYS: tuple[str, ...] = ("train_epochs", "train_steps", "train_macs")
EQUAL_COST = 0.01  # training MACs that differ by less than 1% count as the same cost
_BRACKET = re.compile(r" \[(?P<schedule>[^\]]*)\]")
COST_COLUMNS: tuple[str, ...] = (
    "dataset", "model", "strategy", "compression", "runs", "schedule", "reference",
    *(f"{k}_mean" for k in COST_KEYS), "reference_strategy", "reference_macs", "macs_ratio", "equal_cost",
)


def base_strategy(label: Any) -> Any:
    """A strategy label without its schedule: "GlobalMagWeight [iterative]" -> "GlobalMagWeight"."""
    return _BRACKET.sub("", label, count=1) if isinstance(label, str) else label


_CONTROL = re.compile(r" \w+ control\]$")


def strategy_sort_key(label: Any) -> tuple[str, bool, str]:
    """A sort key of strategy labels: by name, except that a lottery ticket comes right before its
    controls ("X [lottery (rewind 0)]", then "X [lottery (rewind 0) reinit control]")."""
    text = str(label)
    return _CONTROL.sub("]", text), bool(_CONTROL.search(text)), text


def schedule_of(label: Any) -> str:
    """The schedule name in a strategy label ("one-shot" when it has none)."""
    match = _BRACKET.search(label) if isinstance(label, str) else None
    return match["schedule"] if match else "one-shot"


def _text_column(df: pd.DataFrame, column: str) -> pd.Series:
    if column not in df.columns:
        return pd.Series(None, index=df.index, dtype=object)
    return df[column].map(lambda v: v if isinstance(v, str) and v else None)


def schedule_kinds(df: pd.DataFrame) -> pd.Series:
    """Per run its schedule kind (oneshot, iterative, gradual, lottery): the `schedule` metric, else the
    config's `schedule.kind`, else oneshot (a run from before schedules)."""
    recorded, configured = _text_column(df, "schedule"), _text_column(df, "schedule.kind")
    return recorded.fillna(configured).fillna("oneshot").astype(object)


def at_init(df: pd.DataFrame) -> np.ndarray:
    """Per run: True when it was pruned at initialization (`schedule.at_init`, or "at init" in its
    recorded schedule name)."""
    out = np.zeros(len(df), dtype=bool)
    if "schedule.at_init" in df.columns:
        out |= np.array([_norm(v) is True or _norm(v) == 1 for v in df["schedule.at_init"]], dtype=bool)
    names = _text_column(df, "schedule_name")
    out |= names.map(lambda v: isinstance(v, str) and v.endswith("at init")).to_numpy(dtype=bool)
    return out


def is_oneshot(df: pd.DataFrame) -> np.ndarray:
    """Per run: True for one-shot pruning of the trained model (the schedule of every older run)."""
    return (schedule_kinds(df) == "oneshot").to_numpy(dtype=bool) & ~at_init(df)


def has_schedules(df: pd.DataFrame) -> bool:
    """True when some run follows a schedule other than one-shot pruning of the trained model."""
    return bool(len(df)) and not is_oneshot(df).all()


def train_macs(df: pd.DataFrame) -> pd.Series:
    """Per run the training MACs behind its final model; NaN where absent, not finite or not positive."""
    if "train_macs" not in df.columns:
        return pd.Series(np.nan, index=df.index, dtype=float)
    values = _numeric(df["train_macs"])
    return values.where(np.isfinite(values) & (values > 0))


def has_costs(df: pd.DataFrame) -> bool:
    """True when some run recorded its training MACs (a store from before costs were counted has none)."""
    return bool(train_macs(df).notna().any())


def cost_ratio(a: Any, b: Any) -> float:
    """a / b of two training costs; NaN when either is unknown."""
    try:
        a, b = float(a), float(b)
    except (TypeError, ValueError):
        return math.nan
    return a / b if math.isfinite(a) and math.isfinite(b) and b > 0 else math.nan


def equal_cost(a: Any, b: Any, tolerance: float = EQUAL_COST) -> bool | None:
    """Whether two training costs differ by less than `tolerance` (relative to the larger one); None
    when either is unknown."""
    ratio = cost_ratio(a, b)
    if not math.isfinite(ratio) or ratio <= 0:
        return None
    return bool(abs(1.0 - min(ratio, 1.0 / ratio)) < tolerance)


def training_cost(df: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, model, strategy, compression): runs, schedule kind, whether it is one-shot of the
    trained model (`reference`), mean train_epochs / train_steps / train_macs, and the ratio of its
    train_macs to the one-shot runs at the same (dataset, model, compression): those of the same base
    strategy ("GlobalMagWeight" for "GlobalMagWeight [iterative]"), else every one-shot strategy there."""
    _require(df, GROUP_COLUMNS)
    rows = df.assign(_kind=schedule_kinds(df).to_numpy(), _reference=is_oneshot(df), _macs=train_macs(df))
    for key in ("train_epochs", "train_steps"):
        rows[f"_{key}"] = _numeric(rows[key]) if key in rows.columns else np.nan
    records: list[dict[str, Any]] = []
    for key, group in rows.groupby(list(GROUP_COLUMNS), dropna=False, sort=True):
        records.append({
            **dict(zip(GROUP_COLUMNS, key)), "runs": len(group), "schedule": str(group["_kind"].iloc[0]),
            "reference": bool(group["_reference"].all()),
            "train_epochs_mean": float(group["_train_epochs"].mean()),
            "train_steps_mean": float(group["_train_steps"].mean()),
            "train_macs_mean": float(group["_macs"].mean()),
        })
    out = pd.DataFrame.from_records(records, columns=COST_COLUMNS[:7 + len(COST_KEYS)])
    references: list[tuple[Any, float]] = []
    for _, r in out.iterrows():
        at = out[(out["dataset"] == r["dataset"]) & (out["model"] == r["model"])
                 & np.isclose(out["compression"].astype(float), float(r["compression"]))
                 & out["reference"] & out["train_macs_mean"].notna()]
        same = at[at["strategy"].map(base_strategy) == base_strategy(r["strategy"])]
        chosen = same if len(same) else at
        references.append((", ".join(str(s) for s in chosen["strategy"]) or None,
                           float(chosen["train_macs_mean"].mean()) if len(chosen) else math.nan))
    out["reference_strategy"] = [name for name, _ in references]
    out["reference_macs"] = [macs for _, macs in references]
    out["macs_ratio"] = [cost_ratio(a, b) for a, b in zip(out["train_macs_mean"], out["reference_macs"])]
    out["equal_cost"] = [equal_cost(a, b) for a, b in zip(out["train_macs_mean"], out["reference_macs"])]
    return out[list(COST_COLUMNS)]


def unequal_costs(costs: pd.DataFrame) -> pd.DataFrame:
    """The rows of a `training_cost` table whose training MACs differ from their one-shot reference
    by EQUAL_COST or more."""
    return costs[costs["equal_cost"].map(lambda v: _norm(v) is False)]


def _sequence(value: Any) -> tuple:
    if isinstance(value, (list, tuple, np.ndarray)):
        return tuple(value)
    return ()


RUN_COLUMNS: tuple[str, ...] = ("run_id", "dataset", "model", "strategy", "compression", "seed")


def _long(df: pd.DataFrame, columns: dict[str, str], index_name: str) -> pd.DataFrame:
    """One row per element of the list-valued `columns` (frame column -> output name) of each run, with
    the run's key; runs whose lists are absent or of unequal length are left out."""
    keys = [c for c in RUN_COLUMNS if c in df.columns]
    out_columns = [*keys, index_name, *columns.values()]
    if df.empty or not set(columns) <= set(df.columns):
        return pd.DataFrame(columns=out_columns)
    records = []
    for _, run in df.iterrows():
        lists = [_sequence(run[c]) for c in columns]
        if not lists[0] or any(len(v) != len(lists[0]) for v in lists):
            continue
        for i, values in enumerate(zip(*lists)):
            records.append({**{k: run[k] for k in keys}, index_name: i,
                            **{name: _norm(v) for name, v in zip(columns.values(), values)}})
    out = pd.DataFrame.from_records(records, columns=out_columns)
    for name in columns.values():
        out[name] = _numeric(out[name])
    return out


def path_points(df: pd.DataFrame) -> pd.DataFrame:
    """One row per pruning step of each run with a sparsity path: its key, `point` (0, 1, ...), the
    optimizer `step` of the run's own training, `sparsity` and `compression_after` after that step."""
    return _long(df, {"path_step": "step", "path_sparsity": "sparsity", "path_compression": "compression_after"},
                 "point")


def round_points(df: pd.DataFrame, metric: str = "round_test_top1_pct") -> pd.DataFrame:
    """One row per round of each iterative or lottery run: its key, `round` (0, 1, ...), the compression
    after it (`round_compression`) and `metric` after its training (percent)."""
    rounds = df[schedule_kinds(df).isin(ROUND_SCHEDULES).to_numpy()] if len(df) else df
    return _long(rounds, {"round_compression": "round_compression", metric: metric}, "round")


def round_curves(df: pd.DataFrame, metric: str = "round_test_top1_pct",
                 final: str = "post_test_top1_pct") -> pd.DataFrame:
    """Per strategy label of the iterative and lottery runs, the mean, min and max of `metric` over the
    runs and seeds that reached the same compression after a round (compressions within 1% of an
    octave pooled); a run that recorded no rounds (a lottery control trained once) counts with its
    final compression_ratio and `final` metric. Columns: strategy, x (mean compression), mean, min,
    max, n, from_rounds."""
    columns = ["strategy", "x", "mean", "min", "max", "n", "from_rounds"]
    if df.empty:
        return pd.DataFrame(columns=columns)
    scheduled = df[schedule_kinds(df).isin(ROUND_SCHEDULES).to_numpy() & ~_is_control(df)]
    points = round_points(scheduled, metric).rename(columns={"round_compression": "x", metric: "y"})
    points = points.assign(from_rounds=True)
    once = scheduled[~scheduled["run_id"].isin(points["run_id"])] if "run_id" in scheduled else scheduled
    if len(once) and {"compression_ratio", final} <= set(once.columns):
        points = pd.concat([points, pd.DataFrame({
            "strategy": once["strategy"].to_numpy(), "x": _numeric(once["compression_ratio"]).to_numpy(),
            "y": _numeric(once[final]).to_numpy(), "from_rounds": False})], ignore_index=True)
    points = points[np.isfinite(points["x"].astype(float)) & (points["x"].astype(float) > 0)
                    & np.isfinite(points["y"].astype(float))]
    if points.empty:
        return pd.DataFrame(columns=columns)
    points = points.assign(_bin=np.round(np.log2(points["x"].astype(float)) * 100).astype(int))
    out = points.groupby(["strategy", "_bin"], sort=True).agg(
        x=("x", "mean"), mean=("y", "mean"), min=("y", "min"), max=("y", "max"), n=("y", "size"),
        from_rounds=("from_rounds", "all")).reset_index()
    return out.sort_values(["strategy", "x"]).reset_index(drop=True)[columns]


# --- language models ------------------------------------------------------------------------------
# Runs on text data sets record, instead of accuracy, the mean NLL per scored token (`*_loss`, nats),
# its perplexity (`*_ppl` = exp(loss)) and bits per token (`*_bpc`) per stage (dense, pre, post) and
# split (val, test), and `lm_protocol`: a canonical JSON string of everything a perplexity depends on
# besides the model (data set, tokenizer, vocabulary and its hash, per split the file, its md5, the
# tokens scored, the evaluation window length and stride). Perplexities are comparable only between
# runs whose protocol strings are identical: `protocol_groups` splits runs accordingly.
LM_SPLITS: tuple[str, ...] = ("val", "test")
NO_PROTOCOL = ""  # the protocol key of runs that recorded none
_ACCURACY_COLUMNS: tuple[str, ...] = tuple(f"{stage}_{split}_top1_pct" for stage in ("pre", "post")
                                           for split in ("val", "test"))


def _finite_rows(df: pd.DataFrame, columns: Iterable[str]) -> np.ndarray:
    """Per row: True where some of `columns` (those present) holds a finite number."""
    out = np.zeros(len(df), dtype=bool)
    for column in columns:
        if column in df.columns:
            out |= np.isfinite(_numeric(df[column]).to_numpy())
    return out


def is_lm_run(df: pd.DataFrame) -> np.ndarray:
    """Per run: True for a language-model run: a perplexity after pruning (`post_test_ppl` or
    `post_val_ppl`) and no top-1 accuracy."""
    ppl = _finite_rows(df, ("post_test_ppl", "post_val_ppl"))
    return ppl & ~_finite_rows(df, _ACCURACY_COLUMNS)


def is_language_model(df: pd.DataFrame) -> bool:
    """True when the runs (of one data set and model) are language-model runs: some run has a
    perplexity after pruning and none has a top-1 accuracy."""
    return bool(len(df)) and bool(is_lm_run(df).any()) and not _finite_rows(df, _ACCURACY_COLUMNS).any()


def lm_splits(df: pd.DataFrame, stage: str = "post") -> list[str]:
    """The splits ("val", "test") with a finite `<stage>_<split>_ppl` on some run, in that order."""
    return [split for split in LM_SPLITS if _finite_rows(df, (f"{stage}_{split}_ppl",)).any()]


def lm_protocol_key(df: pd.DataFrame) -> pd.Series:
    """Per run the `lm_protocol` string it recorded (NO_PROTOCOL where it recorded none)."""
    return _text_column(df, "lm_protocol").fillna(NO_PROTOCOL).astype(object)


def parse_protocol(text: Any) -> dict[str, Any]:
    """An `lm_protocol` (or `lm_calibration`) JSON string as a dict; {} when absent or unreadable."""
    import json

    if not isinstance(text, str) or not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def protocol_groups(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The runs split by identical `lm_protocol` string: (key, runs) per protocol, the protocol with
    the most runs first (then by test window length and stride, then by key); runs that recorded no
    protocol form a last group keyed NO_PROTOCOL. Only runs within one group may be compared."""
    if df.empty:
        return []
    keys = lm_protocol_key(df)
    groups = [(str(key), df[(keys == key).to_numpy()]) for key in keys.unique()]

    def order(group: tuple[str, pd.DataFrame]) -> tuple:
        test = parse_protocol(group[0]).get("test")
        window = [test.get(k) if isinstance(test, dict) else None for k in ("eval_length", "eval_stride")]
        window = [float(v) if isinstance(v, (int, float)) else math.inf for v in window]
        return (group[0] == NO_PROTOCOL, -len(group[1]), *window, group[0])

    return sorted(groups, key=order)


def lm_finetuned(df: pd.DataFrame) -> bool:
    """Whether fine-tuning changed any pruned run's perplexity: False when every pruned run's
    perplexity after fine-tuning equals the one before it (0 fine-tuning epochs), or when no run
    recorded the perplexity before fine-tuning."""
    pruned = df[~_is_control(df)] if "compression" in df.columns else df
    for split in LM_SPLITS:
        pre, post = f"pre_{split}_ppl", f"post_{split}_ppl"
        if pre not in pruned.columns or post not in pruned.columns:
            continue
        a, b = _numeric(pruned[pre]).to_numpy(), _numeric(pruned[post]).to_numpy()
        both = np.isfinite(a) & np.isfinite(b)
        if both.any() and not np.allclose(a[both], b[both], rtol=1e-9, atol=0.0):
            return True
    return False


def lm_change(df: pd.DataFrame, split: str, stage: str = "post") -> pd.Series:
    """Per run its perplexity at `stage` minus its dense model's on the same split (and protocol)."""
    column, dense = f"{stage}_{split}_ppl", f"dense_{split}_ppl"
    if column not in df.columns or dense not in df.columns:
        return pd.Series(np.nan, index=df.index, dtype=float)
    return _numeric(df[column]) - _numeric(df[dense])


def lm_dense(df: pd.DataFrame, split: str, metric: str = "ppl") -> tuple[float, int]:
    """The dense model's `metric` on `split` (mean over seeds of each seed's dense value) and the
    number of seeds; (NaN, 0) when no run recorded it."""
    column = f"dense_{split}_{metric}"
    if column not in df.columns or "seed" not in df.columns:
        return math.nan, 0
    values = _numeric(df[column])
    keep = values.notna()
    per_seed = values[keep].groupby(df["seed"][keep]).mean()
    return (float(per_seed.mean()), len(per_seed)) if len(per_seed) else (math.nan, 0)


def lm_calibration(df: pd.DataFrame) -> dict[str, tuple]:
    """The distinct calibration settings of the pruned runs (`lm_calibration`): sequences, length,
    seed and source, each as a sorted tuple of the values present."""
    pruned = df[~_is_control(df)] if "compression" in df.columns else df
    docs = [parse_protocol(v) for v in _text_column(pruned, "lm_calibration")]
    return {key: _distinct(pd.Series([d.get(key) for d in docs], dtype=object))
            for key in ("sequences", "length", "seed", "source")}


def checklist(df: pd.DataFrame) -> list[CheckItem]:
    """The reporting checklist (results.checks) of the runs in `df`; top-5 accuracy does not apply to
    language models, so their data sets count as "not applicable" in that item."""
    items = checks.checklist(df)
    if df.empty or "dataset" not in df.columns:
        return items
    text = {d for d in df["dataset"].dropna().unique()
            if is_language_model(df[(df["dataset"] == d).to_numpy()])}
    if not text:
        return items
    others = df[~df["dataset"].isin(text).to_numpy()]
    note = "; ".join(f"{d}: not applicable (language model)" for d in sorted(text, key=str))
    out = []
    for item in items:
        if item.rule == "top5":
            if others.empty:
                item = CheckItem("top5", True, note)
            else:
                rest = next(i for i in checks.checklist(others) if i.rule == "top5")
                item = CheckItem("top5", rest.passed, f"{rest.detail}; {note}")
        out.append(item)
    return out
