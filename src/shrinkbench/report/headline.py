"""The report's headline findings: which strategy wins at each compression, with intervals and tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..results import analysis
from ..results.names import display_name
from .tables import fmt_cost_ratio, fmt_interval, fmt_number, fmt_p, fmt_ratio, fmt_times

METRIC = "post_test_top1_pct"
COST_COLUMN = "Training MACs, best / runner-up"


def _is_control(runs: pd.DataFrame) -> np.ndarray:
    return np.isclose(pd.to_numeric(runs["compression"], errors="coerce"), 1.0)


def _comparison(comparisons: pd.DataFrame, compression: float, a: str, b: str) -> pd.Series | None:
    """The row comparing `a` with `b` at `compression`, oriented as a - b (None when not tested)."""
    at = comparisons[np.isclose(comparisons["compression"], compression)]
    hit = at[(at["a"] == a) & (at["b"] == b)]
    if len(hit):
        return hit.iloc[0]
    hit = at[(at["a"] == b) & (at["b"] == a)]
    if not len(hit):
        return None
    row = hit.iloc[0].copy()
    row["a"], row["b"] = a, b
    row["mean_diff"] = -row["mean_diff"]
    row["ci95_low"], row["ci95_high"] = -hit.iloc[0]["ci95_high"], -hit.iloc[0]["ci95_low"]
    if "macs_ratio" in row:  # the cost of a over b
        row["macs_a"], row["macs_b"] = hit.iloc[0]["macs_b"], hit.iloc[0]["macs_a"]
        ratio = row["macs_ratio"]
        row["macs_ratio"] = 1.0 / ratio if ratio and np.isfinite(ratio) else np.nan
    return row


def winners(runs: pd.DataFrame, comparisons: pd.DataFrame, metric: str = METRIC,
            lower: bool = False) -> pd.DataFrame:
    """Per compression: the best strategy by mean `metric` (the highest; the lowest with `lower`, as
    for a perplexity), the runner-up, their paired test, and the strategies significantly worse than
    the best (Holm-adjusted, from `comparisons`)."""
    pruned = runs[~_is_control(runs)]
    columns = ["compression", "best", "best_mean", "best_ci95", "best_n", "next", "next_mean",
               "next_ci95", "diff", "diff_low", "diff_high", "p_holm", "significant", "below", "macs_ratio",
               "equal_cost"]
    if pruned.empty or metric not in pruned:
        return pd.DataFrame(columns=columns)
    agg = analysis.aggregate(pruned, metrics=[metric], by=("strategy", "compression"))
    agg = agg[agg[f"{metric}_n"] > 0]
    records = []
    for compression, at in agg.groupby("compression", sort=True):
        at = at.sort_values([f"{metric}_mean", "strategy"], ascending=[lower, True])
        best = at.iloc[0]
        record = {"compression": float(compression), "best": best["strategy"],
                  "best_mean": best[f"{metric}_mean"], "best_ci95": best[f"{metric}_ci95"],
                  "best_n": int(best[f"{metric}_n"]), "next": None, "next_mean": np.nan,
                  "next_ci95": np.nan, "diff": np.nan, "diff_low": np.nan, "diff_high": np.nan,
                  "p_holm": np.nan, "significant": False, "below": [], "macs_ratio": np.nan,
                  "equal_cost": None}
        if len(at) > 1:
            runner = at.iloc[1]
            record.update(next=runner["strategy"], next_mean=runner[f"{metric}_mean"],
                          next_ci95=runner[f"{metric}_ci95"])
            test = _comparison(comparisons, compression, best["strategy"], runner["strategy"])
            if test is not None:
                record.update(diff=test["mean_diff"], diff_low=test["ci95_low"], diff_high=test["ci95_high"],
                              p_holm=test["p_holm"], significant=bool(test["significant"]))
                if "macs_ratio" in test:  # best / runner-up training MACs, where the runs counted them
                    equal = test["equal_cost"]
                    record.update(macs_ratio=float(test["macs_ratio"]),
                                  equal_cost=bool(equal) if isinstance(equal, (bool, np.bool_)) else None)
            for other in at["strategy"].iloc[1:]:
                test = _comparison(comparisons, compression, best["strategy"], other)
                if test is None or not test["significant"]:
                    continue
                if (test["mean_diff"] < 0) if lower else (test["mean_diff"] > 0):
                    record["below"].append(other)
        records.append(record)
    return pd.DataFrame.from_records(records, columns=columns)


def _accuracy_interval(mean: float, half: float) -> str:
    """The t interval of a mean accuracy, cut to the possible range [0, 100] (a t interval over 3
    seeds of a mean near 100% can reach past it)."""
    return fmt_interval(max(mean - half, 0.0), min(mean + half, 100.0))


def _mean_ci(mean: float, half: float) -> str:
    text = fmt_number(mean, 2)
    return f"{text} {_accuracy_interval(mean, half)}" if np.isfinite(half) else text


def winners_table(table: pd.DataFrame) -> pd.DataFrame:
    """The winners as formatted cells: best and runner-up with their 95% intervals, the paired test."""
    costs = "equal_cost" in table and table["equal_cost"].map(lambda v: v is not None).any()
    rows = []
    for _, r in table.iterrows():
        has_next = r["next"] is not None
        if not has_next:
            verdict = "only one strategy"
        elif np.isfinite(r["p_holm"]):
            verdict = "yes" if r["significant"] else "no"
        else:
            verdict = "not tested"
        rows.append({
            "Compression": f"{fmt_ratio(r['compression'])}\u00d7",
            "Best: top-1 (%) [95% CI]": f"{display_name(r['best'])} {_mean_ci(r['best_mean'], r['best_ci95'])}",
            "Runner-up: top-1 (%)": (f"{display_name(r['next'])} {fmt_number(r['next_mean'], 2)}"
                                     if has_next else ""),
            "Best \u2212 runner-up (pp) [95% CI]": (f"{fmt_number(r['diff'], 2)} "
                                                    f"{fmt_interval(r['diff_low'], r['diff_high'])}".strip()),
            "Holm p": fmt_p(r["p_holm"]),
            "Significant": verdict,
            "Significantly worse than the best": ", ".join(display_name(s) for s in r["below"]) or "none",
        })
        if costs:
            rows[-1][COST_COLUMN] = fmt_cost_ratio(r["macs_ratio"], r["equal_cost"])
    return pd.DataFrame(rows)


def _ratios(values: list[float]) -> str:
    texts = [f"{fmt_ratio(v)}\u00d7" for v in values]
    return texts[0] if len(texts) == 1 else ", ".join(texts[:-1]) + " and " + texts[-1]


def findings(table: pd.DataFrame, comparisons: pd.DataFrame, runs: pd.DataFrame) -> list[str]:
    """Plain sentences: who is best where, whether that is distinguishable, who falls significantly behind."""
    if table.empty:
        return ["No pruned runs with a top-1 accuracy after fine-tuning to compare."]
    out = []
    by_best: dict[str, list[float]] = {}
    for _, r in table.iterrows():
        by_best.setdefault(display_name(r["best"]), []).append(r["compression"])
    out.append("Highest mean top-1 after fine-tuning: " + "; ".join(
        f"{name} at {_ratios(cs)}" for name, cs in sorted(by_best.items(), key=lambda kv: kv[1][0])) + ".")
    out += _tests(table, comparisons)
    out += _costs(table)
    values = pd.to_numeric(runs.get(METRIC, pd.Series(np.nan, index=runs.index)), errors="coerce")
    missing = runs[values.isna()]
    if len(missing):
        where = ", ".join(f"{display_name(s)} {fmt_ratio(c)}\u00d7 seed {seed}" for s, c, seed in
                          missing[["strategy", "compression", "seed"]].itertuples(index=False, name=None))
        out.append(f"{len(missing)} done run{'s have' if len(missing) > 1 else ' has'} no top-1 after "
                   f"fine-tuning (NaN) and {'are' if len(missing) > 1 else 'is'} left out of the means "
                   f"and tests: {where}.")
    controls = runs[_is_control(runs)]
    control = pd.to_numeric(controls.get(METRIC), errors="coerce").dropna()
    if len(control):
        half = analysis.t_halfwidth(float(control.std(ddof=1)) if len(control) > 1 else np.nan, len(control))
        interval = _accuracy_interval(float(control.mean()), half) if np.isfinite(half) else ""
        out.append(f"Reference: the unpruned control (compression 1, fine-tuned with the same recipe) "
                   f"reaches {fmt_number(control.mean(), 2)}% top-1"
                   + (f" (95% CI {interval})" if interval else "") + f" over {len(control)} seed{'s' if len(control) != 1 else ''}.")
    return out


def _costs(table: pd.DataFrame) -> list[str]:
    """A sentence naming the compressions where the best and the runner-up trained at unequal cost."""
    if "equal_cost" not in table:
        return []
    unequal = table[table["equal_cost"].map(lambda v: v is False)]
    if unequal.empty:
        return []
    parts = [f"at {fmt_ratio(r['compression'])}\u00d7 {display_name(r['best'])} used "
             f"{fmt_times(r['macs_ratio'])} the training MACs of {display_name(r['next'])}"
             for _, r in unequal.iterrows()]
    return ["Best and runner-up trained at unequal cost (training MACs "
            f"{100 * analysis.EQUAL_COST:g}% or more apart): " + "; ".join(parts) + "."]


def _tests(table: pd.DataFrame, comparisons: pd.DataFrame) -> list[str]:
    """What the paired tests allow: best against runner-up, and who is significantly worse."""
    if table["next"].isna().all():
        return ["Only one strategy was run at each compression: there is nothing to compare it with."]
    tested = int(comparisons["p_holm"].notna().sum()) if len(comparisons) else 0
    if not tested:
        return ["No strategy can be told apart from another: a paired test needs at least two seeds "
                "shared by both strategies at one compression."]
    seeds = sorted({int(n) for n in comparisons.loc[comparisons["p_holm"].notna(), "n"]})
    seeds_text = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]} to {seeds[-1]}"
    method = (f"paired t-tests over {seeds_text} seed{'s' if seeds_text != '1' else ''} (a sign "
              f"test where the differences do not vary), Holm's "
              f"correction over the {tested} test{'s' if tested != 1 else ''} of "
              "the comparison table")
    out = []
    clear = table[table["significant"]]
    if clear.empty:
        out.append(f"At no compression is the best strategy distinguishable from the runner-up ({method}).")
    else:
        parts = [f"{display_name(r['best'])} over {display_name(r['next'])} at "
                 f"{fmt_ratio(r['compression'])}\u00d7 (+{fmt_number(r['diff'], 2)} pp, 95% CI "
                 f"{fmt_interval(r['diff_low'], r['diff_high'])}, Holm p = {fmt_p(r['p_holm'])})"
                 for _, r in clear.iterrows()]
        rest = len(table) - len(clear)
        out.append("The best strategy is significantly better than the runner-up for " + "; ".join(parts)
                   + (f"; at the other {rest} compression{'s' if rest > 1 else ''} the two are not "
                      "distinguishable" if rest else "")
                   + f" ({method}).")
    behind: dict[str, list[float]] = {}
    for _, r in table.iterrows():
        for name in r["below"]:
            behind.setdefault(display_name(name), []).append(r["compression"])
    if behind:
        out.append("Significantly worse than the best: " + "; ".join(
            f"{name} at {_ratios(cs)}" for name, cs in sorted(behind.items())) + ".")
    else:
        out.append("No strategy is significantly worse than the best at any compression: with these "
                   "seeds, nothing is distinguishable.")
    return out
