"""A run with a schedule other than one-shot pruning of the dense model: pruning at initialization,
iterative rounds, gradual pruning during training, lottery tickets and their controls.

The run is a sequence of stages (a pruning step, a training phase, a round); a checkpoint after
each one lets an interrupted run resume at the next stage with the same numbers. Only the final
training phase(s) of the run write epochs (epochs.csv and the store); earlier rounds are summed up
in the `round_*` lists of its metrics.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..common import EPOCHS_FILE, LAYERS_FILE, MASK_SUFFIX, METRICS_FILE, MODEL_FILE
from ..errors import ConfigError, PruningError
from ..models import load_weights
from ..pruning.masks import load_state_dict
from ..results.files import atomic_write_bytes, run_dir, write_csv, write_json
from .checkpoint import CHECKPOINT, load_checkpoint, load_state, model_state, save_checkpoint, save_state_dict
from .components import build_model, drawing, lm_protocol, takes_tokens, example_input, load_data
from .config import Config
from .dense import ensure_dense, file_lock, finished, read_metrics, split_metrics, summarize
from .device import autocast_factory, environment, resolve_device, use_channels_last
from .loops import EpochHook, derive_seed, evaluate_split, fit
from .schedules import (Cost, Pruner, Tracker, agp_events, agp_keeps, attach_all, dense_cost,
                        examples_per_epoch, gradual_window, masks_of, parse_step, rewind, schedule_name,
                        shuffled, weights_of)
from .speed import measure_speed
from .validate import strategy_shown

TICKET_FILE = "ticket.json"  # a lottery ticket's sparsity path and cost when its final mask was fixed


def check_masks_hold(model: nn.Module) -> None:
    """Refuse a model in which a masked-out entry is not exactly zero (the masks did not hold)."""
    from ..pruning import masked_parameters

    for name, module, local, mask in masked_parameters(model):
        weight = module._parameters[local]
        leaked = int((weight.detach()[mask == 0] != 0).sum())
        if leaked:
            raise PruningError(f"{name}: {leaked} pruned entries are not zero at the end of the run; "
                               "the masks did not hold (was a Parameter replaced during training?)")


def score_batches(cfg: Config, train: Any) -> list[Any]:
    """The examples that scores read: `pruning.calibration_samples` training examples drawn at
    random by `calibration_seed` (or the run's seed), or else the first `pruning.score_batches`
    training batches of epoch 0 (the seed's order)."""
    p = cfg.pruning
    if p.calibration_samples is not None:
        drawing(train)
        seed = cfg.seed if p.calibration_seed is None else p.calibration_seed
        length = {} if p.calibration_length is None else {"length": p.calibration_length}
        return train.calibration(p.calibration_samples, seed, cfg.finetune.batch_size, **length)
    batches = []
    train.set_epoch(0)
    for x, y in train:
        batches.append((x, y))
        if len(batches) == p.score_batches:
            break
    return batches


class ScheduledRun:
    """One scheduled run in its folder (see the module docstring)."""

    def __init__(self, cfg: Config, folder: Path, out_dir: str | os.PathLike, progress: bool,
                 on_epoch: EpochHook | None) -> None:
        self.cfg, self.folder, self.out_dir = cfg, folder, out_dir
        self.progress, self.on_epoch = progress, on_epoch
        self.began = time.perf_counter()
        self.device = resolve_device(cfg.device)
        self.autocast = autocast_factory(self.device, cfg.precision)
        self.dense_file = ensure_dense(cfg, out_dir, progress=progress)
        self.bundle = load_data(cfg, cfg.finetune, self.device)  # fine-tuning batch size
        self.info = self.bundle.info
        self.channels_last = use_channels_last(cfg.channels_last, self.info.input_shape)
        self.pruner = Pruner(cfg, score_batches(cfg, self.bundle.train), self.device)
        self.ckpt = folder / CHECKPOINT
        self.rows: list[dict[str, Any]] = []
        self.last_rows: list[dict[str, Any]] = []
        self.rounds: list[dict[str, Any]] = []
        self.metrics: dict[str, Any] = {}
        self.extra: dict[str, Any] = {}  # kept in the checkpoint: rewinding point, ticket path
        self.index = 0
        self.done = 0
        self.checkpointing = bool(cfg.checkpoint_every)
        self.elapsed_before = 0.0
        self.model = build_model(cfg, self.info, self.device)
        self.tracker = Tracker(example=example_input(self.info, self.device),
                               epoch_examples=examples_per_epoch(self.bundle.train))
        state = load_checkpoint(self.ckpt, cfg.run_id)
        if state and state.get("schedule") == schedule_name(cfg):
            load_state_dict(self.model, state["model"])
            self.tracker.restore(state["tracker"])
            self.rows, self.rounds = list(state["rows"]), list(state["rounds"])
            self.metrics, self.extra = dict(state["metrics"]), dict(state["extra"])
            self.done = int(state["stage"])
            self.elapsed_before = float(state["elapsed"])
            for row in self.rows:  # resumed: the epochs done before the interruption
                if self.on_epoch is not None:
                    self.on_epoch(row["phase"], int(row["epoch"]), row)

    # -- stages ---------------------------------------------------------------------------------
    def stage(self, fn: Callable[[], None]) -> None:
        """Run `fn` unless a checkpoint shows it done; checkpoint after it."""
        self.index += 1
        if self.index <= self.done:
            return
        fn()
        self.done = self.index
        if self.checkpointing:
            save_checkpoint(self.ckpt, {
                "id": self.cfg.run_id, "schedule": schedule_name(self.cfg), "stage": self.done,
                "model": model_state(self.model), "tracker": self.tracker.state(),
                "rows": self.rows, "rounds": self.rounds, "metrics": self.metrics,
                "extra": self.extra, "elapsed": self.elapsed()})

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.began

    def dense_bundle(self) -> Any:
        return load_data(self.cfg, self.cfg.dense.recipe, self.device)

    def load_dense(self) -> None:
        load_weights(self.model, self.dense_file)

    def base_cost(self) -> Cost:
        """The cost of the trained dense model (dense MACs for every step); nothing for a dense
        model given as a checkpoint (its training is not known)."""
        if self.cfg.dense.source != "train":
            return Cost()
        dense = build_model(self.cfg, self.info, self.device)
        from ..metrics import count_macs

        per_example = float(count_macs(dense, example_input(self.info, self.device)).dense)
        return dense_cost(self.cfg.dense.recipe, self.dense_bundle().train, per_example)

    def train(self, recipe: Any, bundle: Any, phase: str, *, record: bool,
              start_step: int | None = None, rng_phase: str | None = None,
              on_step: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
        """Train with `recipe`; the epochs are the run's own (written) when `record`."""
        self.tracker.measure(self.model)
        rows = fit(self.model, recipe, bundle.train, bundle.val, phase=phase, seed=self.cfg.seed,
                   device=self.device, autocast=self.autocast, channels_last=self.channels_last,
                   start_step=start_step, rng_phase=rng_phase, progress=self.progress,
                   on_step=on_step or self.tracker.on_step)
        if record:
            for row in rows:
                row["phase"] = phase
                self.rows.append(row)
                if self.on_epoch is not None:
                    self.on_epoch(phase, int(row["epoch"]), row)
        self.last_rows = rows
        return rows

    def prune(self, keep: int | None = None, **kw: Any) -> None:
        self.pruner(self.model, keep, **kw)
        self.tracker.pruned(self.model)

    def evaluate(self, prefix: str) -> dict[str, float]:
        return split_metrics(prefix, self.model, self.bundle, self.autocast)

    def end_round(self) -> None:
        """Record a round: its compression, the validation accuracy of its last epoch (just
        measured by the training loop) and its test accuracy."""
        test = evaluate_split(self.model, self.bundle.test, self.autocast) or {}
        last = self.last_rows[-1] if self.last_rows else {}
        self.rounds.append({"compression": self.tracker.path_compression[-1],
                            "val_acc1": last.get("val_acc1"), "test_acc1": test.get("acc1")})

    # -- schedules ------------------------------------------------------------------------------
    def oneshot_at_init(self) -> None:
        def start() -> None:
            self.prune()
            self.metrics.update(self.evaluate("pre"))

        self.stage(start)
        self.stage(lambda: self.train(self.cfg.dense.recipe, self.dense_bundle(), "dense", record=True))
        self.stage(lambda: self.train(self.cfg.finetune, self.bundle, "finetune", record=True))

    def iterative(self) -> None:
        s = self.cfg.schedule
        recipe = dataclasses.replace(self.cfg.finetune, epochs=s.round_epochs or self.cfg.finetune.epochs)

        def begin() -> None:
            self.load_dense()
            self.tracker.cost = self.base_cost()

        self.stage(begin)

        def one_round(keep: int, last: bool) -> None:
            self.prune(None if last else keep)
            if last:
                self.metrics.update(self.evaluate("pre"))
            self.train(recipe, self.bundle, "finetune", record=last)
            self.end_round()

        self.rounds_of(one_round)

    def rounds_of(self, body: Callable[[int, bool], None]) -> None:
        """Stages `body(keep, last)`, one per round at `schedule.rate`, until the target."""
        while True:
            if self.index < self.done:  # a round done before a restart
                self.index += 1
                continue
            keep = self.pruner.next_round(self.model, self.cfg.schedule.rate)
            if keep is None:
                break
            last = keep == self.pruner.final_keep(self.model)
            self.stage(lambda keep=keep, last=last: body(keep, last))

    def gradual(self) -> None:
        s, cfg = self.cfg.schedule, self.cfg
        recipe, bundle, phase = ((cfg.dense.recipe, self.dense_bundle(), "dense") if s.at_init
                                 else (cfg.finetune, self.bundle, "finetune"))
        begin, end = gradual_window(cfg, len(bundle.train))
        events = agp_events(begin, end, s.frequency)

        def start() -> None:
            if not s.at_init:
                self.load_dense()
                self.tracker.cost = self.base_cost()
            prunable = sum(self.pruner.counts(self.model)[2].values())
            final = self.pruner.final_keep(self.model)
            self.extra["keeps"] = agp_keeps(prunable, final, events, begin, end, s.initial_sparsity)

        self.stage(start)
        keeps = list(self.extra["keeps"])
        plan = dict(zip(events, keeps))
        final = keeps[-1]
        offset = self.tracker.step  # the run's steps before this phase

        def prune_at(step: int) -> None:
            keep = plan.get(step)
            if keep is None:
                return
            alive = sum(self.pruner.counts(self.model)[2].values())
            if keep < alive:
                self.prune(None if step == end else keep)
            if step == end:  # the final mask, before the training after it
                self.metrics.update(self.evaluate("pre"))

        def hook(batch: int) -> None:
            self.tracker.on_step(batch)
            if self.tracker.step - offset in plan:
                prune_at(self.tracker.step - offset)

        def phase_one() -> None:
            prune_at(0)
            self.train(recipe, bundle, phase, record=True, on_step=hook)
            if final < sum(self.pruner.counts(self.model)[2].values()):  # pragma: no cover - a bug
                raise PruningError("the gradual schedule ended above its target")

        self.stage(phase_one)
        if s.at_init:
            self.stage(lambda: self.train(cfg.finetune, self.bundle, "finetune", record=True))

    def rewind_point(self) -> tuple[dict[str, torch.Tensor], int]:
        """The weights the lottery rewinds to (dense training replayed to step k) and k."""
        cfg = self.cfg
        dense = self.dense_bundle()
        k = parse_step(cfg.schedule.rewind, len(dense.train))
        if k >= cfg.dense.recipe.epochs * len(dense.train):
            raise ConfigError(f"schedule.rewind: {cfg.schedule.rewind} is at or past the end of dense "
                              f"training ({cfg.dense.recipe.epochs * len(dense.train)} steps)")
        if "rewind" not in self.extra:
            model = build_model(cfg, self.info, self.device)
            if k:
                fit(model, cfg.dense.recipe, dense.train, dense.val, phase="dense", seed=cfg.seed,
                    device=self.device, autocast=self.autocast, channels_last=self.channels_last,
                    stop_step=k)
            self.extra["rewind"] = weights_of(model)
        return self.extra["rewind"], k

    def lottery(self) -> None:
        cfg, s = self.cfg, self.cfg.schedule
        weights, k = self.rewind_point()
        dense = self.dense_bundle()

        def train_from_rewind(record: bool) -> None:
            self.train(cfg.dense.recipe, dense, "finetune", record=record,
                       start_step=k, rng_phase="dense")

        def begin() -> None:
            self.tracker.cost = self.base_cost()
            if s.control == "random":
                rewind(self.model, weights)
                self.prune(strategy="random", salt="random-control")
            elif s.control != "none":
                masks, ticket = self.ticket()
                self.tracker.restore(ticket)
                if s.control == "reinit":
                    fresh = build_model(cfg, self.info, self.device, init="reinit")
                    self.model.load_state_dict(fresh.state_dict())
                else:
                    rewind(self.model, weights)
                    masks = shuffled(masks, torch.Generator().manual_seed(
                        derive_seed(cfg.seed, "shuffle-control")))
                attach_all(self.model, masks)
                self.tracker.measure(self.model)
            else:
                self.load_dense()

        self.stage(begin)
        if s.control == "none":
            self.imp_rounds(weights, train_from_rewind, final=True)
            return

        def final() -> None:
            self.metrics.update(self.evaluate("pre"))
            train_from_rewind(True)
            self.end_round()

        self.stage(final)

    def imp_rounds(self, weights: dict[str, torch.Tensor], train: Callable[[bool], None],
                   final: bool) -> None:
        """Iterative magnitude pruning: prune, rewind, train, until the target (then, with
        `final`, the ticket is trained; without, the rounds stop at its mask)."""
        def one_round(keep: int, last: bool) -> None:
            self.prune(None if last else keep)
            rewind(self.model, weights)
            if last:
                self.extra["ticket"] = self.tracker.state()
                if not final:
                    return
                self.metrics.update(self.evaluate("pre"))
            train(last)
            self.end_round()

        self.rounds_of(one_round)

    def ticket(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The final mask of this control's lottery ticket and the ticket's path and cost at that
        point: read from the ticket's finished run when there is one, else found here (the same
        numbers: the ticket's rounds are deterministic)."""
        cfg = self.cfg
        ticket_cfg = dataclasses.replace(cfg, schedule=dataclasses.replace(cfg.schedule, control="none"))
        folder = run_dir(self.out_dir, ticket_cfg.run_id)
        # a ticket being found by another worker is waited for, not found twice
        with file_lock(folder / ".lock"):
            if finished(folder) and (folder / TICKET_FILE).is_file():
                try:
                    state = load_state(folder / MODEL_FILE, map_location=self.device)
                    path = json.loads((folder / TICKET_FILE).read_text(encoding="utf-8"))
                    masks = {k[: -len(MASK_SUFFIX)]: v for k, v in state.items()
                             if k.endswith(MASK_SUFFIX)}
                    if masks:
                        return masks, path
                except Exception:  # an unreadable ticket: its mask is found again below
                    pass
            return self.find_ticket()

    def find_ticket(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The ticket's rounds run here, up to its final mask (not trained)."""
        cfg = self.cfg
        finder = ScheduledRun.__new__(ScheduledRun)
        finder.__dict__.update(self.__dict__)
        finder.model = build_model(cfg, self.info, self.device)
        load_weights(finder.model, self.dense_file)
        finder.tracker = Tracker(example=self.tracker.example, epoch_examples=self.tracker.epoch_examples,
                                 cost=self.base_cost())
        finder.tracker.measure(finder.model)
        finder.rounds, finder.rows, finder.metrics, finder.extra = [], [], {}, dict(self.extra)
        finder.index, finder.done, finder.checkpointing, finder.on_epoch = 0, 0, False, None
        weights, k = finder.rewind_point()
        dense = finder.dense_bundle()

        def train(record: bool) -> None:
            finder.train(cfg.dense.recipe, dense, "finetune", record=False, start_step=k,
                         rng_phase="dense")

        finder.imp_rounds(weights, train, final=False)
        return masks_of(finder.model), finder.extra["ticket"]

    # -- the whole run --------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        cfg, s = self.cfg, self.cfg.schedule
        if s.kind == "oneshot":
            self.oneshot_at_init()
        elif s.kind == "iterative":
            self.iterative()
        elif s.kind == "gradual":
            self.gradual()
        else:
            self.lottery()
        check_masks_hold(self.model)
        metrics = dict(self.metrics)
        dense = read_metrics(Path(self.dense_file).parent / METRICS_FILE) if cfg.dense.source == "train" else None
        if dense is not None:
            metrics.update({k: v for k, v in dense.items() if k.startswith("dense_")})
        else:
            reference = build_model(cfg, self.info, self.device)
            load_weights(reference, self.dense_file)
            metrics.update(split_metrics("dense", reference, self.bundle, self.autocast))
        metrics.update(split_metrics("post", self.model, self.bundle, self.autocast))
        stats, layers = summarize(self.model, self.info, self.device)
        metrics.update(stats)
        metrics["structured"] = 0.0
        metrics.update(self.tracker.metrics())
        if self.rounds:
            metrics["round_compression"] = [r["compression"] for r in self.rounds]
            metrics["round_val_acc1"] = [r["val_acc1"] for r in self.rounds]
            metrics["round_test_acc1"] = [r["test_acc1"] for r in self.rounds]
        metrics["schedule"] = s.kind
        if takes_tokens(self.info):
            metrics.update(lm_protocol(cfg, self.bundle))
        metrics["schedule_name"] = schedule_name(cfg)
        if cfg.latency.enabled:
            reference = build_model(cfg, self.info, self.device)
            load_weights(reference, self.dense_file)
            metrics.update(measure_speed(cfg, self.model, reference, self.info, self.device))
        metrics["time_total_s"] = self.elapsed()
        metrics["env"] = environment(self.device)
        metrics["strategy_name"] = strategy_shown(cfg.pruning.strategy)
        save_state_dict(self.folder / MODEL_FILE, model_state(self.model))
        if "ticket" in self.extra and s.kind == "lottery" and s.control == "none":
            atomic_write_bytes(self.folder / TICKET_FILE,
                               json.dumps(self.extra["ticket"]).encode("utf-8"))
        write_csv(self.folder / EPOCHS_FILE, self.rows)
        write_csv(self.folder / LAYERS_FILE, layers)
        write_json(self.folder / METRICS_FILE, metrics)  # last: its presence marks the run done
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.ckpt)
        return metrics


def run_scheduled(cfg: Config, folder: Path, out_dir: str | os.PathLike, progress: bool,
                  on_epoch: EpochHook | None) -> dict[str, Any]:
    """Run `cfg` (a schedule other than one-shot from the dense model) in `folder`."""
    return ScheduledRun(cfg, folder, out_dir, progress, on_epoch).run()


__all__ = ["run_scheduled", "check_masks_hold"]
