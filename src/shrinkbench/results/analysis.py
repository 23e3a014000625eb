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
from .checks import CheckItem, checklist
from .names import canonical_strategy, display_name

__all__ = [
    "GROUP_COLUMNS", "DEFAULT_METRICS", "aggregate", "accuracy_change", "auc", "pareto_front",
    "paired_comparison", "PairedComparison", "compare_per_compression", "holm", "checklist",
    "CheckItem", "t_halfwidth", "has_measured_speed", "measured_speedup", "is_structured", "measured_speed",
    "measured_by_kind", "slower_than_dense",
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
    "ci95_high", "t_statistic", "p_value", "p_holm", "significant",
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
    std_diff, 95% t interval, paired t-test p, Holm-adjusted p over the group's rows, significant.
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
    records: list[dict[str, Any]] = []
    for group_key, group in means.groupby(level=list(range(len(by))), dropna=False, sort=True):
        group_key = group_key if isinstance(group_key, tuple) else (group_key,)
        strategies = sorted({str(s) for s in group.index.get_level_values("strategy")})
        start = len(records)
        for compression, at in group.groupby(level="compression", sort=True):
            per_seed = {s: at.xs(s, level="strategy").droplevel(list(range(len(by) + 1)))
                        for s in strategies if s in at.index.get_level_values("strategy")}
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
                records.append({
                    **dict(zip(by, group_key)), "compression": float(compression), "a": a, "b": b,
                    "n": len(diff), "mean_a": float(pairs["a"].mean()), "mean_b": float(pairs["b"].mean()),
                    "mean_diff": mean, "std_diff": std, "ci95_low": mean - half, "ci95_high": mean + half,
                    "t_statistic": t, "p_value": p,
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
