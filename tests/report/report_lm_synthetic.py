"""A synthetic store of language-model runs (no training): perplexity metrics as text runs record them.

Char-level GPT on Shakespeare, pruned by Wanda, SparseGPT and GlobalMagWeight, plus the unpruned
control at compression 1. Every value is in closed form, so tests can recompute what the report
shows: a run's loss (nats per token) is DENSE_LOSS[split] + STAGE_SLOPE * slope * log2(c) ** 1.5 + a
seed offset, its perplexity exp(loss), its bits per token loss / ln 2.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from shrinkbench.results.store import Store

DATASET, MODEL = "shakespeare", "char_gpt"
LM_STRATEGIES = {  # store name -> (name the run records, loss slope)
    "wanda": ("Wanda", 0.020),
    "sparsegpt": ("SparseGPT", 0.015),
    "global_magnitude": ("GlobalMagWeight", 0.060),
}
DENSE_LOSS = {"val": 1.82, "test": 1.85}  # nats per token: val ppl 6.17, test ppl 6.36
STAGE_SLOPE = {"pre": 3.0, "post": 1.0}  # fine-tuning recovers two thirds of the damage
SEED_STEP = 0.004  # each seed adds this much loss (a spread over seeds without randomness)
VOCAB_HASH = "c9bb6d42e1f0a3b7"
TOKENS = {"val": 111_540, "test": 55_770}
FILES = {"val": ("valid.txt", "3f2a9c0d5e6b7a81"), "test": ("test.txt", "0b1c2d3e4f5a6978")}
STRIDE_SHIFT = {64: 0.0, 128: 0.03}  # a longer stride scores tokens with less context: higher loss
PARAMS = 800_000


def protocol(length: int = 128, stride: int = 64, val: bool = True) -> str:
    """The `lm_protocol` string of a run: canonical JSON, as experiment.components writes it."""

    def split(name: str) -> dict:
        file, md5 = FILES[name]
        tokens = TOKENS[name]
        windows = 1 + math.ceil(max(tokens - 1 - length, 0) / stride)
        return {"split": "valid" if name == "val" else name, "file": file, "file_md5": md5,
                "tokens": tokens, "tokens_scored": tokens - 1, "eval_length": length,
                "eval_stride": stride, "windows": windows}

    doc = {"dataset": DATASET, "tokenizer": "char", "vocab_size": 65, "vocab_hash": VOCAB_HASH,
           "val": split("val") if val else None, "test": split("test")}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def loss(split: str, stage: str, slope: float, c: float, seed: int, stride: int = 64) -> float:
    """The synthetic mean NLL per token of one run at one stage ("dense", "pre", "post")."""
    base = DENSE_LOSS[split] + STRIDE_SHIFT[stride] + SEED_STEP * seed
    if stage == "dense" or c == 1:
        return base
    return base + STAGE_SLOPE[stage] * slope * math.log2(c) ** 1.5


def ppl(split: str, stage: str, slope: float, c: float, seed: int, stride: int = 64,
        finetune_epochs: int = 1) -> float:
    """The perplexity of `loss` (post == pre when the run was not fine-tuned)."""
    if stage == "post" and finetune_epochs == 0:
        stage = "pre"
    return math.exp(loss(split, stage, slope, c, seed, stride))


def _config(strategy: str, c: float, seed: int, stride: int, finetune_epochs: int) -> dict:
    return {
        "data": {"name": DATASET, "batch_size": 32,
                 "options": {"tokenizer": "char", "eval_length": 128, "eval_stride": stride}},
        "model": {"name": MODEL},
        "pruning": {"strategy": strategy, "compression": c, "score_batches": 4},
        "finetune": {"epochs": finetune_epochs, "lr": 0.0003, "optimizer": "adamw"},
        "seed": seed,
    }


def lm_metrics(strategy: str, c: float, seed: int, stride: int = 64, finetune_epochs: int = 1,
               val: bool = True) -> dict:
    """The metrics one text run records."""
    name, slope = LM_STRATEGIES.get(strategy, ("Unpruned", 0.0))
    out: dict = {}
    for stage in ("dense", "pre", "post"):
        for split in ("val", "test") if val else ("test",):
            value = math.log(ppl(split, stage, slope, c, seed, stride, finetune_epochs))
            out[f"{stage}_{split}_loss"] = value
            out[f"{stage}_{split}_ppl"] = math.exp(value)
            out[f"{stage}_{split}_bpc"] = value / math.log(2)
    nonzero = round(PARAMS / c)
    out.update({
        "params_total": PARAMS, "params_nonzero": nonzero, "compression_ratio": PARAMS / nonzero,
        "macs_dense": 1e8, "macs_sparse": 1e8 / c ** 0.9, "speedup": c ** 0.9,
        "strategy_name": name, "schedule": "oneshot", "schedule_name": "one-shot",
        "train_epochs": 5.0 + finetune_epochs, "train_steps": 500 + 100 * finetune_epochs,
        "train_macs": 3e12,
        "lm_protocol": protocol(stride=stride, val=val),
        "lm_calibration": json.dumps({"length": 128, "seed": seed, "sequences": 128,
                                      "source": "the first score_batches training batches of epoch 0"},
                                     sort_keys=True, separators=(",", ":")),
        "lm_tokenizer": "char", "lm_vocab_hash": VOCAB_HASH, "lm_eval_length": 128,
        "lm_eval_stride": stride,
        "time_total_s": 30.0, "env": {"python": "3.11.0", "torch": "2.3.0", "host": "testhost"},
    })
    return out


def build_lm_store(out: Path, seeds=(0, 1, 2), compressions=(1, 2, 4, 8), strides=(64,),
                   finetune_epochs: int = 1, strategies=tuple(LM_STRATEGIES), val: bool = True,
                   store: Store | None = None) -> Path:
    """Write (or add to `store`) done language-model runs: every strategy x compression x seed under
    each eval stride in `strides` (one protocol per stride), with their dense rows."""
    own = store is None
    store = Store(out) if own else store
    try:
        for stride in strides:
            for seed in seeds:
                dense_id = f"dense-{stride}-{seed}"
                store.register(dense_id, "dense", _config("none", 1, seed, stride, 0))
                store.start(dense_id)
                dense = {k: v for k, v in lm_metrics("none", 1, seed, stride, 0, val).items()
                         if k.startswith("dense_")}
                store.finish(dense_id, dense)
            for strategy in strategies:
                for c in compressions:
                    for seed in seeds:
                        name = "none" if c == 1 else strategy
                        run_id = f"lm-{name}-{c}-{seed}-{stride}"
                        if not store.register(run_id, "prune", _config(name, c, seed, stride,
                                                                      finetune_epochs)):
                            continue  # the one control serves every strategy
                        store.start(run_id)
                        for epoch in range(1, finetune_epochs + 1):
                            store.add_epoch(run_id, "finetune", epoch,
                                            {"lr": 3e-4, "train_loss": 1.9, "train_acc1": 0.4,
                                             "val_loss": 1.9, "val_ppl": math.exp(1.9),
                                             "val_bpc": 1.9 / math.log(2)})
                        store.finish(run_id, lm_metrics(name, c, seed, stride, finetune_epochs, val))
    finally:
        if own:
            store.close()
    return out
