"""When a run prunes: one-shot (at the trained dense model or at initialization), iterative rounds,
gradual (Zhu & Gupta's cubic schedule), and lottery tickets with rewinding and their controls.

Every schedule records its sparsity path (the sparsity after each pruning step, at the optimizer
step of the run's own training where it happened) and the training cost behind its final model:
epochs, optimizer steps and training multiply-accumulates, counted as 3 x the forward MACs of one
example at each step's density (forward, gradient of the input, gradient of the weights: the
convention of Evci et al. 2020) times the examples of the step. A run that starts from the trained
dense model inherits the dense training's cost.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from ..errors import ConfigError, PruningError
from ..metrics import count_macs, count_parameters
from ..pruning import classifier_name, masked_parameters, prunable_parameters, prune
from ..pruning.api import keep_count
from ..pruning.masks import apply_masks, attach_mask
from .config import Config, RecipeConfig

STEP = re.compile(r"^\s*(\d+)\s*(ep|it)?\s*$")
TRAIN_MACS_PER_FORWARD = 3  # forward + input gradient + weight gradient


def parse_step(text: str | int, per_epoch: int) -> int:
    """Optimizer steps of a step text: "0", "500it" (steps) or "3ep" (epochs of `per_epoch` steps)."""
    match = STEP.match(str(text))
    if match is None:
        raise ConfigError(f"{text!r} is not a step: expected N, Nit or Nep")
    count = int(match[1])
    return count * per_epoch if match[2] == "ep" else count


def examples_per_epoch(train: Any) -> int:
    """Training examples one epoch of `train` goes through."""
    samples = getattr(train, "num_samples", None)
    batch = getattr(train, "batch_size", None)
    if samples is None or batch is None:
        return len(train) * int(batch or 1)
    return len(train) * batch if getattr(train, "drop_last", False) else int(samples)


def steps_per_epoch(train: Any, batch_size: int) -> int:
    """Optimizer steps per epoch of `train`'s examples at `batch_size`."""
    samples = examples_per_epoch(train)
    return samples // batch_size if getattr(train, "drop_last", False) else -(-samples // batch_size)


@dataclass
class Cost:
    """Training spent on a model: epochs (of examples), optimizer steps, training MACs."""

    epochs: float = 0.0
    steps: int = 0
    macs: float = 0.0

    def as_metrics(self, prefix: str = "train") -> dict[str, float]:
        return {f"{prefix}_epochs": float(self.epochs), f"{prefix}_steps": int(self.steps),
                f"{prefix}_macs": float(self.macs)}


def dense_cost(recipe: RecipeConfig, train: Any, macs_per_example: float) -> Cost:
    """What training a dense model with `recipe` on `train`'s examples costs."""
    epoch_examples = examples_per_epoch(train)
    return Cost(epochs=float(recipe.epochs), steps=recipe.epochs * steps_per_epoch(train, recipe.batch_size),
                macs=float(TRAIN_MACS_PER_FORWARD * macs_per_example * epoch_examples * recipe.epochs))


@dataclass
class Tracker:
    """The sparsity path and the training cost of one run, updated as it trains and prunes."""

    example: Any
    epoch_examples: int
    cost: Cost = field(default_factory=Cost)
    step: int = 0  # optimizer steps of the run's own training
    examples: int = 0  # examples those steps trained on
    path_step: list[int] = field(default_factory=list)
    path_sparsity: list[float] = field(default_factory=list)
    path_compression: list[float] = field(default_factory=list)
    per_example: float = 0.0  # forward MACs of one example at the current density

    def measure(self, model: nn.Module) -> None:
        """Forward MACs of one example at the model's current masks."""
        self.per_example = float(count_macs(model, self.example).sparse)

    def pruned(self, model: nn.Module) -> None:
        """Record a pruning step: the model's sparsity now, at the current step."""
        counts = count_parameters(model)
        self.path_step.append(self.step)
        self.path_sparsity.append(1.0 - counts.nonzero / max(counts.total, 1))
        self.path_compression.append(counts.total / max(counts.nonzero, 1))
        self.measure(model)

    def on_step(self, batch: int) -> None:
        """One optimizer step on `batch` examples."""
        self.step += 1
        self.examples += batch
        self.cost.steps += 1
        self.cost.macs += TRAIN_MACS_PER_FORWARD * self.per_example * batch

    def total(self) -> Cost:
        """The cost so far: what the run started from, plus its own training."""
        return Cost(self.cost.epochs + self.examples / self.epoch_examples, self.cost.steps,
                    self.cost.macs)

    def metrics(self) -> dict[str, Any]:
        return {**self.total().as_metrics(), "path_step": list(self.path_step),
                "path_sparsity": list(self.path_sparsity),
                "path_compression": list(self.path_compression)}

    def state(self) -> dict[str, Any]:
        return {"cost": [self.cost.epochs, self.cost.steps, self.cost.macs], "step": self.step,
                "examples": self.examples,
                "path": [self.path_step, self.path_sparsity, self.path_compression],
                "per_example": self.per_example}

    def restore(self, state: dict[str, Any]) -> None:
        epochs, steps, macs = state["cost"]
        self.cost = Cost(float(epochs), int(steps), float(macs))
        self.step = int(state["step"])
        self.examples = int(state["examples"])
        self.path_step, self.path_sparsity, self.path_compression = (list(v) for v in state["path"])
        self.per_example = float(state["per_example"])


def schedule_name(cfg: Config) -> str:
    """The label a run's schedule carries in tables and plots."""
    return schedule_label(dataclasses.asdict(cfg.schedule), cfg.is_control)


def schedule_label(schedule: Any, control: bool = False) -> str:
    """The label of a schedule given as plain data (a stored config's `schedule`; {} = one-shot)."""
    s = dict(schedule or {})
    kind, at_init = s.get("kind", "oneshot"), bool(s.get("at_init", False))
    if control or kind == "oneshot":
        return "one-shot at init" if at_init and not control else "one-shot"
    if kind == "iterative":
        return f"iterative {100 * float(s.get('rate', 0.2)):g}%/round"
    if kind == "gradual":
        return "gradual at init" if at_init else "gradual"
    rewind = str(s.get("rewind", "0it"))
    name = "lottery (rewind init)" if rewind in ("0it", "0") else f"lottery (rewind {rewind})"
    which = s.get("control", "none")
    return name if which == "none" else f"{name} {which} control"


# ---- pruning to an exact count of kept prunable weights -------------------------------------------

def classifier_rates(cfg: Config, model: nn.Module) -> dict[str, float] | None:
    """The `layer_rates` of prune() for `pruning.classifier_rate` (None when it is 1): the
    classifier's weight under the name prunable_parameters lists it (a tied weight has one name)."""
    p = cfg.pruning
    if p.classifier_rate == 1.0:
        return None
    name = classifier_name(model)
    if name is None:
        raise ConfigError("pruning.classifier_rate: the model has no classifier layer to rate")
    weight = getattr(model.get_submodule(name), "weight", None)
    params = prunable_parameters(model, p.include_classifier, p.include_bias, p.ignore)
    listed = [key for key, param in params.items() if param is weight]
    if not listed:
        raise ConfigError(f"pruning.classifier_rate: the classifier {name!r} is not pruned "
                          "(pruning.ignore names it, or it has no weight)")
    return {listed[0]: p.classifier_rate}


def check_steps(cfg: Config, model: nn.Module, train: Any) -> None:
    """Refuse, before anything trains, a schedule whose steps cannot happen: a gradual window out of
    its training phase or starting above the target, a rewinding point at or past the end of dense
    training, more rounds than anyone means to run, a classifier rate that names nothing."""
    s, p = cfg.schedule, cfg.pruning
    classifier_rates(cfg, model)
    if s.is_default or cfg.is_control:
        return
    params = prunable_parameters(model, p.include_classifier, p.include_bias, p.ignore)
    total = sum(t.numel() for t in model.parameters())
    prunable = sum(t.numel() for t in params.values())
    target = keep_count(total, total - prunable, p.compression)
    if s.kind == "gradual":
        recipe = cfg.dense.recipe if s.at_init else cfg.finetune
        gradual_window(cfg, steps_per_epoch(train, recipe.batch_size))
        if 1.0 - target / max(prunable, 1) < s.initial_sparsity:
            raise ConfigError(f"schedule.initial_sparsity: {s.initial_sparsity:g} is above the "
                              f"target's sparsity ({1 - target / prunable:.4g} of the prunable "
                              "weights): the schedule would have nothing left to do")
    if s.kind == "lottery":
        per_epoch = steps_per_epoch(train, cfg.dense.recipe.batch_size)
        steps = cfg.dense.recipe.epochs * per_epoch
        if parse_step(s.rewind, per_epoch) >= steps:
            raise ConfigError(f"schedule.rewind: {s.rewind} is at or past the end of dense "
                              f"training ({steps} steps): the rounds would not train")
    if s.kind in ("iterative", "lottery") and target < prunable:
        rounds = math.log(max(target, 1) / prunable) / math.log(1.0 - s.rate)
        if rounds > MAX_ROUNDS:
            raise ConfigError(f"schedule.rate: {s.rate:g} per round needs about {rounds:,.0f} "
                              f"rounds to reach compression {p.compression:g}; at most "
                              f"{MAX_ROUNDS} are run (raise the rate)")


MAX_ROUNDS = 1000


def gradual_window(cfg: Config, per_epoch: int) -> tuple[int, int]:
    """The first and last pruning steps of a gradual schedule whose training phase has `per_epoch`
    steps per epoch; ConfigError when they do not lie in order within the phase."""
    s = cfg.schedule
    recipe = cfg.dense.recipe if s.at_init else cfg.finetune
    steps = recipe.epochs * per_epoch
    begin = parse_step(s.begin, per_epoch)
    end = parse_step(s.end, per_epoch) if s.end is not None else (3 * steps) // 4
    if not begin <= end <= steps:
        raise ConfigError(f"schedule.end: the gradual schedule prunes from step {begin} "
                          f"({s.begin}) to step {end} ({s.end or 'three quarters'}), which must "
                          f"lie in order within the {steps} steps of its training phase "
                          f"({recipe.epochs} epochs of {per_epoch})")
    return begin, end


@dataclass
class Pruner:
    """Prunes a model with the run's strategy and settings to a kept count or the final target."""

    cfg: Config
    batches: list[Any]
    device: Any
    seed_salt: str = "prune"

    def layer_rates(self, model: nn.Module) -> dict[str, float] | None:
        return classifier_rates(self.cfg, model)

    def counts(self, model: nn.Module) -> tuple[int, int, dict[str, int], dict[str, float]]:
        """(all parameters, unprunable nonzero ones, alive entries per prunable tensor, rates)."""
        p = self.cfg.pruning
        params = prunable_parameters(model, p.include_classifier, p.include_bias, p.ignore)
        masks = {name: mask for name, _, _, mask in masked_parameters(model)}
        total = sum(t.numel() for t in model.parameters())
        alive = {name: int(masks[name].count_nonzero()) if name in masks else t.numel()
                 for name, t in params.items()}
        ids = {id(t) for t in params.values()}
        fixed = sum(int(masks[n].count_nonzero()) if n in masks else t.numel()
                    for n, t in model.named_parameters() if id(t) not in ids)
        rates = dict.fromkeys(params, 1.0)
        rates.update(self.layer_rates(model) or {})
        return total, fixed, alive, rates

    def final_keep(self, model: nn.Module) -> int:
        total, fixed, _, _ = self.counts(model)
        return keep_count(total, fixed, self.cfg.pruning.compression)

    def __call__(self, model: nn.Module, keep: int | None = None, strategy: str | None = None,
                 salt: str = "") -> None:
        """Prune to `keep` prunable weights (None: the run's target compression)."""
        from .loops import derive_seed, seeded_rng, task_loss

        p = self.cfg.pruning
        total, fixed, _, _ = self.counts(model)
        # a compression whose floor(total / c) is exactly fixed + keep, whatever the rounding
        compression = p.compression if keep is None else total / (fixed + keep + 0.5)
        was_training = model.training
        model.eval()
        try:
            with seeded_rng(derive_seed(self.cfg.seed, self.seed_salt, salt), self.device):
                prune(model, strategy or p.strategy, compression, batches=self.batches,
                      loss_fn=task_loss, seed=self.cfg.seed if not salt
                      else derive_seed(self.cfg.seed, salt) % (2**62),
                      include_classifier=p.include_classifier, include_bias=p.include_bias,
                      ignore=tuple(p.ignore), options=p.options if strategy is None else {},
                      # another strategy (a control's random pruning) keeps its own allocation
                      allocation=p.allocation if strategy is None else None,
                      layer_rates=self.layer_rates(model) if strategy is None else None)
        finally:
            model.train(was_training)

    def next_round(self, model: nn.Module, rate: float) -> int | None:
        """Kept count after one more round at `rate` (the target at most), None when reached."""
        total, fixed, alive, rates = self.counts(model)
        target = keep_count(total, fixed, self.cfg.pruning.compression)
        now = sum(alive.values())
        if now <= target:
            return None
        pruned = max(1, round(rate * sum(rates[n] * alive[n] for n in alive)))
        return max(target, now - pruned)


def rounds_path(total_prunable: int, target: int, rate: float) -> list[int]:
    """Kept counts of the rounds of an iterative schedule with every tensor at the same rate."""
    out, alive = [], total_prunable
    while alive > target:
        alive = max(target, alive - max(1, round(rate * alive)))
        out.append(alive)
    return out


def agp_events(begin: int, end: int, frequency: int) -> list[int]:
    """The optimizer steps at which a gradual schedule prunes: begin, begin + f, ..., end."""
    if end <= begin:
        return [end]
    events = list(range(begin, end, frequency))
    return events + [end]


def agp_sparsity(step: int, begin: int, end: int, initial: float, final: float) -> float:
    """Zhu & Gupta's cubic schedule: s_f + (s_i - s_f) (1 - (t - t0) / (t1 - t0))^3."""
    if end <= begin or step >= end:
        return final
    progress = min(max((step - begin) / (end - begin), 0.0), 1.0)
    return final + (initial - final) * (1.0 - progress) ** 3


def agp_keeps(prunable: int, final_keep: int, events: list[int], begin: int, end: int,
              initial: float) -> list[int]:
    """Kept prunable weights after each event of a gradual schedule; the last is `final_keep`."""
    final = 1.0 - final_keep / prunable
    keeps = []
    for step in events:
        if step >= end:
            keeps.append(final_keep)
            continue
        keep = math.ceil(prunable * (1.0 - agp_sparsity(step, begin, end, initial, final)))
        keeps.append(min(max(keep, final_keep), prunable if not keeps else keeps[-1]))
    return keeps


# ---- lottery tickets -------------------------------------------------------------------------------

def weights_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the model's parameters and buffers, masks left out (a rewinding point)."""
    from ..common import MASK_SUFFIX

    return {k: v.detach().clone() for k, v in model.state_dict().items()
            if not k.endswith(MASK_SUFFIX)}


def rewind(model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Set every parameter and buffer to its value in `weights`; pruned entries stay zero."""
    from ..common import MASK_SUFFIX

    state = model.state_dict()
    with torch.no_grad():
        for key, value in state.items():
            if key.endswith(MASK_SUFFIX):
                continue
            if key not in weights:
                raise PruningError(f"the rewinding point has no {key!r}")
            value.copy_(weights[key])
    apply_masks(model)


def masks_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """Qualified parameter name -> a copy of its mask."""
    return {name: mask.detach().clone() for name, _, _, mask in masked_parameters(model)}


def shuffled(masks: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Each mask with its entries permuted at random: the same count per tensor, other positions."""
    out = {}
    for name, mask in masks.items():
        flat = mask.reshape(-1)
        order = torch.randperm(flat.numel(), generator=generator).to(flat.device)
        out[name] = flat[order].reshape(mask.shape).clone()
    return out


def attach_all(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Mask `model` with `masks` (by qualified parameter name)."""
    for name, mask in masks.items():
        attach_mask(model, name, mask)
    apply_masks(model)


StepCallback = Callable[[int], None]
