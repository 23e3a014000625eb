"""Adversarial checks of the calibration fields (`pruning.calibration_*`) and of the `hf_causal` zoo
model: each test fails on the code as reviewed and passes once the problem it names is fixed."""

from __future__ import annotations

import pytest
import torch

from shrinkbench.errors import CompressionError, ConfigError, ModelError
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


# -- from a new user's walkthrough ---------------------------------------------------------------

def test_n_m_patterns_stay_strings_in_yaml_and_on_the_command_line():
    """YAML 1.1 reads 2:4 as the base-60 integer 124; `--set pruning.allocation=2:4` must mean 2:4."""
    from shrinkbench.experiment.config import apply_overrides
    from shrinkbench.results.files import parse_yaml

    assert parse_yaml("allocation: 2:4\nother: 4:8\nn: 12\nx: 1.5") == {
        "allocation": "2:4", "other": "4:8", "n": 12, "x": 1.5}
    tree = apply_overrides({"pruning": {}}, ["pruning.allocation=2:4"])
    assert tree["pruning"]["allocation"] == "2:4"


def test_preflight_refuses_a_compression_the_pattern_does_not_give(text_dir):  # noqa: F811
    """Refused before the dense model trains, with the value to ask for; that value is accepted."""
    from shrinkbench.pruning import nm_compression

    with pytest.raises(CompressionError, match=r"pruning.compression: compression 2 does not match "
                                          r"allocation 2:4.*ask for that"):
        preflight(config_from_dict(lm_config(text_dir, allocation="2:4")))
    vocab = 34
    model = _hf_text_model(text_dir)
    good = nm_compression(model, "2:4")
    assert model.model.config.vocab_size == vocab
    tree = lm_config(text_dir, allocation="2:4", compression=good)
    tree["model"] = {"name": "hf_causal", "options": {"model_type": "llama", "config": dict(LLAMA)}}
    assert preflight(config_from_dict(tree))


def _hf_text_model(text_dir):  # noqa: F811
    from shrinkbench.data import get_data

    vocab = get_data("text", root=str(text_dir), block_size=32).info.num_classes
    return _hf(vocab=vocab)


def test_calibration_longer_than_the_position_table_is_refused(text_dir):  # noqa: F811
    """LLaMA's rotary positions never fail a forward pass: the limit is max_position_embeddings."""
    pytest.importorskip("transformers")
    tree = lm_config(text_dir, strategy="Wanda", calibration_samples=4, calibration_length=100)
    tree["model"] = {"name": "hf_causal", "options": {"model_type": "llama", "config": dict(LLAMA)}}
    with pytest.raises(ConfigError, match="at most 64 tokens, got 100"):
        preflight(config_from_dict(tree))


def test_hf_option_errors_name_model_options(text_dir):  # noqa: F811
    pytest.importorskip("transformers")
    tree = lm_config(text_dir)
    tree["model"] = {"name": "hf_causal",
                     "options": {"model_type": "llama", "config": {**LLAMA, "hiden_size": 8}}}
    with pytest.raises(ModelError, match="^model.options: model 'hf_causal': llama configs have no "
                                         "field\\(s\\) 'hiden_size'$"):
        preflight(config_from_dict(tree))
    with pytest.raises(ModelError, match="no causal language model for model_type 't5'"):
        _hf("t5", d_model=32)


def test_gpt2_special_tokens_follow_the_vocabulary():
    """GPT-2's bos/eos ids (50256) are outside a character vocabulary: left unset, not warned about."""
    pytest.importorskip("transformers")
    model = _hf("gpt2", n_embd=32, n_layer=1, n_head=4, n_positions=64)
    config = model.model.config
    assert config.bos_token_id is None and config.eos_token_id is None
    kept = _hf("gpt2", n_embd=32, n_layer=1, n_head=4, n_positions=64, bos_token_id=3)
    assert kept.model.config.bos_token_id == 3


def test_results_table_shows_perplexity_and_the_calibration_seed(text_dir, tmp_path, capsys):  # noqa: F811
    """`shrinkbench results` on language-model runs: perplexities and the seed that drew the
    calibration data, no all-empty accuracy columns."""
    from shrinkbench.cli.main import main
    from shrinkbench.sweep import run_experiment

    for cseed in (None, 5):
        tree = lm_config(text_dir, strategy="Wanda", calibration_samples=8, calibration_seed=cseed)
        tree["finetune"]["epochs"] = 0
        run_experiment(config_from_dict(tree), tmp_path / "out", progress=False)
    capsys.readouterr()
    assert main(["results", str(tmp_path / "out")]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0].split()
    assert "pre_val_ppl" in header and "calibration_seed" in header
    assert not any("top1" in h for h in header)
    seeds = sorted(line.split()[header.index("calibration_seed")] for line in lines[1:])
    assert seeds == ["0", "5"]  # null is the run's seed


def test_summary_and_progress_lines_name_the_allocation_and_calibration_seed(text_dir):  # noqa: F811
    from shrinkbench.cli.run_cmd import summary_line
    from shrinkbench.experiment import config_to_dict
    from shrinkbench.sweep.progress import describe

    cfg = config_from_dict(lm_config(text_dir, strategy="Wanda", allocation="2:4", compression=1.7,
                                     calibration_samples=8, calibration_seed=3))
    line = describe({"kind": "prune", "config": config_to_dict(cfg)})
    assert "Wanda (2:4)" in line and line.endswith("seed 0 calibration seed 3")
    metrics = {"compression_ratio": 1.7, "speedup": 1.5, "dense_test_ppl": 5.0,
               "pre_test_ppl": 5.5, "post_test_ppl": 5.4, "time_total_s": 1.0}
    assert "Wanda (2:4) x1.7 seed 0" in summary_line(cfg, metrics, "out")
    assert summary_line(cfg, metrics, "out").count("fine-tuned") == 1  # finetune.epochs is 1
    one_shot = config_from_dict({**lm_config(text_dir), "finetune": {"epochs": 0}})
    text = summary_line(one_shot, dict(metrics, post_test_ppl=5.5), "out")
    assert "5.500 pruned (" in text and "fine-tuned" not in text
