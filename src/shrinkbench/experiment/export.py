"""Export a finished pruned run's model: a plain state dict with the masks baked in, or CSR tensors.

Two file formats, both plain data that `torch.load(path, weights_only=True)` reads:

- `state_dict`: the zoo model's own state dict (no `*_mask` buffers), dense tensors, pruned entries
  exactly +0.0. It loads with `model.load_state_dict(...)` (strict) into `create_model(...)`.
- `csr`: {"format": "shrinkbench.csr", "version": 1, "state_dict": {...}, "shapes": {...}}. Every
  masked parameter with 2 or more dimensions is a 2-D `torch.sparse_csr` tensor of shape
  (shape[0], prod(shape[1:])) whose stored entries are exactly the kept (mask 1) positions, so its
  sparsity pattern is the mask; `shapes[key]` is its original shape. Every other tensor is dense.
  Indices are int32 when they fit. `load_exported` turns either file back into a dense state dict.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..common import CHECKPOINT_FILE, CONFIG_FILE, DB_NAME, EPOCHS_FILE, LAYERS_FILE, MASK_SUFFIX
from ..common import METRICS_FILE, MODEL_FILE, unwrap_state_dict
from ..pruning.structured import apply_architecture, architecture, is_slim, slim_payload
from ..data import DATASETS, dataset_info, get_data
from ..errors import CheckpointError, ConfigError, ModelError, StoreError, UnknownNameError
from ..metrics import count_parameters
from ..models import MODELS, create
from ..models.weights import load_failure
from ..pruning.masks import load_state_dict, remove_masks
from ..results.files import atomic_write_bytes, run_dir
from ..results.store import Store
from .checkpoint import load_state
from .components import options_used
from .plugins import load_plugins, resolve_plugins

FORMATS: tuple[str, ...] = ("state_dict", "csr")
CSR_FORMAT = "shrinkbench.csr"
CSR_VERSION = 1
_INT32_MAX = 2**31 - 1
# Files of a run folder and of the output folder that an export must never replace.
_RESERVED = (MODEL_FILE, METRICS_FILE, EPOCHS_FILE, LAYERS_FILE, CONFIG_FILE, CHECKPOINT_FILE)


@dataclass(frozen=True)
class ExportResult:
    """What `export_run` wrote: the file, its size against the run's model.pt, the parameters kept."""

    run_id: str
    config: dict[str, Any]  # the run's config as the store keeps it
    fmt: str
    path: Path
    source_bytes: int  # size of the run's masked model.pt
    exported_bytes: int
    params_total: int
    params_kept: int  # the run's params_nonzero: entries not removed by a mask
    sparse_tensors: int  # tensors stored as CSR (0 for state_dict)

    @property
    def ratio(self) -> float:
        """source_bytes / exported_bytes (> 1: the export is smaller)."""
        return self.source_bytes / self.exported_bytes if self.exported_bytes else math.inf


def default_path(out_dir: str | os.PathLike, run_id: str, fmt: str) -> Path:
    """Where an export goes unless told: <out>/runs/<run id>/export-<format>.pt."""
    return run_dir(out_dir, run_id, create=False) / f"export-{check_format(fmt)}.pt"


def check_format(fmt: str) -> str:
    """`fmt` when it is an export format; UnknownNameError listing the formats otherwise."""
    if fmt not in FORMATS:
        raise UnknownNameError(f"--format: unknown export format {fmt!r}; choose from: "
                               f"{', '.join(FORMATS)}")
    return fmt


def find_run(out_dir: str | os.PathLike, run_id: str) -> dict[str, Any]:
    """The store row of the finished pruned run whose id is `run_id` or starts with it."""
    wanted = str(run_id).strip().lower()
    if not wanted:
        raise StoreError("RUN_ID: empty; give a run id or a unique prefix of one")
    with Store(out_dir, create=False) as store:
        rows = store.runs()
    exact = [row for row in rows if row["id"] == wanted]
    found = exact or [row for row in rows if row["id"].startswith(wanted)]
    pruned = [row for row in found if row["kind"] == "prune"]
    if not found:
        raise StoreError(f"no run {run_id!r} in {out_dir} (see `shrinkbench results {out_dir}`)")
    if len(pruned) > 1 or (len(found) > 1 and not pruned):
        ids = ", ".join(row["id"] for row in found[:5]) + (", ..." if len(found) > 5 else "")
        raise StoreError(f"run id prefix {run_id!r} is ambiguous in {out_dir}: it matches {ids}")
    if not pruned:
        raise StoreError(f"{found[0]['id']} in {out_dir} is a dense model, not a pruned run; "
                         "export takes the id of a pruned run (or its control at compression 1)")
    row = pruned[0]
    if row["status"] != "done":
        raise StoreError(f"run {row['id']} in {out_dir} is not finished (status {row['status']}); "
                         "only a finished run has a final model to export")
    return row


def _model_for(config: Mapping[str, Any]) -> nn.Module:
    """A fresh zoo model of the run's config, sized for its data set (weights to be loaded)."""
    data, model = dict(config.get("data") or {}), dict(config.get("model") or {})
    if data.get("name") not in DATASETS or model.get("name") not in MODELS:
        load_plugins(resolve_plugins(config.get("plugins") or []))  # they register these names
    data_options, model_options = dict(data.get("options") or {}), dict(model.get("options") or {})
    try:
        with options_used("data.options", data_options, f"data set {data.get('name')!r}", ConfigError):
            info = dataset_info(str(data.get("name")), **data_options)
            if info.num_classes is None:  # a vocabulary read from the training split
                info = get_data(str(data.get("name")), data_dir=data.get("data_dir"),
                                **data_options).info
        with options_used("model.options", model_options, f"model {model.get('name')!r}", ModelError):
            return create(str(model.get("name")), num_classes=info.num_classes,
                          input_shape=tuple(info.input_shape), generator=torch.Generator().manual_seed(0),
                          **model_options)
    except UnknownNameError as exc:
        raise UnknownNameError(f"the run's config: {exc} (name its plugin with `plugins:`)") from None


def load_run_model(out_dir: str | os.PathLike, row: Mapping[str, Any]) -> tuple[nn.Module, Path]:
    """The run's final model with its masks (as saved in model.pt), on the CPU, and that file."""
    file = run_dir(out_dir, row["id"], create=False) / MODEL_FILE
    model = _model_for(row["config"])
    payload = load_state(file)
    try:
        if is_slim(payload):  # channels removed: resize the fresh model as the file describes
            apply_architecture(model, payload.get("architecture") or {}, payload["state_dict"])
            payload = payload["state_dict"]
        state = unwrap_state_dict(payload, f"model file {str(file)!r}")
        load_state_dict(model, state)
    except (RuntimeError, KeyError, ValueError) as exc:
        detail = " ".join(str(exc).split())[:160]
        raise CheckpointError(f"model file {str(file)!r} does not fit model "
                              f"{row['config'].get('model', {}).get('name')!r}: {detail}") from None
    return model, file


def _csr(value: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`value` as a 2-D CSR tensor (rows: dim 0) storing exactly the positions where `mask` is 1."""
    rows = value.shape[0]
    kept = mask.reshape(rows, -1) != 0
    cols = kept.shape[1]
    counts = kept.sum(dim=1)
    nnz = int(counts.sum())
    index = torch.int32 if max(cols, nnz) <= _INT32_MAX else torch.int64
    crow = torch.cat([counts.new_zeros(1), counts.cumsum(0)]).to(index)
    col = kept.nonzero()[:, 1].to(index)  # row-major order, as CSR wants
    values = value.reshape(rows, -1)[kept]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta state"
        return torch.sparse_csr_tensor(crow, col, values, size=(rows, cols), check_invariants=True)


def export_state(model: nn.Module, fmt: str) -> tuple[Any, int]:
    """The export payload of a masked model (its masks are removed from it) and how many CSR tensors."""
    check_format(fmt)
    arch = architecture(model)  # channels removed: the sizes travel with the weights
    masked = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    remove_masks(model)
    plain = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if fmt == "state_dict":
        return (slim_payload(model, plain) if arch else plain), 0
    out: dict[str, torch.Tensor] = {}
    shapes: dict[str, list[int]] = {}
    for key, value in plain.items():
        mask = masked.get(key + MASK_SUFFIX)
        # a mask buffer that remove_masks took away: `key` was a masked parameter
        if mask is not None and key + MASK_SUFFIX not in plain and value.dim() >= 2:
            out[key] = _csr(value, mask)
            shapes[key] = list(value.shape)
        else:
            out[key] = value
    payload = {"format": CSR_FORMAT, "version": CSR_VERSION, "state_dict": out, "shapes": shapes}
    if arch:
        payload["architecture"] = arch
    return payload, len(shapes)


def _check_target(target: Path, out_dir: str | os.PathLike, run_id: str) -> Path:
    """Refuse a --to that is a folder, is not a plain file, or lies among the results folder's own
    files (the store, the report, any run's or dense model's folder except the run's own exports)."""
    text = str(target)
    if target.is_dir():
        raise ConfigError(f"--to: {text!r} is a directory; give a file name")
    if target.is_symlink() or (target.exists() and not target.is_file()):
        raise ConfigError(f"--to: {text!r} exists and is not a plain file (a link, device or pipe); "
                          "give another name")
    resolved = target.resolve()
    out = Path(out_dir).resolve()
    own = run_dir(out_dir, run_id, create=False).resolve()
    inside = resolved.is_relative_to(out)
    relative = resolved.relative_to(out).parts if inside else ()
    managed = inside and (
        (len(relative) == 1 and (resolved.name.startswith(DB_NAME) or resolved.suffix in (".html", ".md")))
        or (relative[:1] in (("runs",), ("dense",)) and not (resolved.parent == own
                                                             and resolved.name.startswith("export")))
    )
    if managed:
        raise ConfigError(f"--to: {text!r} is among the files of results folder {out_dir} (its store, "
                          "report, or a run's folder); write the export elsewhere or leave --to out")
    return target


def export_run(out_dir: str | os.PathLike, run_id: str, fmt: str = "state_dict",
               to: str | os.PathLike | None = None) -> ExportResult:
    """Export finished pruned run `run_id` (or a unique prefix) of `out_dir` as `fmt` to `to`.

    Default `to`: <out>/runs/<run id>/export-<format>.pt. The file is written to a temporary name in
    its folder and renamed into place; on any error nothing is written.
    """
    check_format(fmt)
    row = find_run(out_dir, run_id)
    if to is not None and str(to).endswith(("/", os.sep)):
        raise ConfigError(f"--to: {str(to)!r} is a directory; give a file name")
    target = _check_target(Path(to) if to is not None else default_path(out_dir, row["id"], fmt),
                           out_dir, row["id"])
    model, source = load_run_model(out_dir, row)
    params = count_parameters(model)
    payload, sparse = export_state(model, fmt)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    try:
        atomic_write_bytes(target, buffer.getvalue())
    except OSError as exc:
        raise ConfigError(f"--to: cannot write {str(target)!r}: {exc.strerror or exc}") from None
    return ExportResult(run_id=row["id"], config=row["config"], fmt=fmt, path=target,
                        source_bytes=source.stat().st_size, exported_bytes=target.stat().st_size,
                        params_total=int(params.total), params_kept=int(params.nonzero),
                        sparse_tensors=sparse)


def _dense_from_csr(key: str, value: Any, shape: Any, label: str) -> torch.Tensor:
    if not (isinstance(shape, (list, tuple)) and len(shape) >= 2
            and all(isinstance(s, int) and s >= 0 for s in shape)):
        raise CheckpointError(f"{label}: entry {key!r} has no valid shape (got {shape!r})")
    size = (shape[0], math.prod(shape[1:]))
    if not isinstance(value, torch.Tensor) or value.layout != torch.sparse_csr \
            or tuple(value.shape) != size:
        raise CheckpointError(f"{label}: entry {key!r} is not a CSR tensor of shape {size} "
                              f"(for shape {tuple(shape)})")
    return value.to_dense().reshape(shape)


def decode(obj: Any, label: str = "export") -> dict[str, torch.Tensor]:
    """A dense state dict from a loaded export (either format); CheckpointError naming `label`."""
    if not (isinstance(obj, Mapping) and obj.get("format") == CSR_FORMAT):
        return unwrap_state_dict(obj, label)
    if obj.get("version") != CSR_VERSION:
        raise CheckpointError(f"{label}: CSR export version {obj.get('version')!r} is not "
                              f"{CSR_VERSION}; export the run again with this shrinkbench")
    tensors, shapes = obj.get("state_dict"), obj.get("shapes")
    if not isinstance(tensors, Mapping) or not isinstance(shapes, Mapping):
        raise CheckpointError(f"{label}: a CSR export needs 'state_dict' and 'shapes' entries")
    extra = sorted(set(map(str, shapes)) - set(map(str, tensors)))
    if extra:
        raise CheckpointError(f"{label}: 'shapes' names {extra[0]!r}, which is not in its state_dict")
    dense = {key: _dense_from_csr(key, value, shapes[key], label) if key in shapes else value
             for key, value in tensors.items()}
    return unwrap_state_dict(dense, label)


def load_exported(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The dense state dict in an export file of either format (read with weights_only=True).

    Sparse tensors are checked (indices in range, ordered) while loading, so a damaged file is an
    error, never a crash.
    """
    file = Path(path)
    label = f"export file {str(file)!r}"
    if not file.is_file():
        raise CheckpointError(f"{label} {'is a directory' if file.is_dir() else 'does not exist'}")
    try:
        with torch.sparse.check_sparse_tensor_invariants(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        raise CheckpointError(f"{label} cannot be loaded: {load_failure(exc)}") from None
    return decode(obj, label)


__all__ = ["FORMATS", "CSR_FORMAT", "CSR_VERSION", "ExportResult", "check_format", "decode",
           "default_path", "export_run", "export_state", "find_run", "load_exported", "load_run_model"]
