"""Binary masks kept as buffers beside parameters, re-applied after every optimizer step and load.

A mask for parameter `weight` of module `m` is the persistent buffer `m.weight_mask`. The masked
Parameter carries a small link back to its module (`_Link`), which a global optimizer step
post-hook follows to re-zero exactly the parameters an optimizer stepped: one in-place multiply
per masked tensor, nothing per forward. Parameter.__deepcopy__ drops attributes, so the module's
load-state-dict post-hook (`_AfterLoad`) relinks the copied parameters when it is deep-copied.
"""

from __future__ import annotations

import copy
import weakref
from typing import Any, Iterator, Mapping

import torch
from torch import Tensor, nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from ..common import MASK_SUFFIX
from ..errors import PruningError

SUFFIX = MASK_SUFFIX
_LINK = "_shrinkbench_mask"


class _Link:
    """Parameter -> (owning module, parameter name, mask name); weak, pickled strongly."""

    __slots__ = ("ref", "name", "key")

    def __init__(self, module: nn.Module | None, name: str) -> None:
        self.ref = weakref.ref(module) if module is not None else (lambda: None)
        self.name = name
        self.key = name + SUFFIX

    def __reduce__(self) -> tuple:
        return (_Link, (self.ref(), self.name))


class _AfterLoad:
    """Load-state-dict post-hook re-zeroing pruned entries; relinks its module's copies."""

    __slots__ = ("ref",)

    def __init__(self, module: nn.Module | None) -> None:
        self.ref = weakref.ref(module) if module is not None else (lambda: None)

    def __call__(self, module: nn.Module, incompatible_keys: Any) -> None:
        _apply_module(module)

    def __deepcopy__(self, memo: dict) -> _AfterLoad:
        old = self.ref()
        new = memo.get(id(old)) if old is not None else None
        if new is None:
            return _AfterLoad(None)
        for key in _mask_keys(old):
            local = key[: -len(SUFFIX)]
            # Copy through the memo: the copy of the module's _parameters will reuse this object.
            param = copy.deepcopy(old._parameters[local], memo)
            param.__dict__[_LINK] = _Link(new, local)
        return _AfterLoad(new)

    def __reduce__(self) -> tuple:
        return (_AfterLoad, (self.ref(),))


def _mask_keys(module: nn.Module) -> list[str]:
    """Names of the mask buffers of `module` whose parameter exists."""
    return [
        key
        for key, mask in module._buffers.items()
        if mask is not None
        and key.endswith(SUFFIX)
        and isinstance(module._parameters.get(key[: -len(SUFFIX)]), nn.Parameter)
    ]


def _resolve(module: nn.Module, name: str) -> tuple[nn.Module, str]:
    """The module directly owning the (possibly dotted) parameter `name`, and its local name."""
    prefix, _, local = name.rpartition(".")
    if prefix:
        try:
            module = module.get_submodule(prefix)
        except AttributeError:
            raise PruningError(f"no submodule {prefix!r} for parameter {name!r}") from None
    if not isinstance(module._parameters.get(local), nn.Parameter):
        choices = ", ".join(k for k, v in module._parameters.items() if v is not None) or "none"
        raise PruningError(
            f"{type(module).__name__} has no parameter {local!r}; its parameters: {choices}"
        )
    return module, local


def get_mask(module: nn.Module, name: str) -> Tensor | None:
    """The mask buffer of parameter `name` of `module`, or None when it has none."""
    owner, local = _resolve(module, name)
    return owner._buffers.get(local + SUFFIX)


def _apply_module(module: nn.Module) -> None:
    """Relink and re-zero every masked parameter of `module` (not its children)."""
    with torch.no_grad():
        for key in _mask_keys(module):
            local = key[: -len(SUFFIX)]
            param = module._parameters[local]
            param.__dict__[_LINK] = _Link(module, local)
            param.mul_(module._buffers[key])


def _after_step(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    """Global optimizer post-hook: re-apply the masks of the parameters this optimizer stepped."""
    with torch.no_grad():
        for group in optimizer.param_groups:
            for param in group["params"]:
                link = param.__dict__.get(_LINK)
                if link is not None:
                    module = link.ref()
                    # The parameter may have been replaced in its module since it was masked.
                    if module is not None and module._parameters.get(link.name) is param:
                        mask = module._buffers.get(link.key)
                        if mask is not None:
                            param.mul_(mask)


_STEP_HOOK = register_optimizer_step_post_hook(_after_step)


def _install_hook(module: nn.Module) -> None:
    hooks = module._load_state_dict_post_hooks
    if not any(isinstance(h, _AfterLoad) for h in hooks.values()):
        module.register_load_state_dict_post_hook(_AfterLoad(module))


def _uninstall_hook(module: nn.Module) -> None:
    hooks = module._load_state_dict_post_hooks
    for key in [k for k, h in hooks.items() if isinstance(h, _AfterLoad)]:
        del hooks[key]


def _as_mask(param: Tensor, mask: Any, name: str, check: bool) -> Tensor:
    if not isinstance(mask, Tensor):
        raise PruningError(f"mask for {name!r} must be a tensor, got {type(mask).__name__}")
    if tuple(mask.shape) != tuple(param.shape):
        raise PruningError(
            f"mask for {name!r} has shape {tuple(mask.shape)}, the parameter {tuple(param.shape)}"
        )
    if check and mask.dtype != torch.bool and bool(((mask != 0) & (mask != 1)).any()):
        raise PruningError(f"mask for {name!r} holds values other than 0 and 1")
    return mask.detach().to(device=param.device, dtype=param.dtype)


def attach_mask(module: nn.Module, name: str, mask: Tensor, *, check: bool = True) -> Tensor:
    """Mask parameter `name` of `module` (AND with an existing mask); zero its pruned entries."""
    owner, local = _resolve(module, name)
    param = owner._parameters[local]
    new = _as_mask(param, mask, name, check)
    key = local + SUFFIX
    buffer = owner._buffers.get(key)
    if buffer is not None:
        buffer.mul_(new)
    else:
        if hasattr(owner, key):
            raise PruningError(
                f"{type(owner).__name__} already has an attribute {key!r}; cannot mask {name!r}"
            )
        buffer = new.clone() if new.data_ptr() == mask.data_ptr() else new
        owner.register_buffer(key, buffer, persistent=True)
    with torch.no_grad():
        param.mul_(buffer)
    param.__dict__[_LINK] = _Link(owner, local)
    _install_hook(owner)
    return buffer


def masked_parameters(model: nn.Module) -> Iterator[tuple[str, nn.Module, str, Tensor]]:
    """Yield `(qualified_name, module, param_name, mask)` for every masked parameter."""
    for prefix, module in model.named_modules():
        for key in _mask_keys(module):
            local = key[: -len(SUFFIX)]
            yield (f"{prefix}.{local}" if prefix else local), module, local, module._buffers[key]


def apply_masks(model: nn.Module) -> int:
    """Relink and re-zero every masked parameter; returns how many tensors are masked."""
    count = 0
    for module in model.modules():
        keys = _mask_keys(module)
        if keys:
            _apply_module(module)
            _install_hook(module)
            count += len(keys)
    return count


def remove_masks(model: nn.Module) -> nn.Module:
    """Bake the masks in: pruned entries stay zero, mask buffers and hooks go; returns `model`."""
    with torch.no_grad():
        for _, module, local, mask in list(masked_parameters(model)):
            param = module._parameters[local]
            param.mul_(mask)
            param.__dict__.pop(_LINK, None)
            del module._buffers[local + SUFFIX]
    for module in model.modules():
        if not _mask_keys(module):
            _uninstall_hook(module)
    return model


def densities(model: nn.Module) -> dict[str, float]:
    """Qualified name -> kept fraction, for every masked parameter (unmasked ones are dense)."""
    return {
        name: int(mask.count_nonzero()) / max(mask.numel(), 1)
        for name, _, _, mask in masked_parameters(model)
    }


def load_state_dict(model: nn.Module, state: Mapping[str, Any], strict: bool = True) -> Any:
    """Attach the masks found in `state` to `model`, then load `state` into it (masks included)."""
    for key, value in state.items():
        if not key.endswith(SUFFIX) or not isinstance(value, Tensor):
            continue
        try:
            owner, local = _resolve(model, key[: -len(SUFFIX)])
        except PruningError:
            continue  # not the mask of one of our parameters: torch's own key checks report it
        if owner._buffers.get(local + SUFFIX) is None:
            attach_mask(owner, local, value)
    return model.load_state_dict(state, strict=strict)
