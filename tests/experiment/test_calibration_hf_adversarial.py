"""Adversarial checks of the calibration fields (`pruning.calibration_*`) and of the `hf_causal` zoo
model: each test fails on the code as reviewed and passes once the problem it names is fixed."""

from __future__ import annotations

import pytest
import torch

from shrinkbench.errors import ConfigError, ModelError
from shrinkbench.experiment import config_from_dict
from shrinkbench.experiment.components import preflight

from test_calibration import digits_config
from test_lm_run import lm_config, text_dir  # noqa: F401  (fixture)

LLAMA = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64}


def _hf(model_type: str = "llama", vocab: int = 50, **config) -> torch.nn.Module:
    from shrinkbench.models import create

    options = {**LLAMA, **config} if model_type == "llama" else config
    return create("hf_causal", num_classes=vocab, input_shape=(16,),
                  generator=torch.Generator().manual_seed(0), model_type=model_type,
                  config=options)


# -- calibration fields --------------------------------------------------------------------------

def test_calibration_seed_equal_to_the_run_seed_is_the_same_run(text_dir):  # noqa: F811
    """calibration_seed null means "the run's seed": an explicit calibration_seed equal to the run's
    seed draws the very same examples (identical numbers), so it must be the same run id, not a
    duplicate run that a sweep over calibration_seed [null, 0, 1] trains twice."""
    implicit = config_from_dict(digits_config(calibration_samples=50))
    explicit = config_from_dict(digits_config(calibration_samples=50, calibration_seed=0))
    assert explicit.seed == implicit.seed == 0
    assert explicit.run_id == implicit.run_id
    text_implicit = config_from_dict(lm_config(text_dir, strategy="Wanda", calibration_samples=8))
    text_explicit = config_from_dict(lm_config(text_dir, strategy="Wanda", calibration_samples=8,
                                               calibration_seed=0))
    assert text_explicit.run_id == text_implicit.run_id


def test_text_calibration_samples_that_cannot_be_drawn_are_refused_by_preflight(text_dir):  # noqa: F811
    """2**40 sequences of 32 tokens (2**45 token ids, 280 TB as int64) pass preflight; the run then
    trains the dense model and dies in torch.randint with a RuntimeError traceback. Preflight must
    refuse it in one line naming pruning.calibration_samples."""
    cfg = config_from_dict(lm_config(text_dir, strategy="Wanda", calibration_samples=2**40))
    with pytest.raises(ConfigError, match="calibration_samples"):
        preflight(cfg)


# -- hf_causal ------------------------------------------------------------------------------------

@pytest.mark.parametrize("config", [
    {"hidden_size": "abc"},          # huggingface_hub StrictDataclassFieldValidationError
    {"max_position_embeddings": "64"},
    {"hidden_size": 30},             # not a multiple of the 4 heads: StrictDataclassClassValidationError
    {"hidden_act": "nope"},          # KeyError from transformers' activation table
    {"rope_scaling": {"rope_type": "bogus", "factor": 2.0}},  # KeyError
])
def test_hf_bad_config_values_are_one_line_model_errors(config):
    pytest.importorskip("transformers")
    with pytest.raises(ModelError, match="hf_causal"):
        _hf(**config)


def test_hf_model_type_without_a_causal_lm_is_a_model_error():
    """t5 is a transformers architecture but has no AutoModelForCausalLM class: from_config raises a
    plain ValueError (a traceback from `shrinkbench run`) instead of a ModelError."""
    pytest.importorskip("transformers")
    with pytest.raises(ModelError, match="t5"):
        _hf("t5", d_model=32, num_layers=1, num_heads=4, d_ff=64, d_kv=8)


def test_hf_bidirectional_model_type_is_refused_or_causal():
    """model_type bert builds BertLMHeadModel without is_decoder: every position attends to later
    tokens, so next-token perplexity is computed by a model that sees the answer. It must be refused
    (ModelError) or built causal: earlier logits may not depend on a later token."""
    pytest.importorskip("transformers")
    try:
        model = _hf("bert", hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                    intermediate_size=64).eval()
    except ModelError:
        return
    x = torch.randint(0, 50, (1, 16), generator=torch.Generator().manual_seed(0))
    x2 = x.clone()
    x2[0, -1] = (x[0, -1] + 1) % 50
    with torch.no_grad():
        assert torch.equal(model(x)[0, :-1], model(x2)[0, :-1])


def test_hf_gpt2_is_prunable():
    """gpt2 (named in hf_causal's own error message as an architecture) keeps its weights in
    transformers' Conv1D modules: its MACs are counted, but pruning finds no prunable parameters
    and refuses it."""
    pytest.importorskip("transformers")
    from shrinkbench.metrics.params import compression_ratio
    from shrinkbench.pruning import masked_parameters, prune

    model = _hf("gpt2", n_embd=32, n_layer=2, n_head=4, n_positions=64)
    prune(model, "GlobalMagWeight", 2)
    assert compression_ratio(model) == pytest.approx(2.0, rel=1e-3)
    assert not any("lm_head" in name for name, *_ in masked_parameters(model))


def test_hf_grasp_scores():
    """GraSP (a Hessian-gradient score) differentiates twice; the LLaMA built with transformers'
    default sdpa attention has no double backward on the CPU, so prune raises a bare RuntimeError."""
    pytest.importorskip("transformers")
    from shrinkbench.experiment.loops import task_loss
    from shrinkbench.metrics.params import compression_ratio
    from shrinkbench.pruning import prune

    model = _hf().eval()
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randint(0, 50, (4, 16), generator=gen), torch.randint(0, 50, (4, 16), generator=gen)
    prune(model, "GraSP", 2, batches=[(x, y)], loss_fn=task_loss, seed=0)
    assert compression_ratio(model) == pytest.approx(2.0, rel=1e-3)


def test_hf_causal_run_exports(text_dir, tmp_path):  # noqa: F811
    """`shrinkbench export` rebuilds the zoo model from the run's config with the registration's
    default vocabulary (65) instead of the data set's (the text folder has 34 characters), so the
    finished run's model.pt "does not fit model 'hf_causal'" (char_gpt runs fail the same way)."""
    pytest.importorskip("transformers")
    from shrinkbench.experiment.export import export_run
    from shrinkbench.sweep import run_experiment

    tree = lm_config(text_dir)
    tree["model"] = {"name": "hf_causal", "options": {"model_type": "llama", "config": dict(LLAMA)}}
    tree["dense"]["recipe"]["epochs"] = 1
    tree["finetune"]["epochs"] = 0
    cfg = config_from_dict(tree)
    run_experiment(cfg, tmp_path / "out", progress=False)
    result = export_run(tmp_path / "out", cfg.run_id)
    assert result.path.exists() and result.params_kept * 2 == pytest.approx(result.params_total, rel=1e-3)


def test_hf_causal_listing_is_a_whole_sentence():
    """`shrinkbench list models` shows the docstring's first line, which for hf_causal stops
    mid-sentence: '... random weights; default'."""
    pytest.importorskip("transformers")
    from shrinkbench.models import model_info

    description = model_info("hf_causal").description
    assert not description.rstrip().endswith(("default", ";", ","))
