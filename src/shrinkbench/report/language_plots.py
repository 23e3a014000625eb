"""The perplexity figure of language-model runs: perplexity against compression, one protocol per figure."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullLocator

from ..results import analysis
from ..results.names import display_name
from .plots import CONTROL_COLOR, curves, strategy_order
from .style import DENSE_COLOR, legend_outside, log2_axis, new_figure, strategy_style, styled

SPLIT_NAMES = {"val": "Validation", "test": "Test"}
FINETUNED_STAGES = (("pre", "before fine-tuning"), ("post", "after fine-tuning"))
ONESHOT_STAGES = (("post", "one-shot, no fine-tuning"),)


def _is_control(runs: pd.DataFrame) -> np.ndarray:
    return np.isclose(pd.to_numeric(runs["compression"], errors="coerce"), 1.0)


MANTISSAS: tuple[tuple[float, ...], ...] = (  # tick mantissas on a log axis, coarse to fine
    (1, 2, 5),
    (1, 2, 3, 5, 7),
    (1, 1.5, 2, 3, 4, 5, 6, 7, 8, 9),
    tuple(round(1 + 0.5 * i, 1) for i in range(18)),
    tuple(round(1 + 0.1 * i, 1) for i in range(90)),
)


def perplexity_ticks(low: float, high: float, least: int = 4, most: int = 8) -> list[float]:
    """Readable ticks of a log-scale perplexity axis from `low` to `high`: round numbers of the
    coarsest 1-2-5-like series that puts at least `least` ticks in the range (every other one when
    that gives more than `most`); evenly spaced round numbers over a range too narrow for any."""
    if not (math.isfinite(low) and math.isfinite(high)) or low <= 0 or high <= low:
        return []
    decades = range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1)
    for subs in MANTISSAS:
        ticks = sorted({round(m * 10.0 ** k, 12) for k in decades for m in subs})
        ticks = [t for t in ticks if low <= t <= high]
        if len(ticks) >= least:
            while len(ticks) > most:
                ticks = ticks[::2]
            return ticks
    ticks = MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]).tick_values(low, high)
    return [float(f"{t:.12g}") for t in ticks if low <= t <= high]


def log_perplexity_axis(ax: Axes, values: Sequence[float]) -> None:
    """A log y axis that ends a little beyond the data, ticked at round perplexities labelled plainly."""
    finite = np.asarray([v for v in values if np.isfinite(v) and v > 0], dtype=float)
    ax.set_yscale("log")
    if finite.size == 0:
        return
    low, high = float(finite.min()), float(finite.max())
    if high / low < 1.02:  # a flat curve still spans a few percent
        low, high = low / 1.01, high * 1.01
    pad = max((high / low) ** 0.06, 1.005)
    ax.set_ylim(low / pad, high * pad)
    ticks = perplexity_ticks(low / pad, high * pad)
    if ticks:
        ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.yaxis.set_minor_locator(NullLocator())


def _band(ax: Axes, rows: pd.DataFrame, color: str) -> None:
    if (rows["max"] > rows["min"]).any():
        ax.fill_between(rows["x"], rows["min"], rows["max"], color=color, alpha=0.18, linewidth=0)


@styled
def perplexity_figure(runs: pd.DataFrame, title: str | None = None, labeller: Callable = display_name,
                      finetuned: bool | None = None) -> Figure | None:
    """Perplexity against the compression ratio, one row of panels per split (validation, test) and one
    column per stage (before and after fine-tuning; one panel "one-shot, no fine-tuning" when the
    runs were not fine-tuned): one line per strategy through the seed means, a band from the lowest to
    the highest seed, the dense model dashed, the fine-tuned unpruned control dotted. Log scales on
    both axes. All runs must share one evaluation protocol (analysis.protocol_groups)."""
    if runs.empty:
        return None
    splits = analysis.lm_splits(runs)
    control = _is_control(runs)
    pruned, controls = runs[~control], runs[control]
    if not splits or pruned.empty:
        return None
    finetuned = analysis.lm_finetuned(runs) if finetuned is None else finetuned
    stages = FINETUNED_STAGES if finetuned else ONESHOT_STAGES
    order = strategy_order(pruned)
    fig, axes = new_figure(len(splits), len(stages), panel=(3.6, 2.7), legend_width=2.2)
    x = pd.to_numeric(pruned.get("compression_ratio"), errors="coerce")
    handles: dict[str, Line2D] = {}
    references: dict[str, Line2D] = {}
    for row, split in enumerate(splits):
        span: list[float] = []
        for col, (stage, stage_name) in enumerate(stages):
            ax = axes[row, col]
            y = pd.to_numeric(pruned.get(f"{stage}_{split}_ppl"), errors="coerce")
            table = curves(pruned.assign(_x=x, _y=y.where(np.isfinite(y))), "_x", "_y")
            for strategy in order:
                rows = table[table["strategy"] == strategy]
                if rows.empty:
                    continue
                st = strategy_style(strategy)
                (line,) = ax.plot(rows["x"], rows["mean"], color=st["color"], marker=st["marker"],
                                  linestyle=st["linestyle"], markersize=4, linewidth=1.4)
                _band(ax, rows, st["color"])
                handles.setdefault(labeller(strategy), line)
                span += [*rows["min"], *rows["max"]]
            dense, _ = analysis.lm_dense(runs, split)
            if np.isfinite(dense):
                references.setdefault("dense model", ax.axhline(dense, color=DENSE_COLOR, linestyle="--",
                                                                 linewidth=1.1, zorder=1))
                span.append(dense)
            tuned = pd.to_numeric(controls.get(f"post_{split}_ppl"), errors="coerce")
            tuned = tuned[np.isfinite(tuned)] if tuned is not None else pd.Series(dtype=float)
            if stage == "post" and finetuned and len(tuned):
                level = float(tuned.mean())
                references.setdefault("unpruned control, fine-tuned (c = 1)",
                                      ax.axhline(level, color=CONTROL_COLOR, linestyle=":", linewidth=1.1,
                                                 zorder=1))
                span.append(level)
            log2_axis(ax, x)
            ax.set_title(f"{SPLIT_NAMES[split]}, {stage_name}")
            ax.set_xlabel("Compression ratio (log scale)")
            if col == 0:
                ax.set_ylabel(f"{SPLIT_NAMES[split]} perplexity\n(log scale; lower is better)")
        for ax in axes[row]:  # one y range per split, so before and after read on the same scale
            log_perplexity_axis(ax, span)
    if title:
        fig.suptitle(title)
    handles.update(references)
    legend_outside(fig, list(handles.values()), list(handles), title="Strategy")
    return fig
