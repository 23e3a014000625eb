"""Which parameters a strategy may prune: Conv/Linear weights except the classifier, by default."""

from __future__ import annotations

import fnmatch
from typing import Iterable

from torch import nn
from torch.nn.modules.conv import _ConvNd
from torch.nn.parameter import UninitializedParameter

from ..errors import PruningError

PRUNABLE_MODULES: tuple[type[nn.Module], ...] = (nn.Linear, _ConvNd)
CLASSIFIER_ATTR = "shrinkbench_classifier"


def classifier_name(model: nn.Module) -> str | None:
    """Qualified name of the final classifier: `shrinkbench_classifier`, else the last Linear."""
    named = getattr(model, CLASSIFIER_ATTR, None)
    if named is not None:
        try:
            model.get_submodule(named)
        except AttributeError:
            raise PruningError(
                f"model attribute {CLASSIFIER_ATTR}={named!r} names no submodule of the model"
            ) from None
        return named
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    return last


def _ignored(name: str, patterns: list[str]) -> bool:
    """Whether parameter `name` or a module enclosing it matches one of the ignore patterns."""
    parts = name.split(".")
    prefixes = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(fnmatch.fnmatchcase(p, pat) for pat in patterns for p in prefixes)


def _check_patterns(model: nn.Module, patterns: list[str]) -> None:
    names = [n for n, _ in model.named_modules() if n] + [n for n, _ in model.named_parameters()]
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            raise PruningError(
                f"ignore entry {pattern!r} matches no module or parameter name of the model"
            )


def prunable_parameters(
    model: nn.Module,
    include_classifier: bool = False,
    include_bias: bool = False,
    ignore: Iterable[str] = (),
) -> dict[str, nn.Parameter]:
    """Qualified name -> Parameter of the prunable tensors of `model`, in module order."""
    if isinstance(ignore, str):
        ignore = [ignore]
    patterns = list(ignore)
    _check_patterns(model, patterns)
    classifier = None if include_classifier else classifier_name(model)
    kinds = ("weight", "bias") if include_bias else ("weight",)
    seen: set[int] = set()
    params: dict[str, nn.Parameter] = {}
    for prefix, module in model.named_modules():
        if not isinstance(module, PRUNABLE_MODULES) or prefix == classifier:
            continue
        for kind in kinds:
            param = module._parameters.get(kind)
            if param is None or id(param) in seen:
                continue
            name = f"{prefix}.{kind}" if prefix else kind
            if _ignored(name, patterns):
                continue
            if isinstance(param, UninitializedParameter):
                raise PruningError(
                    f"parameter {name!r} is not initialized yet; run one forward pass first"
                )
            seen.add(id(param))
            params[name] = param
    return params
