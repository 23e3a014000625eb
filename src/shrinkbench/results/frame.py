"""Results as pandas DataFrames: one row per run, per epoch, or per layer."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from ..common import DB_NAME, LAYERS_FILE, METRIC_KEYS, flatten_dotted, get_dotted
from ..errors import StoreError
from .files import dense_dir, run_dir
from .names import display_name
from .store import STATUSES, Store, stores_below_hint

KEY_COLUMNS: tuple[str, ...] = ("dataset", "model", "strategy", "compression", "seed")
# Config keys of the key columns, in KEY_COLUMNS order.
KEY_PATHS: tuple[str, ...] = ("data.name", "model.name", "pruning.strategy", "pruning.compression", "seed")
LAYER_COLUMNS: tuple[str, ...] = (
    "name", "kind", "shape", "params", "nonzero", "density", "macs_dense", "macs_sparse"
)


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one dict with dotted keys; lists become tuples (hashable for groupby)."""
    if not isinstance(tree, dict):
        return {prefix: tree} if prefix else {}
    return {name: tuple(value) if isinstance(value, list) else value
            for name, value in flatten_dotted(tree, prefix).items()}


ONESHOT = "one-shot"  # the schedule name of one-shot pruning of the trained model: no suffix


def schedule_name(config: dict, metrics: dict | None = None) -> str:
    """The human name of a run's pruning schedule: the one it recorded (`schedule_name`), else one
    made from its config (`schedule.*`) as the runner makes it (experiment.schedules.schedule_label,
    which this layer may not import); "one-shot" for a run without a schedule (an older store)."""
    recorded = (metrics or {}).get("schedule_name")
    if isinstance(recorded, str) and recorded:
        return recorded
    kind = get_dotted(config, "schedule.kind") or "oneshot"
    at_init = get_dotted(config, "schedule.at_init") is True
    compression = get_dotted(config, "pruning.compression")
    if kind == "oneshot" or compression in (1, 1.0):  # the unpruned control serves every schedule
        return f"{ONESHOT} at init" if at_init and compression not in (1, 1.0) else ONESHOT
    if kind == "iterative":
        rate = get_dotted(config, "schedule.rate", 0.2)
        return f"iterative {100 * float(rate):g}%/round" if isinstance(rate, (int, float)) else "iterative"
    if kind == "lottery":
        rewind = str(get_dotted(config, "schedule.rewind", "0it"))
        name = "lottery (rewind init)" if rewind in ("0it", "0") else f"lottery (rewind {rewind})"
        control = get_dotted(config, "schedule.control")
        return f"{name} {control} control" if control not in (None, "none") else name
    return f"{kind} at init" if at_init else str(kind)


def key_values(config: dict, metrics: dict | None = None) -> dict[str, Any]:
    """The key columns (dataset, model, strategy, compression, seed) of a run config; the strategy
    under the name the run recorded for it (`strategy_name`), else its ShrinkBench name, followed
    by the allocation that overrides its own ("Wanda (2:4)") and its schedule in brackets unless that
    is one-shot ("GlobalMagWeight [iterative]")."""
    out = {col: get_dotted(config, key) for col, key in zip(KEY_COLUMNS, KEY_PATHS)}
    shown = (metrics or {}).get("strategy_name")
    if isinstance(shown, str) and shown:
        out["strategy"] = shown
    elif out["strategy"] is not None:
        out["strategy"] = display_name(out["strategy"])
    allocation = get_dotted(config, "pruning.allocation")
    if isinstance(allocation, str) and allocation and out["strategy"] is not None:
        # another allocation (erk, per_row, 2:4) is another method: its own curve
        out["strategy"] = f"{out['strategy']} ({allocation})"
    schedule = schedule_name(config, metrics)
    if schedule != ONESHOT and out["strategy"] is not None:
        # every schedule is its own curve; the bracket comes before a target suffix, which
        # analysis.target_of reads at the end of the label
        out["strategy"] = f"{out['strategy']} [{schedule}]"
    target = get_dotted(config, "pruning.target")
    if isinstance(target, str) and target != "compression" and out["strategy"] is not None:
        # a channel strategy aimed at a speedup or a channel ratio is another curve: its
        # `compression` value is that target, not a parameter ratio
        out["strategy"] = f"{out['strategy']} ({target})"
    return out


# Measured speed (a pruned run's metrics.json, when the run timed its forward passes): latencies in
# milliseconds of one eval-mode forward pass (median and interquartile range), the dense and the pruned
# model timed side by side in one process at batch `latency_batch`, `latency_threads` threads, on
# `latency_device`. Unlike every other metric they are measurements, not deterministic. Older stores
# lack them all: a frame holds these columns only when some run recorded them.
MEASURED_KEYS: tuple[str, ...] = (
    "latency_dense_ms",
    "latency_dense_iqr_ms",
    "latency_ms",
    "latency_iqr_ms",
    "speedup_measured",  # latency_dense_ms / latency_ms
    "latency_sparse_ms",  # optional: Linear layers run as CSR sparse matrices
    "speedup_measured_sparse",
    "latency_batch",
    "latency_threads",
    "latency_device",  # a string such as "cpu"
    "structured",  # 1.0: channels removed physically (a smaller dense model); 0.0: masks
    "channels_kept_fraction",  # structured runs: kept / prunable channels
)
# Stored as numbers whatever JSON made of them (`structured` may arrive as true / false).
_NUMERIC_MEASURED = frozenset(MEASURED_KEYS) - {"latency_device"}


# Accuracies are stored as fractions (`acc1`, `acc5`) and shown everywhere as percent: a frame's
# accuracy columns carry the unit in their name (`post_test_top1_pct`).
_ACCURACY = re.compile(r"^(?:(?P<head>.*)_)?acc(?P<k>[15])$")


# Language-model metrics (text runs): mean NLL per scored token in nats (`*_loss`), perplexity
# exp(loss) (`*_ppl`) and bits per token (`*_bpc`), per stage and split (`post_test_ppl`), in the
# epoch rows too (`val_ppl`); and the evaluation window of the protocol. They keep their names and
# are always numbers in a frame (a null or a hand-edited string becomes NaN, +inf stays).
_LM_METRIC = re.compile(r"^(?:(?:dense|pre|post|round)_)?(?:train|val|test)_(?:loss|ppl|bpc)$")
_NUMERIC_LM = frozenset({"lm_eval_length", "lm_eval_stride"})


def is_lm_metric(name: str) -> bool:
    """Whether a stored metric is a language-model loss, perplexity or bits per token."""
    return _LM_METRIC.match(name) is not None


def frame_metric_name(name: str) -> str:
    """The frame column of a stored metric: `*_acc1` -> `*_top1_pct` (percent); others unchanged
    (language-model metrics such as `post_test_ppl` and `post_val_bpc` included)."""
    match = _ACCURACY.match(name)
    if match is None:
        return name
    head = match["head"]
    return f"{head}_top{match['k']}_pct" if head else f"top{match['k']}_pct"


def _percent(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return 100.0 * value
    return value


def _number(value: Any) -> float:
    """A metric that must be a number as a float: NaN for null, a boolean or a non-numeric string."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return math.nan
    return math.nan


def frame_metric_value(name: str, value: Any) -> Any:
    """A stored metric's value in its frame unit (fractions of accuracy as percent, element by
    element in a list such as `round_test_acc1`; lists as tuples, which groupby can hash;
    measured-speed numbers as floats, `structured` true/false as 1.0/0.0; language-model losses,
    perplexities and bits per token, and the protocol's eval length and stride, as floats)."""
    if isinstance(value, (list, tuple)):
        accuracy = _ACCURACY.match(name) is not None
        if is_lm_metric(name):
            return tuple(_number(v) for v in value)
        return tuple(_percent(v) if accuracy else v for v in value)
    if _ACCURACY.match(name):
        return _percent(value)
    if is_lm_metric(name) or name in _NUMERIC_LM:
        return _number(value)
    if name in _NUMERIC_MEASURED:
        if isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # a hand-edited or foreign metrics file: a number or nothing
            try:
                return float(value)
            except ValueError:
                return math.nan
        if value is None:
            return math.nan
    return value


def _open(out_dir: str | os.PathLike) -> Store:
    folder = Path(out_dir)
    if not folder.is_dir():
        raise StoreError(f"results folder {folder} does not exist")
    if not (folder / DB_NAME).is_file():
        raise StoreError(f"folder {folder} holds no results store ({DB_NAME} missing)"
                         + stores_below_hint(folder))
    return Store(folder, create=False)


def _statuses(status: str | Iterable[str] | None) -> tuple[str, ...]:
    if status is None or status == "all":
        return STATUSES
    return (status,) if isinstance(status, str) else tuple(status)


def _coerce_keys(frame: pd.DataFrame) -> pd.DataFrame:
    if "compression" in frame:
        frame["compression"] = pd.to_numeric(frame["compression"], errors="coerce").astype(float)
    if "seed" in frame and len(frame):
        seeds = pd.to_numeric(frame["seed"], errors="coerce")
        frame["seed"] = seeds.astype("Int64") if seeds.isna().any() else seeds.astype("int64")
    return frame


def load(
    out_dir: str | os.PathLike, kind: str = "prune", status: str | Iterable[str] | None = "done"
) -> pd.DataFrame:
    """One row per run of the store in `out_dir`: keys, metrics, env.*, then the flattened config."""
    statuses = _statuses(status)
    with _open(out_dir) as store:
        runs = store.runs(kind=kind, status=statuses)
    records: list[dict[str, Any]] = []
    metric_names: dict[str, None] = dict.fromkeys(frame_metric_name(k) for k in METRIC_KEYS)
    env_names: dict[str, None] = {}
    config_names: dict[str, None] = {}
    reserved = {"run_id", "status", "error", *KEY_COLUMNS}
    for run in runs:
        config = run["config"] or {}
        metrics = dict(run["metrics"] or {})
        env = metrics.pop("env", None)
        keys = key_values(config, metrics)
        metrics.pop("strategy_name", None)
        record: dict[str, Any] = {"run_id": run["id"], "status": run["status"], **keys}
        for name, value in metrics.items():
            column = frame_metric_name(name)
            metric_names.setdefault(column)
            record[column] = frame_metric_value(name, value)
        for name, value in flatten(env if isinstance(env, dict) else {}, "env").items():
            env_names.setdefault(name)
            record[name] = value
        for name, value in flatten(config).items():
            if name in KEY_PATHS:
                continue
            if name in reserved or name in metric_names or name in env_names:
                name = f"config.{name}"
            config_names.setdefault(name)
            record[name] = value
        if "failed" in statuses:
            record["error"] = run["error"]
        records.append(record)
    columns = ["run_id", "status", *KEY_COLUMNS, *metric_names, *env_names, *config_names]
    if "failed" in statuses:
        columns.append("error")
    return _coerce_keys(pd.DataFrame.from_records(records, columns=columns))


def load_epochs(out_dir: str | os.PathLike, kind: str | None = None) -> pd.DataFrame:
    """One row per recorded epoch: run_id, the key columns, phase, epoch, then the epoch metrics."""
    with _open(out_dir) as store:
        runs = {run["id"]: run for run in store.runs(kind=kind)}
        rows = store.all_epochs()
    records = []
    names: dict[str, None] = {}
    for row in rows:
        run = runs.get(row["run_id"])
        if run is None:
            continue
        keys = key_values(run["config"] or {}, run.get("metrics"))
        row = {frame_metric_name(k): frame_metric_value(k, v) for k, v in row.items()}
        for name in row:
            names.setdefault(name)
        records.append({**keys, **row})
    front = ["run_id", *KEY_COLUMNS, "phase", "epoch"]
    columns = front + [n for n in names if n not in front]
    return _coerce_keys(pd.DataFrame.from_records(records, columns=columns))


def load_layers(
    out_dir: str | os.PathLike, kind: str = "prune", status: str | Iterable[str] | None = "done"
) -> pd.DataFrame:
    """One row per layer per run, read from each run folder's layers.csv, with run_id and key columns."""
    with _open(out_dir) as store:
        runs = store.runs(kind=kind, status=_statuses(status))
    folder_of = dense_dir if kind == "dense" else run_dir
    frames = []
    for run in runs:
        path = folder_of(out_dir, run["id"], create=False) / LAYERS_FILE
        if not path.is_file():
            continue
        try:
            layers = pd.read_csv(path)
        except pd.errors.EmptyDataError:
            continue
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise StoreError(f"layer table {path} cannot be read: {exc}") from None
        keys = {"run_id": run["id"], **key_values(run["config"] or {}, run.get("metrics"))}
        for position, (name, value) in enumerate(keys.items()):
            if name in layers:
                layers = layers.drop(columns=name)
            layers.insert(position, name, value if value is not None else math.nan)
        frames.append(layers)
    if not frames:
        return pd.DataFrame(columns=["run_id", *KEY_COLUMNS, *LAYER_COLUMNS])
    return _coerce_keys(pd.concat(frames, ignore_index=True))
