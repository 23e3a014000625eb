"""The pieces a run is made of: data (cached in memory), the seeded model, the checks done up front."""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import os
import re
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from torch import nn

from ..data import dataset_info, get_data
from ..data.base import DATASETS
from ..errors import (CompressionError, ConfigError, DataError, DataNotFound, ModelError,
                      PruningError, ShrinkBenchError)
from ..models import create, load_weights
from ..models.zoo import check_input_size
from ..pruning import STRATEGIES
from ..pruning.api import check_nm_compression
from ..pruning.nm import parse_nm
from ..pruning.structured import dependency_graph, reachable
from ..pruning.prunable import prunable_parameters
from .config import Config, RecipeConfig
from .schedules import check_steps
from .device import place_model, resolve_device, use_channels_last
from .loops import derive_seed, seeded_rng

_DATA_CACHE: OrderedDict[tuple, Any] = OrderedDict()
DATA_CACHE_SIZE = 4  # e.g. the dense and fine-tuning batch sizes of two seeds in a sweep


def clear_data_cache() -> None:
    """Forget the data sets kept in memory between runs."""
    _DATA_CACHE.clear()


@contextlib.contextmanager
def options_used(field: str, options: Mapping[str, Any], owner: str,
                 error: type[ShrinkBenchError]) -> Iterator[None]:
    """Turn a TypeError, ValueError or AttributeError (an option of the wrong type, deep in a
    constructor) into one line naming `field`; without options such an error is a bug and passes."""
    try:
        yield
    except (TypeError, ValueError, AttributeError) as exc:
        if not options:
            raise
        given = json.dumps(dict(options), sort_keys=True, default=repr)
        given = given if len(given) <= 80 else given[:77] + "..."
        detail = " ".join(str(exc).split())
        detail = detail if len(detail) <= 120 else detail[:117] + "..."
        raise error(f"{field}: {owner} cannot use {given}: {detail}") from None


def eval_batch_size(recipe: RecipeConfig) -> int:
    """The recipe's evaluation batch size (default: 4 x the training batch size)."""
    return recipe.eval_batch_size or 4 * recipe.batch_size


def load_data(cfg: Config, recipe: RecipeConfig, device: torch.device) -> Any:
    """The DataBundle for this config and recipe's batch sizes, reused across runs in this process."""
    d = cfg.data
    key = (d.name, d.data_dir, recipe.batch_size, eval_batch_size(recipe), d.val_size, cfg.seed,
           str(device), d.augment, d.num_workers, json.dumps(d.options, sort_keys=True))
    if key in _DATA_CACHE:
        _DATA_CACHE.move_to_end(key)
        return _DATA_CACHE[key]
    try:
        with options_used("data.options", d.options, f"data set {d.name!r}", ConfigError):
            bundle = get_data(d.name, data_dir=d.data_dir, batch_size=recipe.batch_size,
                              eval_batch_size=eval_batch_size(recipe), val_size=d.val_size,
                              seed=cfg.seed, device=device, download=d.download,
                              augment=d.augment, num_workers=d.num_workers, **d.options)
    except DataNotFound as exc:  # what to do, said as the overrides of `run` and `sweep`
        raise DataError(f"data.name: {exc.what}; {exc.hint('config')}") from None
    _DATA_CACHE[key] = bundle
    while len(_DATA_CACHE) > DATA_CACHE_SIZE:
        _DATA_CACHE.popitem(last=False)
    return bundle


def static_info(cfg: Config) -> Any:
    """The data set's facts known without reading it (classes, input shape)."""
    d = cfg.data
    with options_used("data.options", d.options, f"data set {d.name!r}", ConfigError):
        return dataset_info(d.name, **d.options)


def build_model(cfg: Config, info: Any, device: torch.device | None = None,
                init: str = "init") -> nn.Module:
    """The zoo model for the data set, initialized from the config seed alone, on `device`.

    `init` names the draw: "init" is the dense model's initialization; another name (a lottery
    ticket's re-initialization control) draws other weights from the same distribution."""
    seed = derive_seed(cfg.seed, init)
    generator = torch.Generator().manual_seed(seed)
    m = cfg.model
    with seeded_rng(seed, torch.device("cpu")), options_used("model.options", m.options,
                                                             f"model {m.name!r}", ModelError):
        model = create(m.name, num_classes=info.num_classes, input_shape=tuple(info.input_shape),
                       generator=generator, **m.options)
    if device is not None:
        model = place_model(model, device, use_channels_last(cfg.channels_last, info.input_shape))
    return model


def takes_tokens(info: Any) -> bool:
    """Whether the data set's inputs are token ids (a text data set), not real-valued tensors."""
    from ..data.text import TextDataset

    return info.name in DATASETS and isinstance(DATASETS.get(info.name), TextDataset)


def lm_protocol(cfg: Config, bundle: Any) -> dict[str, Any]:
    """What a language model's perplexity depends on besides the model, stored with every text run:
    `lm_protocol` (canonical JSON: data set, tokenizer, vocabulary hash, and per evaluated split its
    file, md5, tokens scored, window length and stride) and the calibration set of the pruning
    (`lm_calibration`: sequences, their length, the seed that drew them from the training split)."""
    from ..data import text_protocol

    full = text_protocol(bundle)
    keep = ("split", "file", "file_md5", "tokens", "tokens_scored", "eval_length", "eval_stride",
            "windows")
    evaluated = {split: None if full[split] is None else {k: full[split][k] for k in keep}
                 for split in ("val", "test")}
    protocol = {"dataset": full["dataset"], "tokenizer": full["tokenizer"],
                "vocab_size": full["vocab_size"], "vocab_hash": full["vocab_hash"], **evaluated}
    p = cfg.pruning
    if p.calibration_samples is None:
        calibration = {"sequences": p.score_batches * cfg.finetune.batch_size,
                       "length": full["train"]["block_size"], "seed": cfg.seed,
                       "source": "the first score_batches training batches of epoch 0"}
    else:
        calibration = {"sequences": p.calibration_samples,
                       "length": p.calibration_length or full["train"]["block_size"],
                       "seed": cfg.seed if p.calibration_seed is None else p.calibration_seed,
                       "source": "drawn at random from the training split"}
    return {"lm_protocol": json.dumps(protocol, sort_keys=True, separators=(",", ":")),
            "lm_calibration": json.dumps(calibration, sort_keys=True, separators=(",", ":")),
            "lm_tokenizer": full["tokenizer"], "lm_vocab_hash": full["vocab_hash"],
            "lm_eval_length": full["test"]["eval_length"], "lm_eval_stride": full["test"]["eval_stride"]}


def example_input(info: Any, device: torch.device) -> torch.Tensor:
    """One all-zero example batch of the data set's input shape (token ids for text)."""
    dtype = torch.int64 if takes_tokens(info) else torch.float32
    return torch.zeros(1, *info.input_shape, device=device, dtype=dtype)


_REACHABLE: dict[str, Any] = {}  # most a channel strategy can reach, by model, input and ignore


def check_channel_target(cfg: Config, model: nn.Module, info: Any) -> None:
    """Refuse a channel-pruning target that removing all but one channel of every group misses."""
    p = cfg.pruning
    key = repr((cfg.model.name, sorted(cfg.model.options.items()), tuple(info.input_shape),
                tuple(p.ignore)))
    if key not in _REACHABLE:
        example = torch.zeros(2, *info.input_shape)
        graph = dependency_graph(model, example, ignore=p.ignore)
        _REACHABLE[key] = (reachable(model, graph), bool(graph.uncounted))
    best, uncounted = _REACHABLE[key]
    if p.target == "speedup" and uncounted:
        return  # refused at pruning time, naming the operator
    most = best.value(p.target)
    if p.compression > most * (1 + 1e-9):
        raise CompressionError(
            f"pruning.compression: {p.target} {p.compression:g} cannot be reached for "
            f"{cfg.model.name} by removing channels: at most {most:.4g} (one channel left in every "
            "prunable group; pinned channels stay)")


def check_compression(cfg: Config, model: nn.Module, info: Any = None) -> None:
    """Refuse a target compression that the unprunable parameters alone make impossible."""
    p = cfg.pruning
    if p.compression > 1 and STRATEGIES.get(p.strategy).structured:
        if info is not None:
            check_channel_target(cfg, model, info)
        return
    prunable = prunable_parameters(model, include_classifier=p.include_classifier,
                                   include_bias=p.include_bias, ignore=p.ignore)
    if not prunable and p.compression > 1:
        raise CompressionError("pruning.compression: the model has no prunable parameters with "
                               "these pruning settings")
    if p.compression > 1 and parse_nm(p.allocation) is not None and cfg.schedule.is_default:
        try:  # the same arithmetic as prune(), before anything trains
            check_nm_compression(model, p.allocation, p.compression, p.include_classifier,
                                 p.include_bias, p.ignore)
        except CompressionError as exc:
            raise CompressionError(f"pruning.compression: {exc}") from None
    total = sum(t.numel() for t in model.parameters())
    fixed = total - sum(t.numel() for t in prunable.values())
    if math.floor(total / p.compression) - fixed < 0:
        best = total / max(fixed, 1)
        raise CompressionError(
            f"pruning.compression: {p.compression:g} cannot be reached for {cfg.model.name}: its "
            f"{fixed} unprunable parameters (of {total}) allow at most {best:.4g}")


def check_device(name: str) -> None:
    """Refuse a device this machine does not have."""
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device: {name!r} is not usable here: CUDA is not available on this "
                              "machine (use auto or cpu)")
        index = name.partition(":")[2]
        if index and int(index) >= torch.cuda.device_count():
            raise ConfigError(f"device: {name!r} is not usable here: this machine has "
                              f"{torch.cuda.device_count()} CUDA device(s)")
    if name == "mps":
        backend = getattr(torch.backends, "mps", None)
        if backend is None or not backend.is_available():
            raise ConfigError("device: 'mps' is not usable here: MPS is not available on this machine")


def check_fits(cfg: Config) -> None:
    """The checks that need neither the data files nor a built model: the model takes inputs as
    small as the data set's (`model.name: ...` in one line when not)."""
    shape = tuple(static_info(cfg).input_shape)
    try:
        check_input_size(cfg.model.name, shape)
    except ModelError as exc:
        raise ModelError(f"model.name: {exc} (data set {cfg.data.name!r}, input {shape})") from None


_WARNED_THREADS: set[int] = set()  # thread counts above this machine's CPUs, warned about once


def preflight(cfg: Config, *, compression: bool = True) -> Config:
    """Check on this machine what the config alone cannot show: the device, the data files, that
    the model fits the data and (with `compression`) that the compression can be reached."""
    check_device(cfg.device)
    cpus = os.cpu_count() or 1
    in_worker = multiprocessing.parent_process() is not None  # the driver already said it
    if cfg.threads > cpus and cfg.threads not in _WARNED_THREADS and not in_worker:
        _WARNED_THREADS.add(cfg.threads)
        warnings.warn(f"threads: {cfg.threads} is more than the {cpus} CPUs of this machine; the "
                      f"runs will be slower than with threads={cpus} (and their numbers are those of "
                      f"threads={cfg.threads}, as on any machine)", stacklevel=1)
    data_dir = cfg.data.data_dir
    if data_dir is not None and not cfg.data.download and not Path(data_dir).is_dir():
        raise ConfigError(f"data.data_dir: folder {data_dir!r} does not exist (set data.download "
                          "to fetch the data set)")
    check_fits(cfg)  # a model too big for the input: refused before it is built
    info = static_info(cfg)
    if info.num_classes is None:  # a vocabulary read from the training split: read it now
        info = load_data(cfg, cfg.finetune, torch.device("cpu")).info
    try:
        model = build_model(cfg, info)
    except ModelError as exc:
        text = str(exc)
        if text.startswith("model.options:"):
            raise
        if any(re.search(rf"\b{re.escape(key)}\b", text) for key in cfg.model.options):
            raise ModelError(f"model.options: {text}") from None  # the constructor refused an option
        raise ModelError(f"model.name: {exc} (data set {cfg.data.name!r}, input "
                         f"{tuple(info.input_shape)})") from None
    if cfg.dense.source != "train":
        load_weights(model, cfg.dense.source)
    try:
        with torch.no_grad():
            out = model.eval()(example_input(info, torch.device("cpu")))
    except ShrinkBenchError:
        raise
    except Exception as exc:  # a shape error deep in the model: say which pair does not fit
        detail = " ".join(str(exc).split())[:160]
        raise ModelError(f"model.name: {cfg.model.name!r} does not accept inputs of shape "
                         f"{tuple(info.input_shape)} from data set {cfg.data.name!r}: {detail}") from None
    expected = ((1, *info.input_shape, info.num_classes) if takes_tokens(info)
                else (1, info.num_classes))
    if out.ndim != len(expected) or (info.num_classes and out.shape[-1] != info.num_classes):
        shape = "(batch, tokens, vocabulary)" if takes_tokens(info) else "(batch, classes)"
        raise ModelError(f"model.name: {cfg.model.name!r} outputs shape {tuple(out.shape)}, expected "
                         f"{shape} = {expected} for data set {cfg.data.name!r}")
    if compression:
        check_compression(cfg, model, info)
    bundle = load_data(cfg, cfg.finetune, resolve_device(cfg.device))  # missing or corrupt files show here
    if compression and not cfg.is_control and not STRATEGIES.get(cfg.pruning.strategy).structured:
        check_steps(cfg, model, bundle.train)
    if compression and not cfg.is_control and cfg.pruning.calibration_samples is not None:
        check_calibration(cfg, model, bundle.train)
    return cfg


def drawing(train: Any) -> Any:
    """`train` itself, when it can draw calibration examples (`calibration`, `check_calibration`)."""
    if not (hasattr(train, "calibration") and hasattr(train, "check_calibration")):
        raise PruningError(f"pruning.calibration_samples: the {type(train).__name__} training "
                           "loader cannot draw examples at random; leave it null to score on the "
                           "first score_batches training batches")
    return train


def check_calibration(cfg: Config, model: nn.Module, train: Any) -> None:
    """Refuse, before anything trains, calibration examples that the training split cannot give or
    (text) sequences longer than the model takes."""
    p = cfg.pruning
    try:
        length = drawing(train).check_calibration(p.calibration_samples, p.calibration_length)
    except DataError as exc:
        raise ConfigError(str(exc)) from None
    if length is None:  # examples of a fixed shape
        return
    limit = getattr(model, "shrinkbench_positions", None)  # position encodings that never fail
    if isinstance(limit, int) and length > limit:
        raise ConfigError(f"pruning.calibration_length: model {cfg.model.name!r} takes sequences of "
                          f"at most {limit} tokens, got {length}")
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, length, dtype=torch.int64))
    except Exception as exc:  # a position table shorter than the sequences
        detail = " ".join(str(exc).split())[:160]
        raise ConfigError(f"pruning.calibration_length: model {cfg.model.name!r} does not take "
                          f"sequences of {length} tokens: {detail}") from None
