"""Hugging Face causal LMs through shrinkbench's API: `hf_causal` (built offline from a config, random
weights) trains, prunes (magnitude, Wanda, SparseGPT, 2:4), counts MACs and evaluates by perplexity
from a run config, and `hf_causal_lm` wraps a model built by hand. Skipped without transformers."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

transformers = pytest.importorskip("transformers")

from shrinkbench.data import get_data  # noqa: E402
from shrinkbench.errors import ConfigError, ModelError  # noqa: E402
from shrinkbench.experiment import config_from_dict  # noqa: E402
from shrinkbench.experiment.components import preflight  # noqa: E402
from shrinkbench.experiment.runner import execute  # noqa: E402
from shrinkbench.metrics import count_macs  # noqa: E402
from shrinkbench.metrics.perplexity import evaluate_lm  # noqa: E402
from shrinkbench.models import create, hf_causal_lm  # noqa: E402
from shrinkbench.pruning import masked_parameters, nm_compression, prune  # noqa: E402

from test_lm_run import lm_config, text_dir  # noqa: E402,F401  (fixture)

LLAMA = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64}


def llama(vocab: int = 50, seed: int = 0, **over) -> nn.Module:
    return create("hf_causal", num_classes=vocab, input_shape=(16,),
                  generator=torch.Generator().manual_seed(seed), model_type="llama",
                  config={**LLAMA, **over})


def llama_macs(tokens: int, d: int, ff: int, layers: int, heads: int, kv_heads: int,
               vocab: int) -> int:
    """Hand count: q, o (d x d), k, v (d x kv width), gated MLP (3 x d x ff) per token and layer,
    QK^T and AV (tokens^2 x head width x heads, unmasked), and the lm head."""
    head = d // heads
    per_token = 2 * d * d + 2 * d * kv_heads * head + 3 * d * ff
    attention = 2 * heads * tokens * tokens * head
    return layers * (tokens * per_token + attention) + tokens * d * vocab


def test_built_from_a_config_seeded_and_counted_by_hand():
    a, b, c = llama(seed=0), llama(seed=0), llama(seed=1)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert type(a.model).__name__ == "LlamaForCausalLM" and a.model.config.vocab_size == 50
    assert a.shrinkbench_classifier == "model.lm_head"
    x = torch.randint(0, 50, (1, 10))
    report = count_macs(a, x)
    assert report.uncounted == {}
    assert report.dense == llama_macs(10, 32, 64, 2, 4, 2, 50) == 213_120


@pytest.mark.parametrize("kwargs, words", [
    ({"model_type": "no_such_model"}, "unknown model_type 'no_such_model'"),
    ({"config": {"hidden_sise": 8}}, "no field\\(s\\) 'hidden_sise'"),
    ({"config": {"vocab_size": 8}}, "vocab_size comes from the data set"),
    ({"config": {"max_position_embeddings": 8}}, "8 positions is fewer than the 16 tokens"),
    ({"config": [1, 2]}, "config must be a mapping"),
])
def test_bad_options_are_one_line(kwargs, words):
    options = {"model_type": "llama", "config": dict(LLAMA)}
    if "config" in kwargs and isinstance(kwargs["config"], dict):
        options["config"] = {**LLAMA, **kwargs["config"]}
    else:
        options.update(kwargs)
    with pytest.raises(ModelError, match=words):
        create("hf_causal", num_classes=50, input_shape=(16,), **options)


def test_prune_and_evaluate_a_model_built_by_hand(text_dir):  # noqa: F811
    bundle = get_data("text", root=str(text_dir), block_size=16, batch_size=8)
    vocab = bundle.info.num_classes
    cfg = transformers.AutoConfig.for_model("llama", vocab_size=vocab, **LLAMA)
    torch.manual_seed(0)
    model = hf_causal_lm(transformers.AutoModelForCausalLM.from_config(cfg)).eval()
    dense = evaluate_lm(model, bundle.val)
    assert math.isfinite(dense["ppl"]) and dense["tokens"] > 0
    batches = bundle.train.calibration(16, seed=0, batch_size=8)
    result = prune(model, "Wanda", nm_compression(model, "2:4"), batches=batches, allocation="2:4")
    for name, module, local, mask in masked_parameters(model):
        assert isinstance(module, nn.Linear) and "lm_head" not in name
        groups = mask.reshape(mask.shape[0], -1, 4).sum(-1)
        assert bool((groups == 2).all()), name  # exactly 2 of every 4 along the input
        assert bool((getattr(module, local)[mask == 0] == 0).all())
    assert result.compression > 1
    pruned = evaluate_lm(model, bundle.val)
    assert math.isfinite(pruned["ppl"]) and pruned["tokens"] == dense["tokens"]


def hf_config(folder, **pruning) -> dict:
    tree = lm_config(folder, **pruning)
    tree["model"] = {"name": "hf_causal", "options": {"model_type": "llama", "config": dict(LLAMA)}}
    tree["finetune"]["epochs"] = 0
    return tree


@pytest.mark.parametrize("strategy, allocation", [("GlobalMagWeight", None), ("Wanda", "2:4"),
                                                  ("SparseGPT", None)])
def test_runs_from_a_config(text_dir, tmp_path, strategy, allocation):  # noqa: F811
    tree = hf_config(text_dir, strategy=strategy, allocation=allocation)
    if allocation is not None:
        vocab = get_data("text", root=str(text_dir), block_size=32).info.num_classes
        model = create("hf_causal", num_classes=vocab, input_shape=(32,), model_type="llama",
                       config=LLAMA)
        tree["pruning"]["compression"] = nm_compression(model, allocation)
    m = execute(config_from_dict(tree), tmp_path / "out")
    for prefix in ("dense", "pre", "post"):
        assert math.isfinite(m[f"{prefix}_val_ppl"]) and m[f"{prefix}_val_ppl"] > 1
    assert m["post_val_ppl"] == m["pre_val_ppl"]  # one-shot: no fine-tuning
    assert m["pre_val_ppl"] >= m["dense_val_ppl"] * 0.95
    assert json.loads(m["lm_protocol"])["tokenizer"] == "char"
    assert m["macs_dense"] > m["macs_sparse"] > 0 and m["compression_ratio"] > 1.2


def test_preflight_names_a_bad_option(text_dir):  # noqa: F811
    tree = hf_config(text_dir)
    tree["model"]["options"]["config"]["hidden_sise"] = 8
    with pytest.raises((ConfigError, ModelError), match="hidden_sise"):
        preflight(config_from_dict(tree))
