"""Hugging Face `transformers` causal language models in the zoo, built offline from a config.

`hf_causal` builds any causal LM architecture that `transformers` knows (`model_type` llama, gpt2,
gpt_neox, mistral, ...) with random weights, its vocabulary taken from the data set, and wraps it
with `hf_causal_lm` so that it trains, prunes, counts MACs and evaluates by perplexity as the zoo's
own `char_gpt` does. Nothing is downloaded. `transformers` is optional:
`pip install "shrinkbench[hf]"`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ModelError
from .gpt import hf_causal_lm
from .zoo import register_model

NAME = "hf_causal"
# The sizes used when a llama config leaves them out (transformers' own defaults are LLaMA-7B's):
# 4 layers of width 128, 4 heads, a gated MLP of 384, up to 512 positions.
SMALL_LLAMA = {"hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 4,
               "num_attention_heads": 4, "num_key_value_heads": 4, "max_position_embeddings": 512}


EXAMPLES = ("llama", "gpt2", "gpt_neox", "mistral", "opt", "qwen2")


def _refused(text: str) -> ModelError:
    """A one-line error about `model.options` of this model."""
    return ModelError(f"model.options: model {NAME!r}: {text}")


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise ModelError(f"model {NAME!r} needs the transformers package: "
                         "pip install \"shrinkbench[hf]\"") from None
    return transformers


def _config(transformers: Any, model_type: Any, vocab: int, options: dict[str, Any]) -> Any:
    """The architecture's config with `options` set, each option checked against its fields."""
    mapping = transformers.CONFIG_MAPPING
    if not isinstance(model_type, str) or model_type not in mapping:
        known = ", ".join(k for k in EXAMPLES if k in mapping)
        raise _refused(f"unknown model_type {model_type!r} (transformers "
                       f"architectures, e.g. {known})")
    causal = _causal_types(transformers)
    if causal is not None and model_type not in causal:
        raise _refused(f"transformers has no causal language model "
                       f"for model_type {model_type!r} (an encoder or encoder-decoder "
                       f"architecture); choose e.g. {', '.join(EXAMPLES)}")
    if not isinstance(options, dict):
        raise _refused(f"config must be a mapping of {model_type} config "
                       f"fields, got {type(options).__name__}")
    if model_type == "llama":
        options = {**SMALL_LLAMA, **options}
    elif not options:
        raise _refused(f"give config (the sizes) for model_type {model_type!r}; "
                       "transformers' defaults are a full-size model")
    defaults = mapping[model_type]()
    unknown = sorted(k for k in options if not hasattr(defaults, k))
    if unknown:
        raise _refused(f"{model_type} configs have no field(s) "
                       f"{', '.join(map(repr, unknown))}")
    if "vocab_size" in options:
        raise _refused(f"vocab_size comes from the data set ({vocab}); "
                       "leave it out of config")
    if options.get("is_decoder", True) is not True:
        raise _refused(f"is_decoder must stay true: next-token perplexity needs "
                       "a model that does not see later tokens")
    given = {**options, "vocab_size": vocab, "is_decoder": True}
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):  # GPT-2's 50256 and the like
        value = getattr(defaults, key, None)
        if key not in options and isinstance(value, int) and not 0 <= value < vocab:
            given[key] = None
    try:
        return mapping[model_type](**given)
    except Exception as exc:  # transformers' validators raise their own types
        raise _refused(f"{model_type} config refused: {_detail(exc)}") from None


def _causal_types(transformers: Any) -> Any:
    """The model types that have an AutoModelForCausalLM class (None if transformers hides it)."""
    try:
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    except ImportError:
        return None
    return MODEL_FOR_CAUSAL_LM_MAPPING_NAMES


def _detail(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:200]


def _linear_from_conv1d(module: nn.Module) -> nn.Linear:
    """transformers' Conv1D (GPT-2's layers: y = x W + b, W stored (in, out)) as the nn.Linear it
    computes, so that pruning, N:M patterns, Wanda and SparseGPT see an (out, in) weight."""
    weight, bias = module.weight, module.bias
    linear = nn.Linear(weight.shape[0], weight.shape[1], bias=bias is not None,
                       device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        linear.weight.copy_(weight.t())
        if bias is not None:
            linear.bias.copy_(bias)
    return linear


def _plain_linears(model: nn.Module) -> None:
    for name, module in list(model.named_modules()):
        if type(module).__name__ == "Conv1D" and type(module).__module__.startswith("transformers"):
            model.set_submodule(name, _linear_from_conv1d(module))


def _check_causal(model: nn.Module, vocab: int, positions: int | None) -> None:
    """Refuse a model whose earlier outputs change with a later token (it sees the answer)."""
    if any(p.is_meta for p in model.parameters()):
        return
    length = min(8, positions or 8)
    if length < 2:
        return
    x = torch.arange(length).remainder(vocab).unsqueeze(0)
    y = x.clone()
    y[0, -1] = (x[0, -1] + 1) % vocab
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            a, b = model(x)[0, :-1], model(y)[0, :-1]
    finally:
        model.train(was)
    if not torch.equal(a, b):
        raise _refused(f"this architecture attends to later tokens (it is not a "
                       "causal language model), so its next-token perplexity would be wrong")


@register_model(NAME, input_shape=(128,), num_classes=65, family="transformer")
def hf_causal(
    num_classes: int,
    input_shape: tuple[int, ...],
    generator: torch.Generator | None = None,
    *,
    model_type: str = "llama",
    config: dict[str, Any] | None = None,
) -> nn.Module:
    """A Hugging Face transformers causal LM built offline from its config (default: a small LLaMA).

    Random weights; the default LLaMA has 4 layers of width 128, 4 heads and an MLP of 384."""
    if len(input_shape) != 1:
        raise ModelError(f"model {NAME!r} takes token sequences: input_shape must be (block_size,), "
                         f"got {tuple(input_shape)}")
    transformers = _transformers()
    cfg = _config(transformers, model_type, int(num_classes), {} if config is None else config)
    positions = next((getattr(cfg, k) for k in ("max_position_embeddings", "n_positions")
                      if isinstance(getattr(cfg, k, None), int)), None)
    if positions is not None and positions < input_shape[0]:
        raise _refused(f"{positions} positions is fewer than the {input_shape[0]} "
                       "tokens of a block; raise max_position_embeddings in config")
    # transformers initializes from the global generator: draw from a seed that `generator` fixes,
    # leaving the caller's global state as it was
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device="cpu"))
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            # eager attention: plain matmuls and softmax, which every score can differentiate
            # twice (GraSP) and every MAC counter sees
            model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    except Exception as exc:  # no causal-LM class for this type, or a value it cannot build
        raise _refused(f"cannot build a {model_type} causal LM: "
                       f"{_detail(exc)}") from None
    _plain_linears(model)
    wrapped = hf_causal_lm(model.float())
    wrapped.shrinkbench_positions = positions  # the longest sequence it takes (checked by preflight)
    _check_causal(wrapped, int(num_classes), positions)
    return wrapped
