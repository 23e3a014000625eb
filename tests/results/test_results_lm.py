"""Language-model runs in the results layer: perplexity columns as numbers, protocol groups, references."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from shrinkbench.results import analysis, load, load_epochs
from shrinkbench.results.frame import frame_metric_name, frame_metric_value, is_lm_metric
from shrinkbench.results.store import Store


def _protocol(stride: int, md5: str = "0b1c2d3e4f5a6978") -> str:
    split = {"split": "test", "file": "test.txt", "file_md5": md5, "tokens": 1000, "tokens_scored": 999,
             "eval_length": 128, "eval_stride": stride, "windows": 15}
    return json.dumps({"dataset": "shakespeare", "tokenizer": "char", "vocab_size": 65,
                       "vocab_hash": "c9bb6d42e1f0a3b7", "val": None, "test": split},
                      sort_keys=True, separators=(",", ":"))


def _config(strategy: str, c: float, seed: int, epochs: int = 1) -> dict:
    return {"data": {"name": "shakespeare"}, "model": {"name": "char_gpt"},
            "pruning": {"strategy": strategy, "compression": c}, "finetune": {"epochs": epochs},
            "seed": seed}


def _metrics(pre: float, post: float, dense: float, c: float, stride: int = 64, seed: int = 0) -> dict:
    out = {"compression_ratio": c, "speedup": c, "lm_protocol": _protocol(stride),
           "lm_calibration": json.dumps({"sequences": 64, "length": 128, "seed": seed, "source": "train"}),
           "lm_tokenizer": "char", "lm_vocab_hash": "c9bb6d42e1f0a3b7", "lm_eval_length": 128,
           "lm_eval_stride": stride}
    for stage, value in (("dense", dense), ("pre", pre), ("post", post)):
        out[f"{stage}_test_ppl"] = value
        out[f"{stage}_test_loss"] = math.log(value)
        out[f"{stage}_test_bpc"] = math.log(value) / math.log(2)
    return out


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path) as s:
        for seed in (0, 1):
            for run_id, strategy, c, pre, post, stride in (
                    (f"w2-{seed}", "wanda", 2, 7.0, 6.5, 64), (f"w4-{seed}", "wanda", 4, 9.0, 7.5, 64),
                    (f"m2-{seed}", "global_magnitude", 2, 8.0, 7.0, 64),
                    (f"w2s-{seed}", "wanda", 2, 7.2, 6.7, 128)):
                s.register(run_id, "prune", _config(strategy, c, seed))
                s.start(run_id)
                s.finish(run_id, _metrics(pre + seed, post + seed, 6.0 + seed, c, stride, seed))
        s.add_epoch("w2-0", "finetune", 1, {"val_loss": 1.9, "val_ppl": math.exp(1.9), "val_bpc": "2.74"})
    return tmp_path


def test_lm_metric_names_are_kept_and_values_are_numbers():
    for name in ("post_test_ppl", "post_val_bpc", "pre_val_loss", "dense_test_ppl", "val_ppl", "train_loss"):
        assert is_lm_metric(name) and frame_metric_name(name) == name
    assert not is_lm_metric("post_test_acc1") and not is_lm_metric("lm_protocol")
    assert frame_metric_value("post_test_ppl", 6.5) == 6.5
    assert math.isnan(frame_metric_value("post_test_ppl", None))
    assert frame_metric_value("post_val_bpc", "2.5") == 2.5
    assert math.isnan(frame_metric_value("post_val_bpc", "n/a"))
    assert frame_metric_value("post_test_ppl", math.inf) == math.inf  # a diverged model stays infinite
    assert frame_metric_value("lm_eval_stride", 64) == 64.0
    assert frame_metric_value("round_test_ppl", [7, None]) == (7.0, pytest.approx(math.nan, nan_ok=True))
    assert frame_metric_value("lm_protocol", '{"a":1}') == '{"a":1}'  # the string stays a string


def test_frame_has_numeric_perplexity_columns(store):
    runs = load(store).sort_values("run_id").reset_index(drop=True)
    for column in ("post_test_ppl", "pre_test_ppl", "dense_test_ppl", "post_test_bpc", "post_test_loss",
                   "lm_eval_stride"):
        assert runs[column].dtype == np.float64, column
    row = runs[runs["run_id"] == "w4-1"].iloc[0]
    assert row["post_test_ppl"] == 8.5 and row["pre_test_ppl"] == 10.0 and row["dense_test_ppl"] == 7.0
    assert row["post_test_bpc"] == pytest.approx(math.log2(8.5))
    assert row["strategy"] == "wanda" and isinstance(row["lm_protocol"], str)
    assert runs["post_test_top1_pct"].isna().all()  # no accuracy in these runs
    epochs = load_epochs(store)
    assert epochs["val_bpc"].tolist() == [2.74] and epochs["val_ppl"].iloc[0] == pytest.approx(math.exp(1.9))


def test_language_model_detection(store):
    runs = load(store)
    assert analysis.is_lm_run(runs).all() and analysis.is_language_model(runs)
    assert analysis.lm_splits(runs) == ["test"]
    image = runs.assign(post_test_top1_pct=90.0)
    assert not analysis.is_lm_run(image).any() and not analysis.is_language_model(image)
    assert not analysis.is_language_model(runs.iloc[0:0])


def test_protocol_groups_split_on_the_exact_string(store):
    runs = load(store)
    groups = analysis.protocol_groups(runs)
    assert [len(g) for _, g in groups] == [6, 2]  # stride 64 (6 runs) first, then stride 128
    assert [analysis.parse_protocol(k)["test"]["eval_stride"] for k, _ in groups] == [64, 128]
    for key, group in groups:
        assert (group["lm_protocol"] == key).all()
    # a protocol without a recorded string is its own, last group
    bare = runs.assign(lm_protocol=[None] + list(runs["lm_protocol"].iloc[1:]))
    keys = [k for k, _ in analysis.protocol_groups(bare)]
    assert keys[-1] == analysis.NO_PROTOCOL and len(keys) == 3
    assert analysis.parse_protocol("not json") == {} and analysis.parse_protocol(None) == {}


def test_references_finetuning_and_calibration(store):
    runs = load(store)
    stride64 = runs[runs["lm_eval_stride"] == 64]
    assert analysis.lm_dense(stride64, "test") == (6.5, 2)  # dense 6.0 and 7.0 for seeds 0 and 1
    assert math.isnan(analysis.lm_dense(stride64, "val")[0])
    change = analysis.lm_change(stride64, "test")
    assert sorted(change.round(6).unique()) == [0.5, 1.0, 1.5]
    assert analysis.lm_finetuned(stride64)
    oneshot = stride64.assign(post_test_ppl=stride64["pre_test_ppl"])
    assert not analysis.lm_finetuned(oneshot)
    calibration = analysis.lm_calibration(stride64)
    assert calibration["sequences"] == (64,) and calibration["length"] == (128,)
    assert calibration["seed"] == (0, 1)


def test_checklist_top5_does_not_apply_to_language_models(store):
    runs = load(store)
    item = next(i for i in analysis.checklist(runs) if i.rule == "top5")
    assert item.passed and item.detail == "shakespeare: not applicable (language model)"
    image = pd.DataFrame({"dataset": ["imagenet"], "model": ["resnet50"], "strategy": ["a"],
                          "compression": [2.0], "seed": [0], "post_test_top1_pct": [70.0]})
    both = pd.concat([runs, image], ignore_index=True)
    item = next(i for i in analysis.checklist(both) if i.rule == "top5")
    assert not item.passed  # ImageNet without top-5 still fails
    assert item.detail.endswith("; shakespeare: not applicable (language model)")
    assert "imagenet: 1000 classes but post_test_top5_pct missing" in item.detail
