"""The report's Schedules section: what each schedule did, its sparsity path, the accuracy after each
round, and the training cost of every strategy and schedule against one-shot pruning.

Nothing here imports matplotlib until a figure is drawn, so the report module stays light.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import pandas as pd

from ..results import analysis
from ..results.names import display_name
from .document import Bullets, Document, Heading, Image, Table, Text
from .names import pair_title
from .tables import fmt_ratio, fmt_times

# What each schedule does, in the order the section lists them; a schedule is described when a run's
# label carries a name containing the pattern (one-shot pruning of the trained model always is).
SCHEDULE_TEXT: tuple[tuple[str, str], ...] = (
    ("one-shot", "one-shot: the trained dense model pruned once to the target, then fine-tuned (the "
                 "strategy's plain name)"),
    ("one-shot at init", "one-shot at init: pruned once at initialization; the dense recipe trains the "
                         "sparse network, then the fine-tuning recipe"),
    ("iterative", "iterative (r%/round): rounds of pruning r% of the remaining weights, each followed "
                  "by fine-tuning, until the target is reached"),
    ("gradual", "gradual: sparsity raised every few optimizer steps during training on the cubic "
                "schedule of Zhu & Gupta (2017)"),
    ("gradual at init", "gradual at init: the same schedule, starting from the initialized model"),
    ("lottery", "lottery (rewind r): iterative magnitude pruning, the surviving weights rewound after each "
                "round to their values at step r of the dense training (init: the initialization), "
                "then trained with the dense recipe (Frankle & Carbin, 2019)"),
    ("reinit control", "reinit control: the ticket's final mask with the weights re-initialized"),
    ("random control", "random control: random pruning at the ticket's compression (one random choice over all prunable weights), weights at the rewinding point"),
    ("shuffle control", "shuffle control: the ticket's mask shuffled within each layer"),
)
SI = ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def fmt_si(value: object, digits: int = 3) -> str:
    """A count with an SI prefix and `digits` significant digits: 5.23e12 -> '5.23 T'."""
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    if not math.isfinite(x):
        return ""
    for scale, prefix in SI:
        if abs(x) >= scale:
            return f"{x / scale:.{digits}g} {prefix}"
    return f"{x:.{digits}g}"


def _fmt_steps(value: object) -> str:
    x = float(value) if isinstance(value, (int, float)) else math.nan
    return f"{x:,.0f}" if math.isfinite(x) else ""


def _fmt_epochs(value: object) -> str:
    x = float(value) if isinstance(value, (int, float)) else math.nan
    return f"{x:.4g}" if math.isfinite(x) else ""


def _fmt_times(value: object) -> str:
    return fmt_times(value)


COST_HEADERS = ["Strategy", "Compression", "Runs", "Training epochs", "Optimizer steps", "Training MACs",
                "\u00d7 one-shot MACs", "One-shot reference"]


def cost_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per strategy label and compression: runs, mean training epochs, optimizer steps and MACs (SI
    prefixes), and the ratio of the MACs to the one-shot reference at the same compression."""
    costs = analysis.training_cost(runs)
    # per compression: the one-shot references first, then by label, a lottery ticket before its controls
    costs = costs.assign(_order=~costs["reference"], _label=costs["strategy"].map(analysis.strategy_sort_key))
    costs = costs.sort_values(["compression", "_order", "_label"], kind="stable")
    rows = []
    for _, r in costs.iterrows():
        reference = r["reference_strategy"]
        itself = isinstance(reference, str) and reference == r["strategy"]
        rows.append(dict(zip(COST_HEADERS, (
            display_name(r["strategy"]), fmt_ratio(r["compression"]), int(r["runs"]),
            _fmt_epochs(r["train_epochs_mean"]), _fmt_steps(r["train_steps_mean"]),
            fmt_si(r["train_macs_mean"]), _fmt_times(r["macs_ratio"]),
            "itself" if itself else (reference or "")))))
    return pd.DataFrame(rows, columns=COST_HEADERS)


def _reference_text(reference: str) -> str:
    return f"the one-shot runs ({reference})" if ", " in reference else f"one-shot {reference}"


def unequal_cost_sentence(runs: pd.DataFrame) -> str:
    """One plain sentence: which strategies and schedules used more or less training than one-shot
    pruning at the same compression (differences under 1% count as equal)."""
    costs = analysis.training_cost(runs)
    known = costs[costs["equal_cost"].notna()]
    if not analysis.has_costs(runs):
        return "The runs recorded no training cost (train_macs), so their costs cannot be compared."
    if known.empty:
        return ("No one-shot run at the compressions of the other runs recorded its training cost, so "
                "their costs cannot be compared with one-shot pruning.")
    unequal = analysis.unequal_costs(known)
    tolerance = f"{100 * analysis.EQUAL_COST:g}%"
    if unequal.empty:
        return (f"Every strategy and schedule used the training MACs of one-shot pruning at its "
                f"compression (within {tolerance}): they were compared at equal cost.")
    parts = []
    labels = unequal["strategy"].tolist()
    unequal = unequal.iloc[sorted(range(len(labels)), key=lambda i: analysis.strategy_sort_key(labels[i]))]
    for (label, reference), rows in unequal.groupby(["strategy", "reference_strategy"], sort=False):
        at = [(fmt_times(r["macs_ratio"]), f"at compression {fmt_ratio(r['compression'])}")
              for _, r in rows.sort_values("compression").iterrows()]
        parts.append(f"{display_name(label)} used {at[0][0]} the training MACs of "
                     f"{_reference_text(reference)} {at[0][1]}" + "".join(f", {x} {c}" for x, c in at[1:]))
    return (f"Compared at unequal training cost (training MACs {tolerance} or more apart): "
            + "; ".join(parts) + ".")


def comparison_cost_note(comparisons: pd.DataFrame) -> str | None:
    """A footnote to the comparison table when some compared strategies trained at unequal cost."""
    if comparisons.empty or "equal_cost" not in comparisons:
        return None
    # None: a cost unknown, neither equal nor unequal
    unequal = int(comparisons["equal_cost"].map(lambda v: isinstance(v, (bool, np.bool_)) and not v).sum())
    if not unequal:
        return None
    return (f"{unequal} of these {len(comparisons)} comparisons are between strategies trained at unequal "
            f"cost (training MACs {100 * analysis.EQUAL_COST:g}% or more apart; column \"Training MACs, "
            "higher / lower\"): there the higher accuracy may have been bought with more training.")


def described(runs: pd.DataFrame) -> list[str]:
    """The descriptions of the schedules present in the runs' strategy labels."""
    names = {analysis.schedule_of(label) for label in runs["strategy"].dropna()}
    out = []
    for pattern, text in SCHEDULE_TEXT:
        if pattern == "one-shot":
            present = "one-shot" in names
        elif pattern in ("gradual", "iterative"):
            present = any(n.startswith(pattern) and not n.endswith("at init") for n in names)
        else:
            present = any(pattern in n for n in names)
        if present:
            out.append(text)
    return out


def section(doc: Document, runs: pd.DataFrame, pairs: list[tuple[str, str]],
            of_pair: Callable[[pd.DataFrame, str, str], pd.DataFrame]) -> None:
    """The Schedules section: how the schedules show in the rest of the report, then per (data set,
    model) the sparsity paths, the accuracy after each round and the training cost table."""
    from .schedule_plots import round_accuracy_figure, single_step_labels, sparsity_path_figure  # matplotlib

    doc.add(Heading("Schedules"),
            Text("Some runs prune on a schedule other than one-shot. Every schedule is its own curve: a "
                 "strategy run with a schedule is labelled \"Strategy [schedule]\" in every figure and "
                 "table of this report, so the accuracy against compression and speedup plots (Plots) "
                 "and the results, comparison, area-under-the-curve and Pareto tables (Tables) already "
                 "compare the schedules at each compression. In the figures a schedule's colour and "
                 "line style name the schedule, its marker the base strategy. The schedules here:"),
            Bullets(tuple(described(runs))),
            Text("Training cost counts all the training behind a run's final model, the dense training "
                 "it started from included: epochs, optimizer steps, and multiply-accumulates (MACs: 3 "
                 "\u00d7 the forward MACs at each step's density, times the examples). Costs whose "
                 f"MACs differ by less than {100 * analysis.EQUAL_COST:g}% count as equal."))
    for dataset, model in pairs:
        pair = of_pair(runs, dataset, model)
        name = pair_title(dataset, model)
        doc.add(Heading(name, level=3))
        if not analysis.has_schedules(pair):
            doc.add(Text("Every run of this data set and model was pruned one-shot."))
            continue
        fig = sparsity_path_figure(pair, title=name)
        once = single_step_labels(pair)
        if fig is not None:
            doc.add(Image(fig, f"{dataset}-{model}-sparsity-path",
                          f"{name}: compression ratio (all / nonzero parameters, log2, left axis) and "
                          "sparsity (1 \u2212 nonzero / all parameters, right axis) of the whole model "
                          "against the optimizer step of each scheduled run's own training (0: before it "
                          "trained), one panel per strategy and schedule, one line per run (seeds "
                          "overlaid), coloured by the target compression; each marker is a pruning step."
                          + (" Pruned in a single step at its final sparsity, so not drawn: "
                             + ", ".join(once) + "." if once else "")))
        elif once:
            doc.add(Text("Every scheduled run here pruned in a single step (" + ", ".join(once)
                         + "): there is no sparsity path to draw."))
        fig = round_accuracy_figure(pair, title=name)
        if fig is not None:
            doc.add(Image(fig, f"{dataset}-{model}-rounds",
                          f"{name}: top-1 test accuracy after each round of iterative pruning and lottery "
                          "tickets against the compression ratio reached in that round (log2; top axis: "
                          "weights remaining), lines through the means over runs and seeds, bands from "
                          "the lowest to the highest; lottery controls, trained once, at their final "
                          "compression on the same axes. Dashed: the dense model; dotted: the unpruned "
                          "control fine-tuned with the same recipe."))
        doc.add(Heading("Training cost", level=4))
        if not analysis.has_costs(pair):
            doc.add(Text("These runs recorded no training cost (train_macs)."))
            continue
        doc.add(Table(cost_table(pair),
                      f"{name}: training behind each final model, mean over seeds, the dense training "
                      "included: epochs, optimizer steps and multiply-accumulates (SI prefixes: k = 10\u00b3, "
                      "M = 10\u2076, G = 10\u2079, T = 10\u00b9\u00b2, P = 10\u00b9\u2075 MACs); "
                      "\u00d7 one-shot MACs: the ratio to the one-shot run of the same base strategy at the "
                      "same compression (or to every one-shot strategy there when it has none)"),
                Text(unequal_cost_sentence(pair)))
