"""Binary masks kept as buffers beside parameters, held through optimizer steps and loads.

A mask for parameter `weight` of module `m` is the persistent buffer `m.weight_mask` (1 keep,
0 pruned). Masks are found from the module, never from the Parameter object, so a Parameter that
PyTorch swaps or re-creates (`.double()` under `torch.__future__` conversion settings) stays masked.

Nothing global is installed: an optimizer keeps masks exact only when asked, with
`hold(optimizer, model)` (a per-optimizer step post-hook, also a context manager), which the
library's own training loop uses. Loading a state dict re-zeroes pruned entries through a
load-state-dict post-hook on each masked module and on the model `prune()` was given (so a tied
parameter loaded again under another module's key is re-zeroed too). Pruned entries are set to
exactly +0.0 (the parameter's bits, read as integers, times the kept mask), so a NaN or
inf there does not survive as `0 * nan`.
"""

from __future__ import annotations

import weakref
from typing import Any, Iterator, Mapping

import torch
from torch import Tensor, nn
from torch.utils.weak import WeakIdKeyDictionary

from ..common import MASK_SUFFIX
from ..errors import PruningError

SUFFIX = MASK_SUFFIX

# Bookkeeping only (no hook, no behaviour): the modules that hold masks, so that `hold(optimizer)`
# without a model can find them, and a counter that changes whenever masks are added or removed.
_MASKED: "weakref.WeakSet[nn.Module]" = weakref.WeakSet()
_GENERATION = [0]
# The kept positions (mask != 0) of each mask tensor, by the mask's version counter.
_KEPT: WeakIdKeyDictionary = WeakIdKeyDictionary()


class _AfterLoad:
    """Load-state-dict post-hook: re-zero the pruned entries of the module it is called on and of
    every module below it (stateless: copies and pickles as is)."""

    def __call__(self, module: nn.Module, incompatible_keys: Any) -> None:
        for sub in module.modules():
            if sub._buffers:
                _zero_module(sub)


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


# Integer types of the same width as each floating type: pruned entries are cleared by multiplying
# the parameter's bits, read as integers, by the kept mask (1 kept, 0 pruned). That gives +0.0
# whatever was there, NaN and inf included, which a float multiply (0 * nan) would not.
_BITS = {
    torch.float32: torch.int32, torch.float64: torch.int64,
    torch.float16: torch.int16, torch.bfloat16: torch.int16,
}


def _kept(mask: Tensor) -> Tensor:
    """The kept positions (bool) of `mask`, computed once per version of the mask: one byte per
    entry, so clearing reads a quarter of what a float or int32 mask would."""
    hit = _KEPT.get(mask)
    if hit is None or hit[0] != mask._version:
        hit = (mask._version, mask != 0)
        _KEPT[mask] = hit
    return hit[1]


def _bits(param: Tensor) -> Tensor | None:
    """`param`'s storage seen as integers of its width (no grad), or None for other types and for
    tensor subclasses that cannot be viewed so."""
    bits = _BITS.get(param.dtype)
    if bits is None:
        return None
    try:
        return param.detach().view(bits)
    except (RuntimeError, TypeError, NotImplementedError):
        return None


def _zero(param: Tensor, kept: Tensor, bits: Tensor | None) -> None:
    """Pruned entries of `param` set to exactly +0.0 (`bits` is `_bits(param)`). masked_fill_ is
    exact too but several times slower on CPU; the integer multiply costs what a float one does."""
    if bits is not None:
        bits.mul_(kept)
    else:
        param.masked_fill_(~kept, 0)


def _zero_module(module: nn.Module) -> int:
    """Set the pruned entries of `module`'s own masked parameters to exactly zero; how many tensors."""
    keys = _mask_keys(module)
    with torch.no_grad():
        for key in keys:
            param = module._parameters[key[: -len(SUFFIX)]]
            mask = module._buffers[key]
            if mask.device != param.device or mask.shape != param.shape:
                raise PruningError(f"mask {key!r} of {type(module).__name__} ({tuple(mask.shape)}, "
                                   f"{mask.device}) no longer fits its parameter "
                                   f"({tuple(param.shape)}, {param.device})")
            _zero(param, _kept(mask), _bits(param))
    return len(keys)


def _install_hook(module: nn.Module) -> None:
    hooks = module._load_state_dict_post_hooks
    if not any(isinstance(h, _AfterLoad) for h in hooks.values()):
        module.register_load_state_dict_post_hook(_AfterLoad())


def _uninstall_hook(module: nn.Module) -> None:
    hooks = module._load_state_dict_post_hooks
    for key in [k for k, h in hooks.items() if isinstance(h, _AfterLoad)]:
        del hooks[key]


def _changed() -> None:
    _GENERATION[0] += 1


class _Held:
    """One masked parameter that a Hold clears after each step. The mask and the Parameter are
    looked up on the module at every step, so a Parameter that PyTorch replaced (or whose storage
    was swapped through `.data`) is masked all the same; what they derive (the kept positions,
    the parameter's bits) is remade only when they change."""

    __slots__ = ("module", "param_name", "mask_name", "mask", "version", "kept", "param", "ptr",
                 "dtype", "bits")

    def __init__(self, module: nn.Module, mask_name: str) -> None:
        self.module = weakref.ref(module)
        self.param_name, self.mask_name = mask_name[: -len(SUFFIX)], mask_name
        self.mask = self.param = self.kept = self.bits = self.dtype = None
        self.version, self.ptr = -1, 0

    def zero(self) -> None:
        module = self.module()
        mask = None if module is None else module._buffers.get(self.mask_name)
        if mask is None:
            return
        param = module._parameters[self.param_name]
        if mask is not self.mask or mask._version != self.version:
            self.mask, self.version, self.kept = mask, mask._version, _kept(mask)
        if param is not self.param or param.data_ptr() != self.ptr or param.dtype != self.dtype:
            self.param, self.ptr, self.dtype, self.bits = (param, param.data_ptr(), param.dtype,
                                                           _bits(param))
        _zero(param, self.kept, self.bits)


class Hold:
    """Keeps the masks exact after every step of one optimizer (see `hold`)."""

    def __init__(self, optimizer: torch.optim.Optimizer, model: nn.Module | None = None) -> None:
        if isinstance(optimizer, torch.optim.LBFGS):
            raise PruningError("masks cannot be held by LBFGS: its closure runs on the weights of "
                               "its line search, between steps, where pruned entries are not zero; "
                               "use SGD, Adam or AdamW")
        self._optimizer = weakref.ref(optimizer)
        self._model = weakref.ref(model) if model is not None else None
        self._generation = -1
        self._entries: list[_Held] = []
        self._handle = optimizer.register_step_post_hook(self._after_step)

    def _refresh(self) -> None:
        if self._model is not None:
            model = self._model()
            found = [m for m in model.modules() if _mask_keys(m)] if model is not None else []
        else:
            optimizer = self._optimizer()
            held = {id(p) for g in optimizer.param_groups for p in g["params"]} if optimizer else set()
            found = [m for m in list(_MASKED)
                     if any(id(m._parameters.get(k[: -len(SUFFIX)])) in held for k in _mask_keys(m))]
        for module in found:
            _zero_module(module)  # checks that every mask still fits its parameter
        self._entries = [_Held(m, key) for m in found for key in _mask_keys(m)]
        self._generation = _GENERATION[0]

    @torch.compiler.disable
    def _after_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self._generation != _GENERATION[0]:
            self._refresh()
        with torch.no_grad():
            for entry in self._entries:
                entry.zero()

    def apply(self) -> None:
        """Zero the pruned entries now (as after a step)."""
        self._after_step(self._optimizer(), (), {})

    def remove(self) -> None:
        """Stop holding the masks."""
        self._handle.remove()

    def __enter__(self) -> "Hold":
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def hold(optimizer: torch.optim.Optimizer, model: nn.Module | None = None) -> Hold:
    """Keep pruned entries exactly zero after every `optimizer.step()`; returns a handle (`remove()`)
    that is also a context manager.

    With `model`, the masks are read from its modules at each step, so parameters that PyTorch
    replaced stay masked; without it, the masked modules whose parameters this optimizer steps.
    """
    handle = Hold(optimizer, model)
    handle.apply()
    return handle


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
    _install_hook(owner)
    if owner is not module:
        _install_hook(module)  # a load through the root re-zeroes tied copies loaded after the owner
    _MASKED.add(owner)
    _changed()
    _zero_module(owner)
    return buffer


def masked_parameters(model: nn.Module) -> Iterator[tuple[str, nn.Module, str, Tensor]]:
    """Yield `(qualified_name, module, param_name, mask)` for every masked parameter."""
    for prefix, module in model.named_modules():
        for key in _mask_keys(module):
            local = key[: -len(SUFFIX)]
            yield (f"{prefix}.{local}" if prefix else local), module, local, module._buffers[key]


def apply_masks(model: nn.Module) -> int:
    """Set every pruned entry to exactly zero now; returns how many tensors are masked."""
    count = 0
    for module in model.modules():
        if _mask_keys(module):
            count += _zero_module(module)
            _install_hook(module)
            _MASKED.add(module)
    _install_hook(model)
    _changed()
    return count


def remove_masks(model: nn.Module) -> nn.Module:
    """Bake the masks in: pruned entries stay zero, mask buffers and hooks go; returns `model`."""
    for _, module, local, mask in list(masked_parameters(model)):
        _zero_module(module)
        del module._buffers[local + SUFFIX]
    for module in model.modules():
        if not _mask_keys(module):
            _uninstall_hook(module)
            _MASKED.discard(module)
    _changed()
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
    _install_hook(model)
    return model.load_state_dict(state, strict=strict)
