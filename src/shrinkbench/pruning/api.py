"""`prune()`: score the prunable parameters, allocate an exact kept count, attach the masks."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import Tensor, nn

from ..common import MASK_SUFFIX
from ..errors import CompressionError, PruningError, UnknownNameError
from .allocation import ALLOCATIONS, Allocation, checked_rates, rated_layerwise_allocation
from .masks import _resolve, apply_masks, attach_mask, masked_parameters
from .nm import nm_keep, parse_nm
from .prunable import prunable_parameters
from .scores import Batch, ScoreContext
from .strategies import STRATEGIES, Strategy
from .structured import example_of, prune_channels


@dataclass
class PruneResult:
    """What `prune()` did: requested and achieved compression, counts, kept entries per tensor."""

    strategy: str
    compression: float
    compression_achieved: float
    total: int
    nonzero: int
    kept: dict[str, int]
    sizes: dict[str, int]
    target: str = "compression"
    structured: bool = False
    speedup: float | None = None  # structured: dense conv/linear MACs / MACs left
    channels_total: int | None = None  # structured: prunable channels
    channels_kept: int | None = None
    graph: Any = field(default=None, repr=False, compare=False)  # structured: the channel groups
    example: Any = field(default=None, repr=False, compare=False)  # structured: the traced input
    allocation: str | None = None  # unstructured: the allocation used (canonical name)

    def __str__(self) -> str:
        if self.structured:
            speedup = "not counted" if self.speedup is None else f"{self.speedup:.4g}"
            return (f"{self.strategy}: {self.target} {self.compression:g} requested; compression "
                    f"{self.compression_achieved:.4g}, speedup {speedup}, "
                    f"{self.channels_kept}/{self.channels_total} channels kept")
        return (
            f"{self.strategy}: compression {self.compression_achieved:.4g} "
            f"(requested {self.compression:g}), {self.nonzero}/{self.total} parameters kept"
        )


def parameter_counts(model: nn.Module) -> tuple[int, dict[int, int]]:
    """Total parameter count and, per masked parameter (by id), how many entries its mask keeps."""
    total = sum(p.numel() for p in model.parameters())
    kept = {
        id(module._parameters[local]): int(mask.count_nonzero())
        for _, module, local, mask in masked_parameters(model)
    }
    return total, kept


def _short(value: Any) -> str:
    """A value for a one-line message: huge integers by their digit count, long texts cut."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**60:
        return f"an integer of {math.floor(math.log10(abs(value))) + 1} digits"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def keep_count(total: int, fixed_nonzero: int, compression: Any) -> int:
    """Prunable entries to keep so that the model's nonzero count is floor(total / compression)."""
    if isinstance(compression, bool) or not isinstance(compression, numbers.Real):
        raise CompressionError(f"compression must be a number >= 1, got {_short(compression)}")
    try:
        value = float(compression)
    except OverflowError:  # an integer beyond the float range, e.g. 10**400
        value = math.inf
    if not math.isfinite(value) or value < 1:
        raise CompressionError(f"compression must be a finite number >= 1, got {_short(compression)}")
    compression = value
    target = math.floor(total / compression)
    keep = target - fixed_nonzero
    if keep < 0:
        raise CompressionError(
            f"compression {compression:g} cannot be reached: the unprunable parameters alone "
            f"({fixed_nonzero}) exceed total/compression ({target}); include more parameters "
            f"(include_classifier=True, include_bias=True, fewer ignore=) or ask for less"
        )
    return keep


def _budget(model: nn.Module, params: Mapping[str, nn.Parameter]) -> tuple[int, int, int]:
    """(all parameters, nonzero parameters outside `params`, alive entries of `params`)."""
    total, masked_kept = parameter_counts(model)
    prunable_ids = {id(p) for p in params.values()}
    fixed_nonzero = sum(
        masked_kept.get(id(p), p.numel()) for p in model.parameters() if id(p) not in prunable_ids
    )
    alive_count = sum(masked_kept.get(id(p), p.numel()) for p in params.values())
    return total, fixed_nonzero, alive_count


def _alive_masks(model: nn.Module, params: Mapping[str, nn.Parameter]) -> dict[str, Tensor | None]:
    """The current mask of each of `params` (None when it has none)."""
    owners = {name: _resolve(model, name) for name in params}
    return {name: owner._buffers.get(local + MASK_SUFFIX)
            for name, (owner, local) in owners.items()}


def _nm_pattern_keep(model: nn.Module, params: Mapping[str, nn.Parameter],
                     alive: Mapping[str, Tensor | None], pattern: str) -> int:
    """Entries an N:M `pattern` keeps of `params`; refuses what it cannot group (a transposed
    convolution keeps its input channels in dim 0, a bias has no input dimension)."""
    nm = parse_nm(pattern)
    if nm is None:
        raise PruningError(f"{_short(pattern)} is not an N:M pattern such as '2:4'")
    for name in params:
        owner, _ = _resolve(model, name)
        if getattr(owner, "transposed", False):
            raise PruningError(f"allocation {nm[0]}:{nm[1]} groups input channels along dim 1; "
                               f"{name!r} is a transposed convolution (its inputs are dim 0): "
                               "ignore= it")
    return nm_keep(params, alive, *nm)


def nm_compression(model: nn.Module, pattern: str, include_classifier: bool = False,
                   include_bias: bool = False, ignore: Iterable[str] = ()) -> float:
    """The compression that `prune(model, ..., allocation=pattern)` reaches (e.g. pattern "2:4"),
    with the same parameter selection and the current masks; ask prune() for this value."""
    params = prunable_parameters(model, include_classifier, include_bias, ignore)
    total, fixed_nonzero, _ = _budget(model, params)
    nonzero = fixed_nonzero + _nm_pattern_keep(model, params, _alive_masks(model, params), pattern)
    return total / nonzero if nonzero else math.inf


def check_nm_compression(model: nn.Module, pattern: str, compression: Any,
                         include_classifier: bool = False, include_bias: bool = False,
                         ignore: Iterable[str] = ()) -> None:
    """Raise the CompressionError that `prune(model, ..., compression, allocation=pattern)` would,
    without scoring anything (a check to run before training)."""
    params = prunable_parameters(model, include_classifier, include_bias, ignore)
    total, fixed_nonzero, alive_count = _budget(model, params)
    pattern_keep = _nm_pattern_keep(model, params, _alive_masks(model, params), pattern)
    _nm_checked_keep(keep_count(total, fixed_nonzero, compression), pattern_keep, compression,
                     pattern, total, fixed_nonzero, alive_count)


def _nm_checked_keep(keep: int, pattern_keep: int, compression: Any, pattern: str, total: int,
                     fixed_nonzero: int, alive_count: int) -> int:
    """The kept count of an N:M request: the pattern's, when the compression asks for it (to one
    element); else a one-line CompressionError giving the compression to ask for."""
    if abs(keep - pattern_keep) <= 1:
        return pattern_keep
    nonzero = fixed_nonzero + pattern_keep
    gives = total / nonzero if nonzero else math.inf
    share = 100 * pattern_keep / alive_count if alive_count else 0.0
    raise CompressionError(
        f"compression {float(compression):g} does not match allocation {pattern}: on these tensors "
        f"it keeps {share:.4g}% of {alive_count:,} prunable weights ({pattern_keep:,}), which is "
        f"compression {gives:.4f} ({gives!r}, what nm_compression(model, {pattern!r}) returns); "
        "ask for that"
    )


def _collect_batches(inputs: Any, targets: Any, batches: Iterable[Batch] | None) -> list[Batch]:
    if batches is not None and inputs is not None:
        raise PruningError("pass either inputs=/targets= or batches=, not both")
    if batches is not None:
        return [tuple(b) for b in batches]  # type: ignore[misc]
    if inputs is not None:
        return [(inputs, targets)]
    if targets is not None:
        raise PruningError("targets= was given without inputs=")
    return []


def _allocation_name(allocation: Any) -> str:
    """The canonical name of an allocation, or a PruningError naming the valid ones."""
    choices = ", ".join(ALLOCATIONS.names() + sorted(ALLOCATIONS.aliases())
                        + [f"{shape} (e.g. 2:4)" for shape in ALLOCATIONS.patterns()])
    if not isinstance(allocation, str):
        raise PruningError(f"allocation must be a name ({choices}), got {_short(allocation)}")
    try:
        return ALLOCATIONS.canonical(allocation)
    except UnknownNameError:
        raise PruningError(f"unknown allocation {allocation!r}; choose from: {choices}") from None


def _rated(params: Mapping[str, Any], layer_rates: Mapping[str, float], allocation: str,
           include_classifier: bool) -> Allocation:
    """The rated layerwise allocation, after checking that the rates fit this request."""
    if allocation != "layerwise":
        raise PruningError(f"layer_rates needs the layerwise allocation (alias uniform), not "
                           f"{allocation!r}: pass allocation='layerwise'")
    if not isinstance(layer_rates, Mapping):
        raise PruningError(f"layer_rates must map parameter names to rates, got "
                           f"{_short(layer_rates)}")
    missing = [name for name in layer_rates if name not in params]
    if missing:
        hint = "" if include_classifier else " (the classifier is pruned with include_classifier=True)"
        raise PruningError(f"layer_rates names {missing[0]!r}, which is not a pruned parameter"
                           f"{hint}; pruned: {', '.join(list(params)[:8])}"
                           f"{', ...' if len(params) > 8 else ''}")
    rates = checked_rates(layer_rates, list(params))
    return lambda scores, alive, keep: rated_layerwise_allocation(scores, alive, keep, rates)


def prune(
    model: nn.Module,
    strategy: str | Strategy,
    compression: float,
    inputs: Any = None,
    targets: Any = None,
    *,
    batches: Iterable[Batch] | None = None,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    seed: int = 0,
    include_classifier: bool = False,
    include_bias: bool = False,
    ignore: Iterable[str] = (),
    options: Mapping[str, Any] | None = None,
    target: str = "compression",
    example_input: Any = None,
    round_to: int = 1,
    allocation: str | None = None,
    layer_rates: Mapping[str, float] | None = None,
) -> PruneResult:
    """Prune `model` in place with `strategy` to exactly `compression` (total / nonzero params).

    `options` are keyword arguments of the strategy's score function (`score(params, ctx, **options)`).
    A structured (channel) strategy zeroes whole channels with masks (`structured.remove_channels`
    then builds the smaller model); its `target` is `compression`, `speedup` (MAC reduction) or
    `channels` (prunable channels / channels kept), reached to within one channel, and it needs
    `inputs=` or `batches=` to trace the model: it runs the model on the first two rows of the
    first batch, or on `example_input` when given (for inputs whose first dimension is not the
    batch, e.g. sequence-first attention). `round_to` keeps a multiple of it in every channel
    group (faster kernels; structured strategies only).

    `allocation` overrides the strategy's own (`global`, `layerwise` alias `uniform`, `erk`,
    `per_row`, or an N:M pattern such as `"2:4"`; unstructured strategies only). N:M fixes the
    kept count: ask for the compression `nm_compression(model, "2:4", ...)` returns (to one
    element); another value is refused in one line that gives it. `layer_rates` (layerwise only)
    gives relative pruning rates by parameter name: each tensor loses a share of its alive entries
    proportional to its rate (1 when not named), e.g. `{"fc3.weight": 0.5}` prunes the classifier
    at half the rate of the rest.
    """
    strat = strategy if isinstance(strategy, Strategy) else STRATEGIES.get(strategy)
    options = dict(options or {})
    valid = strat.option_names()
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise PruningError(f"strategy {strat.name!r} has no option {unknown[0]!r}; valid options: "
                           f"{', '.join(valid) or 'none'}")
    if strat.structured:
        if allocation is not None or layer_rates is not None:
            what = "allocation" if allocation is not None else "layer_rates"
            raise PruningError(f"{what} applies to single weights; {strat.name!r} removes whole "
                               "channels (its allocation is part of the strategy)")
        return _prune_structured(model, strat, compression, _collect_batches(inputs, targets, batches),
                                 loss_fn, seed, ignore, options, target, example_input, round_to)
    if round_to != 1:
        raise PruningError(f"round_to={round_to!r} needs a structured (channel) strategy; "
                           f"{strat.name!r} prunes single weights")
    if target != "compression":
        raise PruningError(f"target {target!r} needs a structured (channel) strategy; "
                           f"{strat.name!r} prunes single weights to a compression")
    params = prunable_parameters(model, include_classifier, include_bias, ignore)
    if not params:
        raise PruningError(
            "the model has no prunable parameters (Conv/Linear weights other than the classifier);"
            " pass include_classifier=True or include_bias=True"
        )
    allocation_name = strat.allocation if allocation is None else _allocation_name(allocation)
    allocate: Allocation = ALLOCATIONS.get(allocation_name)
    if layer_rates is not None:
        allocate = _rated(params, layer_rates, allocation_name, include_classifier)
    owners = {name: _resolve(model, name) for name in params}
    total, fixed_nonzero, alive_count = _budget(model, params)
    alive = _alive_masks(model, params)
    pattern_keep = None
    if parse_nm(allocation_name) is not None:  # the shapes first: they decide what can be asked
        pattern_keep = _nm_pattern_keep(model, params, alive, allocation_name)
    keep = keep_count(total, fixed_nonzero, compression)
    if pattern_keep is not None:
        keep = _nm_checked_keep(keep, pattern_keep, compression, allocation_name, total,
                                fixed_nonzero, alive_count)
    if keep > alive_count:
        current = total / max(fixed_nonzero + alive_count, 1)
        raise CompressionError(
            f"compression {compression:g} is below the model's current compression "
            f"{current:.4g}; masks never grow back, so ask for at least that"
        )
    ctx = ScoreContext(
        model=model,
        strategy=strat.name,
        batches=_collect_batches(inputs, targets, batches),
        loss_fn=loss_fn,
        seed=seed,
        owners=dict(owners),
        keep=keep,
        alive=dict(alive),
        allocate=lambda scores, k: allocate(scores, alive, k),
        allocation=allocation_name,
    )
    scores = strat.score(params, ctx, **options)
    for name, p in params.items():
        score = scores.get(name) if isinstance(scores, dict) else None
        if not isinstance(score, Tensor) or tuple(score.shape) != tuple(p.shape):
            got = "nothing" if score is None else f"shape {tuple(getattr(score, 'shape', ()))}"
            raise PruningError(
                f"strategy {strat.name!r} gave {got} as the score of {name!r}, "
                f"expected a tensor of shape {tuple(p.shape)}"
            )
    keep_masks = allocate(scores, alive, keep)
    if strat.updates_weights:
        _check_chosen(strat.name, allocation_name, scores, keep_masks)
    kept = {}
    for name, (owner, local) in owners.items():
        attach_mask(owner, local, keep_masks[name], check=False)
        kept[name] = int(keep_masks[name].count_nonzero())
    apply_masks(model)  # and a load through `model` re-zeroes tied copies of masked parameters
    nonzero = fixed_nonzero + sum(kept.values())
    return PruneResult(
        strategy=strat.name,
        compression=float(compression),
        compression_achieved=total / nonzero if nonzero else math.inf,
        total=total,
        nonzero=nonzero,
        kept=kept,
        sizes={name: p.numel() for name, p in params.items()},
        allocation=allocation_name,
    )


def _check_chosen(strategy: str, allocation: str, scores: Mapping[str, Tensor],
                  masks: Mapping[str, Tensor]) -> None:
    """A strategy that rewrote the weights scored its choice 1 (kept) and 0 (pruned): the
    allocation must keep exactly that, or the rewritten weights would not match the masks."""
    for name, mask in masks.items():
        chosen = scores[name].to(mask.device) > 0
        if not bool(torch.equal(chosen, mask.to(torch.bool))):
            raise PruningError(f"strategy {strategy!r} rewrote the weights for a mask that "
                               f"allocation {allocation!r} does not reproduce on {name!r} (its "
                               "scores must be 1 for kept, 0 for pruned, in the allocation's "
                               "counts); the model's weights have changed")


def _prune_structured(model: nn.Module, strat: Strategy, amount: Any, batches: list[Batch],
                      loss_fn: Any, seed: int, ignore: Any, options: dict[str, Any],
                      target: str, example_input: Any = None, round_to: int = 1) -> PruneResult:
    if not batches:
        raise PruningError(f"structured strategy {strat.name!r} needs inputs= (or batches=) to "
                           "trace the model")
    ignore = (ignore,) if isinstance(ignore, str) else tuple(ignore)
    ctx = ScoreContext(model=model, strategy=strat.name, batches=batches, loss_fn=loss_fn, seed=seed)
    keep_count(1, 0, amount)  # the same one-line refusal of non-numbers, NaN, < 1
    example = example_of(batches[0][0]) if example_input is None else example_input
    _, cost, graph = prune_channels(model, strat.score, strat.allocation, target, float(amount),
                                    example, ctx, options, ignore, round_to)
    kept = {name: int(mask.count_nonzero()) for name, _, _, mask in masked_parameters(model)}
    sizes = {name: mask.numel() for name, _, _, mask in masked_parameters(model)}
    return PruneResult(
        strategy=strat.name, compression=float(amount),
        compression_achieved=cost.compression, total=cost.params_total, nonzero=cost.params_left,
        kept=kept, sizes=sizes, target=target, structured=True,
        speedup=None if graph.uncounted else cost.speedup,  # not guessed when an op is uncounted
        channels_total=cost.channels_total, channels_kept=cost.channels_left, graph=graph,
        example=example)
