"""`shrinkbench run | quickstart | results | list | profile`: one experiment and the things around it."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

from ..errors import CheckpointError, ConfigError, ShrinkBenchError
from ..registry import Registry
from .argtypes import add_threads, with_threads

DEFAULT_OUT = "shrinkbench-out"
LISTINGS: Registry[Callable[[], list[str]]] = Registry("listing")


def register(subparsers: Any) -> None:
    """Add run, quickstart, results, list and profile to the top-level parser."""
    p = subparsers.add_parser("run", help="run one experiment from a YAML config",
                              description="Run one experiment: dense model, prune, fine-tune, "
                              "evaluate. A finished run is found, not redone; an interrupted one "
                              "resumes from its last checkpoint.")
    p.add_argument("config", metavar="CONFIG.yaml", help="the experiment config (YAML)")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                   help=f"output folder holding results.sqlite and run folders (default: {DEFAULT_OUT})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set finetune.lr=0.01 (repeatable)")
    p.add_argument("--plugin", dest="plugins", action="append", default=[], metavar="MODULE|FILE.py",
                   help="import this module or file first: it registers strategies, models or data "
                   "sets (repeatable; also `plugins:` in the config)")
    add_threads(p)
    p.add_argument("--force", action="store_true", help="redo the run even if it is finished")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(handler=cmd_run)

    from .quickstart import DEFAULT_OUT as QUICK_OUT
    from .quickstart import register as register_quickstart

    register_quickstart(subparsers, QUICK_OUT)

    p = subparsers.add_parser("results", help="print the runs of an output folder",
                              description="One row per finished pruning run of an output folder.")
    p.add_argument("dir", metavar="DIR", help="an output folder (holding results.sqlite)")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table",
                   help="table (default), csv or json")
    p.set_defaults(handler=cmd_results)

    p = subparsers.add_parser("list", help="list strategies, models or data sets",
                              description="List the registered strategies, models or data sets.")
    p.add_argument("what", choices=LISTINGS.names(), help="what to list")
    p.add_argument("--plugin", dest="plugins", action="append", default=[], metavar="MODULE|FILE.py",
                   help="import this module or file first (repeatable)")
    p.set_defaults(handler=cmd_list)

    p = subparsers.add_parser("profile", help="per-layer parameters and MACs of a model",
                              description="The per-layer parameter/MAC table of a zoo model, dense "
                              "or loaded from a checkpoint (masks included).")
    p.add_argument("model", metavar="MODEL", help="zoo model name (see `shrinkbench list models`)")
    p.add_argument("--dataset", metavar="D", help="size the model for this data set (classes, input)")
    p.add_argument("--checkpoint", metavar="FILE", help="weights to load (a state dict; pruned "
                   "model.pt files keep their masks)")
    p.set_defaults(handler=cmd_profile)


def _number(value: Any) -> float:
    """A metric as a float: nan when missing or null (metrics.json writes inf and nan as null)."""
    return float("nan") if value is None else float(value)


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * float(value):.2f}%"


def _ppl(value: Any) -> str:
    return "-" if value is None else f"{float(value):.3f}"


def _quality(metrics: dict[str, Any], finetuned: bool = True) -> str:
    """Test top-1 (or, for a language model, test perplexity) dense -> pruned -> fine-tuned (the
    last step left out of a one-shot run, whose fine-tuned numbers are its pruned ones)."""
    if "post_test_ppl" in metrics:
        text = (f"test perplexity {_ppl(metrics.get('dense_test_ppl'))} dense -> "
                f"{_ppl(metrics.get('pre_test_ppl'))} pruned")
        return text + (f" -> {_ppl(metrics.get('post_test_ppl'))} fine-tuned" if finetuned else "")
    text = (f"test top-1 {_pct(metrics.get('dense_test_acc1'))} dense -> "
            f"{_pct(metrics.get('pre_test_acc1'))} pruned")
    return text + (f" -> {_pct(metrics.get('post_test_acc1'))} fine-tuned" if finetuned else "")


def summary_line(cfg: Any, metrics: dict[str, Any], out_dir: str) -> str:
    """One line: what ran, the compression and speedup reached, and test top-1 along the way."""
    from ..experiment.validate import strategy_shown
    from ..results.files import RUNS_DIR

    folder = os.path.join(out_dir, RUNS_DIR, cfg.run_id)
    from ..experiment.schedules import schedule_name

    target = "" if cfg.pruning.target == "compression" else f" ({cfg.pruning.target})"
    if not cfg.schedule.is_default:
        target += f" [{schedule_name(cfg)}]"
    measured = metrics.get("speedup_measured")
    measured = "" if measured is None else f" (measured {_number(measured):.2f}x)"
    channels = metrics.get("channels_kept_fraction")
    channels = "" if channels is None else f", {100 * _number(channels):.0f}% of channels kept"
    shown = strategy_shown(cfg.pruning.strategy)
    if cfg.pruning.allocation:
        shown += f" ({cfg.pruning.allocation})"  # as `results` and the report name the curve
    return (f"run {cfg.run_id}: {cfg.data.name}/{cfg.model.name} "
            f"{shown} x{cfg.pruning.compression:g}{target} seed "
            f"{cfg.seed}: compression {_number(metrics.get('compression_ratio')):.2f}, "
            f"speedup {_number(metrics.get('speedup')):.2f}x{measured}{channels}, "
            f"{_quality(metrics, cfg.finetune.epochs > 0 or not cfg.schedule.is_default)} "
            f"({_number(metrics.get('time_total_s')):.1f} s) in {folder}")


def cmd_run(args: argparse.Namespace) -> int:
    """Run one experiment (a one-run plan on the local executor) and print its summary line."""
    from ..experiment import load_config
    from ..sweep import run_experiment
    from ..sweep.runner import run_status

    cfg = load_config(args.config, with_threads(args.overrides, args.threads), plugins=args.plugins)
    status = run_status(args.out, cfg.run_id)
    if status == "interrupted" and not args.force:
        sys.stderr.write(f"run {cfg.run_id}: interrupted earlier; resuming from its checkpoint\n")
    elif status == "done" and not args.force:
        sys.stderr.write(f"run {cfg.run_id}: already done in {args.out}; not run again (--force reruns it)\n")
    metrics = run_experiment(cfg, args.out, force=args.force, progress=not args.no_progress)
    print(summary_line(cfg, metrics, args.out))
    return 0


TABLE_COLUMNS = ("run_id", "dataset", "model", "strategy", "compression", "seed",
                 "pruning.calibration_seed", "compression_ratio", "speedup", "speedup_measured",
                 "dense_test_top1_pct", "pre_test_top1_pct", "post_test_top1_pct",
                 "dense_val_ppl", "pre_val_ppl", "post_val_ppl", "dense_test_ppl", "pre_test_ppl",
                 "post_test_ppl", "time_total_s")


def cmd_results(args: argparse.Namespace) -> int:
    """Print the finished pruning runs of an output folder."""
    from ..results import load

    frame = load(args.dir)
    if args.format == "csv":
        sys.stdout.write(frame.to_csv(index=False))
    elif args.format == "json":
        from ..results.files import finite, json_default

        records = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
        text = json.dumps(finite(records), indent=1, allow_nan=False, default=json_default)
        sys.stdout.write(text + "\n")  # strict JSON: inf and nan are null
    elif frame.empty:
        print(f"no finished runs in {args.dir}")
    else:
        # columns no run has (accuracy of language models, perplexity of classifiers) are left out
        table = frame[[c for c in TABLE_COLUMNS if c in frame and frame[c].notna().any()]].copy()
        if "pruning.calibration_seed" in table:  # null: the run's seed drew the calibration data
            drawn = table["pruning.calibration_seed"].fillna(table["seed"])
            table["pruning.calibration_seed"] = drawn.astype("Int64")
        table = table.rename(columns={"pruning.calibration_seed": "calibration_seed"})
        formats = {c: "{:.2f}".format for c in table if c.endswith("_pct")}
        formats.update({c: "{:.3f}".format for c in table if c.endswith("_ppl")})
        formats.update({"compression_ratio": "{:.2f}".format, "speedup": "{:.2f}".format,
                        "speedup_measured": "{:.2f}".format,
                        "time_total_s": "{:.1f}".format, "compression": "{:g}".format})
        print(table.to_string(index=False, formatters=formats))
    return 0


@LISTINGS.register("strategies")
def _list_strategies() -> list[str]:
    from ..experiment.validate import strategy_shown
    from ..pruning import STRATEGIES

    # The name shown everywhere (tables, plots, progress lines, CSV) first; any other name that a
    # config may use after it.
    rows = []
    for name in sorted(STRATEGIES.names(), key=lambda n: strategy_shown(n).lower()):
        strategy = STRATEGIES.get(name)
        shown = strategy_shown(name)
        others = ", ".join(n for n in (name, *STRATEGIES.aliases_of(name)) if n != shown)
        options = ", ".join(strategy.option_names())
        kind = "channels" if strategy.structured else "weights"
        row = f"{shown:<24} {kind:<9} {strategy.allocation:<10} {'also: ' + others if others else ''}"
        rows.append(f"{row:<76} options: {options}" if options else row.rstrip())
    return rows


@LISTINGS.register("models")
def _list_models() -> list[str]:
    from ..models import list_models, model_info

    rows = []
    for name in list_models():
        info = model_info(name)
        shape = "x".join(str(s) for s in info.default_input_shape)
        rows.append(f"{name:<20} {info.family:<12} {shape:<10} {info.default_num_classes:>5} classes  "
                    f"{info.description}")
    return rows


@LISTINGS.register("datasets")
def _list_datasets() -> list[str]:
    from ..data import dataset_info, list_datasets

    rows = []
    for name in list_datasets():
        info = dataset_info(name)
        shape = "x".join(str(s) for s in info.input_shape or ())
        rows.append(f"{name:<16} {shape:<10} {info.num_classes or '-':>5} classes")
    return rows


def cmd_list(args: argparse.Namespace) -> int:
    """Print the registered strategies, models or data sets, one per line."""
    from ..experiment.plugins import load_plugins, resolve_plugins

    load_plugins(resolve_plugins(args.plugins))
    for line in LISTINGS.get(args.what)():
        print(line)
    return 0


def _load_checkpoint(model: Any, name: str, path: str) -> None:
    """Load weights (with masks, when the file has them) into `model`; errors name --checkpoint."""
    from ..common import MASK_SUFFIX, unwrap_state_dict
    from ..experiment.checkpoint import load_state
    from ..models import load_weights
    from ..pruning.masks import load_state_dict

    if Path(path).is_dir():
        raise ConfigError(f"--checkpoint: {path!r} is a directory, not a checkpoint file")
    if not Path(path).is_file():
        raise ConfigError(f"--checkpoint: file {path!r} does not exist")
    try:
        state = unwrap_state_dict(load_state(path), f"checkpoint {path!r}")
        if not any(key.endswith(MASK_SUFFIX) for key in state):
            load_weights(model, path)
            return
        try:
            load_state_dict(model, state)
        except (RuntimeError, KeyError, ValueError) as exc:
            raise CheckpointError(f"{path!r} does not fit model {name!r}: "
                                  f"{' '.join(str(exc).split())[:160]}") from None
    except ShrinkBenchError as exc:
        raise type(exc)(f"--checkpoint: {exc}") from None


def cmd_profile(args: argparse.Namespace) -> int:
    """Print a model's per-layer table (dense, or as stored in a checkpoint) and its totals."""
    import torch

    from ..metrics import compression_ratio, count_macs, format_table, layer_table
    from ..models import create, model_info

    info = model_info(args.model)
    classes, shape = info.default_num_classes, info.default_input_shape
    if args.dataset:
        from ..data import dataset_info

        data = dataset_info(args.dataset)
        classes, shape = data.num_classes or classes, tuple(data.input_shape or shape)
    model = create(info.name, num_classes=classes, input_shape=tuple(shape),
                   generator=torch.Generator().manual_seed(0))
    if args.checkpoint:
        _load_checkpoint(model, info.name, args.checkpoint)
    from ..models import takes_tokens

    example = torch.zeros(1, *shape, dtype=torch.int64 if takes_tokens(info) else torch.float32)
    print(format_table(layer_table(model, example)))
    macs = count_macs(model, example)
    print(f"{info.name} on input {'x'.join(map(str, shape))}, {classes} classes: compression "
          f"{compression_ratio(model):.2f}, MACs {macs.dense:,} dense / {round(macs.sparse):,} sparse, "
          f"speedup {macs.speedup:.2f}x")
    return 0
