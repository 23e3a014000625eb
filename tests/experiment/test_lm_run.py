"""A language-model run end to end on a small text folder: char GPT trained, pruned, fine-tuned,
evaluated by perplexity with its protocol stored (a few seconds)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from shrinkbench.experiment import config_from_dict
from shrinkbench.experiment.runner import execute
from shrinkbench.experiment.loops import task_loss

TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n\n") * 40


@pytest.fixture
def text_dir(tmp_path):
    folder = tmp_path / "plays"
    folder.mkdir()
    (folder / "train.txt").write_text(TEXT, encoding="utf-8")
    (folder / "valid.txt").write_text(TEXT[:900], encoding="utf-8")
    (folder / "test.txt").write_text(TEXT[900:2000], encoding="utf-8")
    return folder


def lm_config(folder, **pruning) -> dict:
    return {
        "data": {"name": "text", "options": {"root": str(folder), "block_size": 32, "eval_stride": 16}},
        "model": {"name": "char_gpt", "options": {"n_layer": 1, "n_head": 2, "n_embd": 32}},
        "dense": {"recipe": {"optimizer": "adamw", "lr": 0.003, "epochs": 2, "batch_size": 16}},
        "pruning": {"strategy": "GlobalMagWeight", "compression": 2, **pruning},
        "finetune": {"optimizer": "adamw", "lr": 0.001, "epochs": 1, "batch_size": 16},
        "latency": {"enabled": False},
        "device": "cpu",
    }


def test_task_loss_scores_only_the_marked_tokens():
    logits = torch.randn(2, 3, 5)
    y = torch.tensor([[1, -100, 2], [0, 4, -100]])
    keep = y != -100
    direct = torch.nn.functional.cross_entropy(logits[keep], y[keep])
    assert torch.allclose(task_loss(logits, y), direct)


def test_char_gpt_run_records_perplexity_and_its_protocol(text_dir, tmp_path):
    cfg = config_from_dict(lm_config(text_dir))
    m = execute(cfg, tmp_path / "out")
    for prefix in ("dense", "pre", "post"):
        for split in ("val", "test"):
            ppl = m[f"{prefix}_{split}_ppl"]
            assert math.isfinite(ppl) and ppl > 1
            assert m[f"{prefix}_{split}_bpc"] == pytest.approx(m[f"{prefix}_{split}_loss"] / math.log(2))
    assert "post_test_acc1" not in m
    assert m["post_val_ppl"] < m["pre_val_ppl"]  # fine-tuning recovers some of what pruning lost
    assert m["compression_ratio"] == pytest.approx(2.0, rel=1e-4)
    protocol = json.loads(m["lm_protocol"])
    assert protocol["tokenizer"] == "char" and protocol["test"]["eval_length"] == 32
    assert protocol["test"]["eval_stride"] == 16 and protocol["test"]["file"] == "test.txt"
    assert protocol["test"]["tokens_scored"] == len(TEXT[900:2000]) - 1
    calibration = json.loads(m["lm_calibration"])
    assert calibration == {"sequences": 16, "length": 32, "seed": 0,
                           "source": "the first score_batches training batches of epoch 0"}
    assert m["macs_dense"] > m["macs_sparse"] > 0


def test_gradient_scores_and_schedules_work_on_token_models(text_dir, tmp_path):
    m = execute(config_from_dict(lm_config(text_dir, strategy="GlobalMagGrad")), tmp_path / "out")
    assert m["compression_ratio"] == pytest.approx(2.0, rel=1e-4)
    tree = lm_config(text_dir)
    tree["schedule"] = {"kind": "gradual", "frequency": 3}
    g = execute(config_from_dict(tree), tmp_path / "out")
    assert len(g["path_step"]) > 1 and math.isfinite(g["post_test_ppl"])
