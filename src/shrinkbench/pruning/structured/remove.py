"""Physical removal: a smaller dense model with the same interface, and its save/load format.

Removal rebuilds each affected Conv/Linear/BatchNorm in place of a deep copy (attributes resized,
tensors indexed), so subclasses, hooks and every other module stay as they were. The slim model
is checked against the masked model on the example input before it is returned. It is saved as a
plain dict (weights_only=True loadable): the state dict plus an architecture description, the new
sizes of each rebuilt module, applied to a fresh instance of the original model when loading.
"""

from __future__ import annotations

import copy
import io
import math
import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from ...common import MASK_SUFFIX
from ...errors import CheckpointError, PruningError
from ..masks import _resolve, get_mask
from .attention import PrunedMultiheadAttention
from .graph import DependencyGraph, dependency_graph, training_trial, twice_if_single

SLIM_FORMAT = "shrinkbench-slim/1"
# The attributes that describe a rebuilt module's size, per module kind.
_SIZE_ATTRS: dict[type, tuple[str, ...]] = {
    _ConvNd: ("in_channels", "out_channels", "groups"),
    nn.Linear: ("in_features", "out_features"),
    _BatchNorm: ("num_features",),
}


def _size_attrs(module: nn.Module) -> tuple[str, ...] | None:
    for kind, attrs in _SIZE_ATTRS.items():
        if isinstance(module, kind):
            return attrs
    return None


def dead_classes(model: nn.Module, graph: DependencyGraph) -> list[int]:
    """Classes whose every producing slice (dim 0 of a weight, bias or BN scale/shift) is exactly zero;
    every group keeps at least one channel."""
    params = dict(model.named_parameters(remove_duplicate=False))
    dead = []
    for group in graph.groups:
        found = []
        for cls in group.classes:
            zero = True
            producing = False
            for param, dim, index in graph.classes[cls]:
                if dim != 0:
                    continue
                producing = True
                if bool(params[param].detach().index_select(0, index.to(params[param].device)).any()):
                    zero = False
                    break
            if producing and zero:
                found.append(cls)
        if len(found) == group.size:
            found = found[:-1]  # a layer with no channel left would have no output at all
        dead.extend(found)
    return dead


def _kept_indices(graph: DependencyGraph, removed: list[int]) -> dict[tuple[str, int], Tensor]:
    """(parameter, dim) -> indices kept along that dim, for the dims that lose some."""
    gone: dict[tuple[str, int], list[Tensor]] = {}
    for cls in removed:
        for param, dim, index in graph.classes[cls]:
            gone.setdefault((param, dim), []).append(index)
    kept = {}
    for (param, dim), parts in gone.items():
        size = graph.param_shapes[param][dim]
        keep = torch.ones(size, dtype=torch.bool)
        keep[torch.cat(parts)] = False
        kept[(param, dim)] = keep.nonzero().flatten()
    return kept


def _rebuild(module: nn.Module, name: str, kept: dict[tuple[str, int], Tensor],
             done: dict[int, nn.Parameter]) -> dict[str, int]:
    """Resize `module` (a copy) in place; returns its new size attributes."""
    prefix = f"{name}." if name else ""
    for local in list(module._parameters):
        param = module._parameters[local]
        if param is None:
            continue
        qual = prefix + local
        dims = {d: idx for (p, d), idx in kept.items() if p == qual}
        if not dims:
            continue
        if id(param) in done:
            module._parameters[local] = done[id(param)]
            continue
        value = param.detach()
        mask = module._buffers.get(local + MASK_SUFFIX)
        for d, idx in dims.items():
            value = value.index_select(d, idx.to(value.device))
            if mask is not None:
                mask = mask.index_select(d, idx.to(mask.device))
        new = nn.Parameter(value.clone(), requires_grad=param.requires_grad)
        done[id(param)] = new
        module._parameters[local] = new
        if mask is not None:
            if bool(mask.all()):
                del module._buffers[local + MASK_SUFFIX]
            else:
                module._buffers[local + MASK_SUFFIX] = mask.clone()
    if isinstance(module, _BatchNorm):
        dims = kept.get((prefix + "weight", 0))
        if dims is not None:
            for buf in ("running_mean", "running_var"):
                if module._buffers.get(buf) is not None:
                    module._buffers[buf] = module._buffers[buf].index_select(0, dims).clone()
            module.num_features = len(dims)
        return {"num_features": module.num_features}
    weight = module._parameters.get("weight")
    if isinstance(module, _ConvNd):
        depthwise = module.groups > 1 and module.groups == module.in_channels == module.out_channels
        module.out_channels = int(weight.shape[0])
        if depthwise:
            module.in_channels = module.groups = module.out_channels
        else:
            module.in_channels = int(weight.shape[1]) * module.groups
        return {"in_channels": module.in_channels, "out_channels": module.out_channels,
                "groups": module.groups}
    if isinstance(module, nn.Linear):
        module.out_features, module.in_features = int(weight.shape[0]), int(weight.shape[1])
        return {"in_features": module.in_features, "out_features": module.out_features}
    raise PruningError(f"structured removal cannot rebuild {name!r} ({type(module).__name__})")


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def _rebuild_attention(slim: nn.Module, name: str, mha: nn.MultiheadAttention,
                       kept: dict[tuple[str, int], Tensor]) -> dict[str, Any]:
    """Replace an attention module that lost heads by one with fewer heads, same names."""
    rows = kept.get((f"{name}.in_proj_weight", 0))
    if rows is None:
        raise PruningError(f"structured removal: attention module {name!r} lost channels other "
                           "than whole heads")
    heads = rows.numel() // (3 * mha.head_dim)
    new = PrunedMultiheadAttention.like(mha, heads)
    cols = kept.get((f"{name}.out_proj.weight", 1), torch.arange(mha.embed_dim))
    with torch.no_grad():
        new.in_proj_weight.copy_(mha.in_proj_weight.index_select(0, rows))
        if new.in_proj_bias is not None:
            new.in_proj_bias.copy_(mha.in_proj_bias.index_select(0, rows))
        new.out_proj.weight.copy_(mha.out_proj.weight.index_select(1, cols))
        if new.out_proj.bias is not None:
            new.out_proj.bias.copy_(mha.out_proj.bias)
    new.train(mha.training)
    _set_module(slim, name, new)
    return {"type": "MultiheadAttention", "num_heads": heads}


def _outputs(value: Any) -> list[Tensor]:
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _outputs(v)]
    if isinstance(value, Mapping):
        return [t for v in value.values() for t in _outputs(v)]
    return []


def check_same_outputs(reference: nn.Module, slim: nn.Module, example_input: Any,
                       what: str = "the slim model") -> None:
    """Refuse when `slim` does not compute what `reference` does on the example (eval mode)."""
    inputs = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
    modes = reference.training, slim.training
    reference.eval()
    slim.eval()
    try:
        with torch.no_grad():
            want = _outputs(reference(*inputs))
            try:
                got = _outputs(slim(*inputs))
            except Exception as exc:  # a size the tracer could not see, e.g. in a literal
                detail = " ".join(str(exc).split())[:160]
                raise PruningError(f"{what} cannot run ({detail}); the model's forward depends on "
                                   "a channel count that tracing cannot see") from None
    finally:
        reference.train(modes[0])
        slim.train(modes[1])
    for a, b in zip(want, got):
        scale = float(a.detach().abs().max()) if a.numel() else 0.0
        if a.shape != b.shape or not torch.allclose(a.float(), b.float(), rtol=1e-4,
                                                    atol=1e-5 * max(scale, 1.0)):
            diff = float((a.float() - b.float()).abs().max()) if a.shape == b.shape else float("nan")
            raise PruningError(f"{what} does not compute what the pruned model computes "
                               f"(shapes {tuple(a.shape)} vs {tuple(b.shape)}, largest difference "
                               f"{diff:.3g}); the model's forward depends on a channel count that "
                               "tracing cannot see")


def remove_channels(model: nn.Module, example_input: Any, *, graph: DependencyGraph | None = None,
                    check: bool = True) -> nn.Module:
    """A smaller copy of `model` without its dead channels (all producing weights exactly zero).

    The copy has the same inputs and outputs; on the example input it computes what `model`
    computes (checked unless `check=False`). Masks left all-ones by the removal are dropped.
    """
    graph = graph or dependency_graph(model, example_input)
    removed = dead_classes(model, graph)
    slim = copy.deepcopy(model)
    kept = _kept_indices(graph, removed)
    touched = sorted({p.rpartition(".")[0] for p, _ in kept})
    done: dict[int, nn.Parameter] = {}
    sizes = {}
    for name in touched:
        module = slim.get_submodule(name) if name else slim
        if isinstance(module, nn.MultiheadAttention) and not isinstance(module, PrunedMultiheadAttention):
            sizes[name] = _rebuild_attention(slim, name, module, kept)
            continue
        if name.endswith(".out_proj") and isinstance(slim.get_submodule(name.rpartition(".")[0]),
                                                     (nn.MultiheadAttention, PrunedMultiheadAttention)):
            continue  # rebuilt with its attention module
        sizes[name] = {"type": type(module).__name__, **_rebuild(module, name, kept, done)}
    slim._shrinkbench_architecture = sizes  # type: ignore[attr-defined]
    if check:
        check_same_outputs(model, slim, example_input)
        check_trains(slim, example_input)
    return slim


def check_trains(slim: nn.Module, example_input: Any) -> None:
    """Refuse a slim model that cannot run in training mode (a backstop: the model was traced in
    training mode too). Mode, buffers and the global random state are left as they were."""
    inputs = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
    try:
        with training_trial(slim):
            slim(*twice_if_single(tuple(inputs)))
    except Exception as exc:
        detail = " ".join(str(exc).split())[:160]
        raise PruningError(f"the slim model fails in training mode ({detail}): its training "
                           "forward uses removed channels in a way tracing could not see; pin "
                           "those channels with ignore=") from None


def architecture(model: nn.Module) -> dict[str, dict[str, Any]]:
    """The size description of a slim model's rebuilt modules ({} for a model never slimmed)."""
    return dict(getattr(model, "_shrinkbench_architecture", {}))


def apply_architecture(model: nn.Module, arch: Mapping[str, Any],
                       state: Mapping[str, Tensor] | None = None) -> nn.Module:
    """Resize the modules of a fresh `model` as `arch` describes (in place), ready for the slim
    state dict; tensor shapes come from `state` when given, else from the sizes."""
    if not isinstance(arch, Mapping):
        raise CheckpointError(f"slim architecture: expected a mapping of module names, got "
                              f"{type(arch).__name__}")
    for name, spec in arch.items():
        try:
            module = model.get_submodule(str(name)) if name != "" else model
        except AttributeError:
            raise CheckpointError(f"slim architecture names module {name!r}, which the model "
                                  "does not have") from None
        if isinstance(module, nn.MultiheadAttention) and isinstance(spec, Mapping) and \
                spec.get("type") == "MultiheadAttention":
            heads = spec.get("num_heads")
            if not isinstance(heads, int) or isinstance(heads, bool) or not 1 <= heads <= module.num_heads:
                raise CheckpointError(f"slim architecture: {name}.num_heads must be an integer in "
                                      f"1..{module.num_heads}, got {heads!r}")
            _set_module(model, str(name), PrunedMultiheadAttention.like(module, heads))
            continue
        if not isinstance(spec, Mapping) or spec.get("type") != type(module).__name__:
            raise CheckpointError(f"slim architecture: module {name!r} is a "
                                  f"{type(module).__name__}, the file describes {spec!r}")
        attrs = _size_attrs(module)
        if attrs is None:
            raise CheckpointError(f"slim architecture: module {name!r} ({type(module).__name__}) "
                                  "cannot be resized")
        for attr in attrs:
            value = spec.get(attr)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise CheckpointError(f"slim architecture: {name}.{attr} must be an integer >= 1, "
                                      f"got {value!r}")
            setattr(module, attr, value)
        if isinstance(module, _ConvNd) and (module.in_channels % module.groups or
                                            module.out_channels % module.groups):
            raise CheckpointError(f"slim architecture: {name!r} has groups={module.groups}, which "
                                  f"does not divide {module.in_channels} and {module.out_channels}")
        prefix = f"{name}." if name else ""
        for local, tensor in list(module._parameters.items()) + list(module._buffers.items()):
            if tensor is None or local.endswith(MASK_SUFFIX):
                continue
            shape = _shape_for(module, local, tensor)  # what the sizes say
            if state is not None:
                given = state.get(prefix + local)
                if not isinstance(given, Tensor):
                    raise CheckpointError(f"slim model: {prefix + local} is "
                                          f"{'missing' if given is None else type(given).__name__}, "
                                          f"expected a tensor of shape {shape}")
                if tuple(given.shape) != shape:
                    raise CheckpointError(f"slim model: {prefix + local} has shape "
                                          f"{tuple(given.shape)}, but the architecture's sizes "
                                          f"give {shape}")
            elif math.prod(shape) > 1 << 31:
                raise CheckpointError(f"slim architecture: {prefix + local} would hold "
                                      f"{math.prod(shape)} values")
            new = torch.empty(shape, dtype=tensor.dtype, device=tensor.device)
            if local in module._parameters:
                module._parameters[local] = nn.Parameter(new, requires_grad=tensor.requires_grad)
            else:
                module._buffers[local] = new
    model._shrinkbench_architecture = {k: dict(v) for k, v in arch.items()}  # type: ignore[attr-defined]
    return model


def _shape_for(module: nn.Module, local: str, tensor: Tensor) -> tuple[int, ...]:
    if isinstance(module, _BatchNorm):
        return (module.num_features,) if tensor.dim() == 1 else tuple(tensor.shape)
    if isinstance(module, _ConvNd):
        if local == "weight":
            return (module.out_channels, module.in_channels // module.groups, *tensor.shape[2:])
        return (module.out_channels,)
    if isinstance(module, nn.Linear):
        return (module.out_features, module.in_features) if local == "weight" else (module.out_features,)
    return tuple(tensor.shape)


def slim_payload(model: nn.Module, state: Mapping[str, Tensor] | None = None,
                 base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What save_slim writes: format, architecture, optional base (zoo name/options), state dict."""
    out: dict[str, Any] = {"format": SLIM_FORMAT, "architecture": architecture(model),
                           "state_dict": dict(state) if state is not None else
                           {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    if base is not None:
        out["base"] = dict(base)
    return out


def save_slim(model: nn.Module, path: str | os.PathLike, *, base: Mapping[str, Any] | None = None) -> Path:
    """Save a slim model as plain data: loadable with torch.load(weights_only=True), no pickled modules.

    `base` (e.g. {"model": "resnet18", "options": {...}}) records what to build before loading."""
    file = Path(path)
    buffer = io.BytesIO()
    torch.save(slim_payload(model, base=base), buffer)
    tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(buffer.getvalue())
        os.replace(tmp, file)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"slim model {str(file)!r} cannot be written: {exc.strerror}") from None
    return file


def is_slim(payload: Any) -> bool:
    """Whether a loaded file is a slim model (format tag present)."""
    return isinstance(payload, Mapping) and payload.get("format") == SLIM_FORMAT


def load_slim(path: str | os.PathLike, model: nn.Module) -> nn.Module:
    """A slim model from `save_slim`'s file; `model` is a fresh instance of the original
    architecture, resized in place and loaded."""
    file = Path(path)
    try:
        payload = torch.load(file, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"slim model {str(file)!r} does not exist") from None
    except Exception as exc:
        detail = " ".join(str(exc).split())[:160]
        raise CheckpointError(f"slim model {str(file)!r} cannot be loaded: {detail}") from None
    if not is_slim(payload) or not isinstance(payload.get("state_dict"), Mapping):
        raise CheckpointError(f"{str(file)!r} is not a slim model file (format {SLIM_FORMAT})")
    return load_slim_state(model, payload, str(file))


def load_slim_state(model: nn.Module, payload: Mapping[str, Any], label: str = "slim model") -> nn.Module:
    """Resize `model` as the payload's architecture says and load its state dict."""
    state = payload["state_dict"]
    bad = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{label!r}: entry {bad[0]!r} is a {type(state[bad[0]]).__name__}, "
                              "not a tensor")
    apply_architecture(model, payload.get("architecture") or {}, state)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:200]
        raise CheckpointError(f"{label!r} does not fit the model: {detail}") from None
    return model


def structured_mask(model: nn.Module, graph: DependencyGraph, removed: list[int]) -> None:
    """Zero the removed classes everywhere they live, with masks (attached or narrowed)."""
    from ..masks import apply_masks, attach_mask

    per_param: dict[str, dict[int, list[Tensor]]] = {}
    for cls in removed:
        for param, dim, index in graph.classes[cls]:
            per_param.setdefault(param, {}).setdefault(dim, []).append(index)
    for param, cuts in per_param.items():
        owner, local = _resolve(model, param)
        tensor = owner._parameters[local]
        old = get_mask(owner, local)
        mask = torch.ones_like(tensor, dtype=torch.bool) if old is None else old.to(torch.bool).clone()
        for dim, parts in cuts.items():
            mask.index_fill_(dim, torch.cat(parts).to(mask.device), False)
        attach_mask(owner, local, mask, check=False)
    apply_masks(model)
