"""The reporting checklist of Blalock et al. (2020), evaluated on a results DataFrame."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from .names import MAGNITUDE_STRATEGIES, RANDOM_STRATEGIES, canonical_strategy, display_name

MIN_OPERATING_POINTS = 5
MIN_SEEDS = 3
MANY_CLASSES = 10  # top-5 is asked for when a data set has more classes than this

KNOWN_NUM_CLASSES: dict[str, int] = {
    "mnist": 10, "fashionmnist": 10, "kmnist": 10, "digits": 10, "cifar10": 10, "svhn": 10,
    "stl10": 10, "imagenette": 10, "cifar100": 100, "tinyimagenet": 200, "imagenet": 1000,
    "imagenet1k": 1000, "ilsvrc2012": 1000, "places365": 365,
}
NUM_CLASSES_COLUMNS: tuple[str, ...] = ("num_classes", "data.num_classes", "data.options.num_classes", "model.num_classes")

RULES: dict[str, tuple[str, str]] = {
    "operating_points": (
        f"at least {MIN_OPERATING_POINTS} compression ratios (> 1) per dataset, model and strategy",
        "Missing controlled comparisons: incomplete characterization of results",
    ),
    "seeds": (
        f"at least {MIN_SEEDS} seeds at every operating point",
        "checklist for evaluating a pruning method: multiple runs, error bars",
    ),
    "compression_and_speedup": (
        "both compression ratio and theoretical speedup reported for every run",
        "Missing controlled comparisons: metrics fragmentation",
    ),
    "baselines": (
        "magnitude pruning and random pruning baselines present for each dataset and model",
        "Missing controlled comparisons: omission of comparison",
    ),
    "dense_control": (
        "the unpruned (compression 1) control fine-tuned with the same recipe as the pruned runs",
        "Missing controlled comparisons: confounding variables (fine-tuning budget)",
    ),
    "top5": (
        f"top-5 accuracy reported for data sets with more than {MANY_CLASSES} classes",
        "Missing controlled comparisons: metrics fragmentation (top-1 and top-5 on ImageNet)",
    ),
}


@dataclass(frozen=True)
class CheckItem:
    """One checklist rule evaluated on a set of runs."""

    rule: str
    passed: bool
    detail: str

    @property
    def description(self) -> str:
        """What the rule asks for."""
        return RULES[self.rule][0]

    @property
    def reference(self) -> str:
        """Where the rule comes from in the paper."""
        return RULES[self.rule][1]


_CHECKS: dict[str, Callable[[pd.DataFrame], tuple[bool, str]]] = {}


def _check(rule: str) -> Callable:
    def decorator(fn: Callable[[pd.DataFrame], tuple[bool, str]]) -> Callable:
        _CHECKS[rule] = fn
        return fn

    return decorator


def _fmt(key: Any) -> str:
    return "/".join(map(str, key)) if isinstance(key, tuple) else str(key)


def _compression(df: pd.DataFrame) -> pd.Series:
    return pd.to_numeric(df["compression"], errors="coerce")


def _pruned(df: pd.DataFrame) -> pd.DataFrame:
    return df[_compression(df) > 1 + 1e-9]


def _controls(df: pd.DataFrame) -> pd.DataFrame:
    return df[np.isclose(_compression(df), 1.0)]


def _failures(items: list[str], limit: int = 4) -> str:
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more


@_check("operating_points")
def _operating_points(df: pd.DataFrame) -> tuple[bool, str]:
    pruned = _pruned(df)
    if pruned.empty:
        return False, "no pruned runs (compression > 1)"
    counts = pruned.groupby(["dataset", "model", "strategy"], dropna=False)["compression"].nunique()
    bad = [f"{_fmt(k)}: {n}" for k, n in counts.items() if n < MIN_OPERATING_POINTS]
    if bad:
        return False, f"fewer than {MIN_OPERATING_POINTS} compressions for " + _failures(bad)
    return True, f"{counts.min()} to {counts.max()} compressions per strategy"


@_check("seeds")
def _seeds(df: pd.DataFrame) -> tuple[bool, str]:
    counts = df.groupby(["dataset", "model", "strategy", "compression"], dropna=False)["seed"].nunique()
    bad = [f"{_fmt(k)}: {n}" for k, n in counts.items() if n < MIN_SEEDS]
    if bad:
        return False, f"fewer than {MIN_SEEDS} seeds at " + _failures(bad)
    return True, f"{counts.min()} to {counts.max()} seeds per operating point"


@_check("compression_and_speedup")
def _compression_and_speedup(df: pd.DataFrame) -> tuple[bool, str]:
    missing = [c for c in ("compression_ratio", "speedup") if c not in df.columns]
    if missing:
        return False, f"column {', '.join(missing)} missing"
    bad = [
        f"{c} on {n} of {len(df)} runs"
        for c in ("compression_ratio", "speedup")
        if (n := int((~np.isfinite(pd.to_numeric(df[c], errors="coerce").astype(float))).sum()))
    ]
    if bad:
        return False, "not finite: " + ", ".join(bad)
    return True, f"compression_ratio and speedup finite on all {len(df)} runs"


@_check("baselines")
def _baselines(df: pd.DataFrame) -> tuple[bool, str]:
    pruned = _pruned(df)
    if pruned.empty:
        return False, "no pruned runs (compression > 1)"
    bad = []
    for key, group in pruned.groupby(["dataset", "model"], dropna=False):
        present = {canonical_strategy(s) for s in group["strategy"].dropna()}
        lacking = []
        if not present & set(MAGNITUDE_STRATEGIES):
            lacking.append(" or ".join(display_name(s) for s in MAGNITUDE_STRATEGIES))
        if not present & set(RANDOM_STRATEGIES):
            lacking.append(" or ".join(display_name(s) for s in RANDOM_STRATEGIES))
        if lacking:
            bad.append(f"{_fmt(key)} lacks {' and '.join(lacking)}")
    if bad:
        return False, _failures(bad)
    return True, "magnitude and random baselines present"


def _recipes(frame: pd.DataFrame, columns: list[str]) -> set[tuple]:
    def norm(v: Any) -> Any:
        return None if isinstance(v, float) and np.isnan(v) else v

    return {tuple(norm(v) for v in row) for row in frame[columns].itertuples(index=False, name=None)}


@_check("dense_control")
def _dense_control(df: pd.DataFrame) -> tuple[bool, str]:
    pruned, controls = _pruned(df), _controls(df)
    if pruned.empty:
        return False, "no pruned runs (compression > 1)"
    recipe = sorted(c for c in df.columns if str(c).startswith("finetune."))
    if not recipe:
        return False, "the fine-tuning recipe is not recorded (no finetune.* columns)"
    bad = []
    for key, group in pruned.groupby(["dataset", "model"], dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        mine = controls[(controls["dataset"] == key[0]) & (controls["model"] == key[1])]
        if mine.empty:
            bad.append(f"{_fmt(key)} has no compression-1 control")
        elif _recipes(group, recipe) - _recipes(mine, recipe):
            bad.append(f"{_fmt(key)}: control fine-tuned with a different recipe ({', '.join(recipe)})")
    if bad:
        return False, _failures(bad)
    return True, f"controls share the pruned runs' recipe ({', '.join(recipe)})"


def _normalize_name(name: Any) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def num_classes(df: pd.DataFrame, dataset: Any) -> int | None:
    """The number of classes of `dataset`: from a num_classes column, else from its name; None if unknown."""
    rows = df[df["dataset"] == dataset]
    for column in NUM_CLASSES_COLUMNS:
        if column in rows.columns:
            values = pd.to_numeric(rows[column], errors="coerce").dropna()
            if len(values):
                return int(values.max())
    return KNOWN_NUM_CLASSES.get(_normalize_name(dataset))


@_check("top5")
def _top5(df: pd.DataFrame) -> tuple[bool, str]:
    notes, bad = [], []
    for dataset in sorted(df["dataset"].dropna().unique(), key=str):
        classes = num_classes(df, dataset)
        rows = df[df["dataset"] == dataset]
        acc5 = (
            pd.to_numeric(rows["post_test_top5_pct"], errors="coerce").astype(float)
            if "post_test_top5_pct" in rows.columns else pd.Series(np.nan, index=rows.index)
        )
        reported = bool(len(rows)) and bool(np.isfinite(acc5).all())
        if classes is not None and classes <= MANY_CLASSES:
            notes.append(f"{dataset}: not applicable ({classes} classes)")
        elif reported:
            notes.append(f"{dataset}: top-5 reported")
        elif classes is None:
            bad.append(f"{dataset}: number of classes unknown (add a num_classes column) and top-5 missing")
        else:
            missing = int((~np.isfinite(acc5)).sum())
            bad.append(f"{dataset}: {classes} classes but post_test_top5_pct missing on {missing} runs")
    if bad:
        return False, _failures(bad)
    return True, "; ".join(notes) if notes else "no data sets"


def checklist(df: pd.DataFrame) -> list[CheckItem]:
    """Every rule of the reporting checklist evaluated on the runs in `df` (pruned runs and controls)."""
    needed = [c for c in ("dataset", "model", "strategy", "compression", "seed") if c not in df.columns]
    if df.empty or needed:
        why = "no runs" if df.empty else f"column {', '.join(needed)} missing"
        return [CheckItem(rule, False, why) for rule in _CHECKS]
    return [CheckItem(rule, *fn(df)) for rule, fn in _CHECKS.items()]
