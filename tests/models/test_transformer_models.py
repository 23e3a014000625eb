"""The zoo's transformers: char_gpt and vit_tiny. Shapes, initialization, causal masking, MACs against
hand formulas, prunable parameters, exact pruning, a training step, errors, the listing."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from shrinkbench.cli.main import main
from shrinkbench.errors import ModelError
from shrinkbench.metrics import compression_ratio, count_macs, count_parameters
from shrinkbench.models import (create, example_input, hf_causal_lm, list_models, model_info,
                                takes_tokens)
from shrinkbench.pruning import prune
from shrinkbench.pruning.masks import get_mask
from shrinkbench.pruning.prunable import classifier_name, prunable_parameters

SMALL_GPT = dict(n_layer=2, n_head=2, n_embd=16)  # with vocabulary 11 and block_size 9 below
V, T, D, L = 11, 9, 16, 2


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def small_gpt(seed: int = 0, **kw) -> nn.Module:
    options = {**SMALL_GPT, **kw}
    return create("char_gpt", num_classes=V, input_shape=(T,), generator=gen(seed), **options)


def tokens(batch: int, length: int = T, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, V, (batch, length), generator=gen(seed))


def small_vit(seed: int = 0, input_shape=(1, 8, 8), **kw) -> nn.Module:
    options = {**SMALL_GPT, **kw}
    return create("vit_tiny", num_classes=10, input_shape=input_shape, generator=gen(seed), **options)


# -- MAC formulas (one example; MACs = multiply-accumulates) -------------------------------------

def gpt_macs(t: int, d: int, layers: int, vocab: int) -> int:
    """Per token and layer: qkv 3d^2 + out-projection d^2 + MLP (d -> 4d -> d) 8d^2, and attention
    q.k over t keys plus att.v over t values, 2td (the causal mask is not subtracted: the products are
    computed in full); then the head d x vocab per token."""
    return layers * (12 * d * d * t + 2 * t * t * d) + t * d * vocab


def vit_macs(channels: int, height: int, width: int, patch: int, d: int, layers: int, ratio: float,
             classes: int) -> int:
    """The patch embedding (a d x C x p x p convolution per patch), then per token (patches + the class
    token) and layer qkv + out-projection 4d^2, MLP 2 x ratio x d^2, attention 2 x tokens x d; the
    head on the class token only."""
    patches = (height // patch) * (width // patch)
    n = patches + 1
    hidden = int(ratio * d)
    return (patches * d * channels * patch * patch
            + layers * ((4 * d * d + 2 * d * hidden) * n + 2 * n * n * d) + d * classes)


# -- registration and shapes -------------------------------------------------------------------

def test_registered_with_their_defaults():
    gpt, vit = model_info("char_gpt"), model_info("gpt_char")  # alias
    assert gpt.name == vit.name == "char_gpt"
    assert (gpt.family, gpt.default_input_shape, gpt.default_num_classes) == ("transformer", (128,), 65)
    info = model_info("vit_tiny")
    assert (info.family, info.default_input_shape, info.default_num_classes) == \
        ("transformer", (3, 32, 32), 10)
    assert takes_tokens(gpt) and not takes_tokens(info) and not takes_tokens(model_info("lenet300"))
    assert {"char_gpt", "vit_tiny"} <= set(list_models("*")) and list_models("vit*") == ["vit_tiny"]


def test_listed_by_the_command_line(capsys):
    assert main(["list", "models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    gpt = next(line for line in lines if line.startswith("char_gpt "))
    vit = next(line for line in lines if line.startswith("vit_tiny "))
    assert "transformer" in gpt and " 128 " in gpt and "65 classes" in gpt
    assert "transformer" in vit and "3x32x32" in vit and "10 classes" in vit


def test_example_input_is_token_ids_for_a_language_model():
    x = example_input("char_gpt", 3, generator=gen(0))
    assert x.dtype == torch.int64 and x.shape == (3, 128) and 0 <= int(x.min()) and int(x.max()) < 65
    assert example_input("char_gpt", num_classes=5, input_shape=(7,)).max() < 5
    image = example_input("vit_tiny", 2)
    assert image.dtype == torch.float32 and image.shape == (2, 3, 32, 32)


def test_gpt_shapes_and_options():
    model = small_gpt().eval()
    assert model(tokens(2)).shape == (2, T, V)
    assert model(tokens(3, length=4)).shape == (3, 4, V)  # shorter than block_size
    assert model(tokens(1).to(torch.int32)).shape == (1, T, V)
    default = create("char_gpt")
    assert len(default.blocks) == 4 and default.blocks[0].attn.n_head == 4
    assert default.wte.weight.shape == (65, 128)
    assert default.wpe.weight.shape == (128, 128) and default.lm_head.bias is None
    no_bias = small_gpt(bias=False)
    assert all(m.bias is None for m in no_bias.modules() if isinstance(m, (nn.Linear, nn.LayerNorm)))
    dropout = small_gpt(dropout=0.25)
    assert {m.p for m in dropout.modules() if isinstance(m, nn.Dropout)} == {0.25}


@pytest.mark.parametrize(("shape", "patch", "grid"), [
    ((3, 32, 32), 4, 8), ((1, 28, 28), 4, 7), ((1, 8, 8), 2, 4), ((3, 16, 16), 4, 4), ((1, 12, 12), 2, 6),
])
def test_vit_shapes_and_default_patch(shape, patch, grid):
    model = small_vit(input_shape=shape).eval()
    assert model.patch_embed.kernel_size == model.patch_embed.stride == (patch, patch)
    assert model.pos_embed.shape == (1, grid * grid + 1, D)
    assert model(torch.randn(3, *shape, generator=gen(1))).shape == (3, 10)


def test_vit_options():
    model = create("vit_tiny", patch_size=8, mlp_ratio=2, n_layer=1)
    assert model.patch_embed.kernel_size == (8, 8) and model.pos_embed.shape == (1, 17, 128)
    assert len(model.blocks) == 1 and model.blocks[0].mlp.fc.out_features == 256
    assert create("vit_tiny", num_classes=100).head.out_features == 100


# -- initialization ------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [small_gpt, small_vit])
def test_the_generator_fixes_the_initialization(make):
    torch.manual_seed(1)
    a = make(5).state_dict()
    torch.manual_seed(2)  # the global random state plays no part
    b = make(5).state_dict()
    c = make(6).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["blocks.0.attn.qkv.weight"], c["blocks.0.attn.qkv.weight"])


def test_gpt2_initialization():
    model = create("char_gpt", generator=gen(0))
    block = model.blocks[1]
    assert block.attn.qkv.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert block.mlp.fc.weight.std().item() == pytest.approx(0.02, rel=0.05)
    residual = 0.02 / math.sqrt(2 * 4)
    assert block.attn.proj.weight.std().item() == pytest.approx(residual, rel=0.05)
    assert block.mlp.proj.weight.std().item() == pytest.approx(residual, rel=0.05)
    assert model.wte.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert model.wpe.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert torch.equal(block.ln1.weight, torch.ones(128)) and torch.equal(block.ln1.bias, torch.zeros(128))
    assert torch.equal(block.attn.qkv.bias, torch.zeros(384))
    vit = create("vit_tiny", generator=gen(0))
    assert vit.pos_embed.std().item() == pytest.approx(0.02, rel=0.05)
    assert torch.equal(vit.head.bias, torch.zeros(10))


def test_tied_head_is_the_token_embedding():
    tied, untied = small_gpt(), small_gpt(tie_weights=False)
    assert tied.lm_head.weight is tied.wte.weight
    assert untied.lm_head.weight is not untied.wte.weight
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731  (a tied tensor once)
    assert count(untied) - count(tied) == V * D
    assert count_parameters(tied).total == count(tied)
    # a state_dict round trip and a deep copy keep the tie and the outputs
    fresh = small_gpt(seed=9)
    fresh.load_state_dict(tied.state_dict())
    x = tokens(2)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), tied.eval()(x))
    clone = copy.deepcopy(tied)
    assert clone.lm_head.weight is clone.wte.weight


def test_parameter_counts_by_hand():
    d, t, vocab, layers = 128, 128, 65, 4
    per_layer = 12 * d * d + 13 * d  # qkv, proj, fc, proj with biases, and two LayerNorms
    assert sum(p.numel() for p in create("char_gpt").parameters()) == \
        vocab * d + t * d + layers * per_layer + 2 * d
    patches = 64
    assert sum(p.numel() for p in create("vit_tiny").parameters()) == \
        (d * 3 * 16 + d) + d + (patches + 1) * d + layers * per_layer + 2 * d + (d * 10 + 10)


# -- causal masking --------------------------------------------------------------------------------

def test_a_later_token_does_not_change_earlier_logits():
    model = small_gpt().eval()
    x = tokens(2)
    y = x.clone()
    y[:, 5] = (y[:, 5] + 1) % V
    with torch.no_grad():
        a, b = model(x), model(y)
        prefix = model(x[:, :5])
    assert torch.allclose(a[:, :5], b[:, :5], rtol=0, atol=1e-6)
    assert not torch.allclose(a[:, 5:], b[:, 5:], atol=1e-3)
    assert torch.allclose(prefix, a[:, :5], rtol=0, atol=1e-6)  # a shorter context gives the same


def test_the_vision_transformer_attends_everywhere():
    model = small_vit().eval()
    x = torch.randn(1, 1, 8, 8, generator=gen(1))
    y = x.clone()
    y[..., 6:, 6:] += 1.0  # the last patch only
    with torch.no_grad():
        assert not torch.allclose(model(x), model(y), atol=1e-4)


# -- MACs ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("length", [T, 4])
def test_gpt_macs_equal_the_hand_formula(length):
    model = small_gpt()
    report = count_macs(model, tokens(1, length))
    assert report.dense == gpt_macs(length, D, L, V) and report.uncounted == {}
    layers = {layer.name: layer.dense for layer in report.layers}
    assert layers["blocks.0.attn.qkv"] == length * 3 * D * D
    assert layers["blocks.0.attn"] == 2 * length * length * D  # q k^T and att v, weight-free
    assert layers["blocks.1.mlp.fc"] == layers["blocks.1.mlp.proj"] == length * 4 * D * D
    assert layers["lm_head"] == length * D * V  # the tied head counted once, as itself
    # a batch gives the per-example count
    assert count_macs(model, tokens(3, length)).dense == report.dense


def test_default_models_macs_equal_the_hand_formulas():
    assert count_macs(create("char_gpt"), example_input("char_gpt")).dense == gpt_macs(128, 128, 4, 65) \
        == 118_505_472
    assert count_macs(create("vit_tiny"), example_input("vit_tiny")).dense == \
        vit_macs(3, 32, 32, 4, 128, 4, 4, 10) == 55_838_976


@pytest.mark.parametrize(("shape", "kw", "patch", "ratio"), [
    ((1, 8, 8), {}, 2, 4), ((1, 28, 28), {}, 4, 4), ((3, 32, 32), {"patch_size": 8, "mlp_ratio": 2}, 8, 2),
])
def test_vit_macs_equal_the_hand_formula(shape, kw, patch, ratio):
    model = small_vit(input_shape=shape, **kw)
    report = count_macs(model, torch.randn(2, *shape))
    assert report.dense == vit_macs(*shape, patch, D, L, ratio, 10) and report.uncounted == {}


def test_sparse_macs_scale_the_linear_layers_and_leave_attention_dense():
    model = small_gpt()
    x = tokens(1)
    prune(model, "global_magnitude", 3)
    report = count_macs(model, x)
    want = 0.0
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            mask = get_mask(module, "weight")
            density = 1.0 if mask is None else float(mask.mean())
            want += T * module.in_features * module.out_features * density
    want += L * 2 * T * T * D
    assert report.sparse == pytest.approx(want)
    assert report.dense == gpt_macs(T, D, L, V) and report.speedup > 1


# -- pruning ---------------------------------------------------------------------------------------

def test_prunable_parameters_are_the_block_linears():
    model = small_gpt()
    assert classifier_name(model) == "lm_head"
    names = list(prunable_parameters(model))
    assert names == [f"blocks.{i}.{layer}.weight" for i in range(L)
                     for layer in ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")]
    with_head = prunable_parameters(model, include_classifier=True)
    assert with_head["lm_head.weight"] is model.wte.weight  # asking for the head prunes the embedding
    vit = small_vit()
    assert classifier_name(vit) == "head"
    vit_names = list(prunable_parameters(vit))
    assert vit_names[0] == "patch_embed.weight" and "head.weight" not in vit_names
    assert len(vit_names) == 1 + 4 * L
    assert not any(n in vit_names for n in ("cls_token", "pos_embed", "norm.weight", "blocks.0.ln1.weight"))


@pytest.mark.parametrize("make", [small_gpt, small_vit])
def test_global_magnitude_meets_the_compression_exactly(make):
    model = make()
    total = sum(p.numel() for p in model.parameters())
    result = prune(model, "global_magnitude", 4)
    assert result.total == total and result.nonzero == math.floor(total / 4)
    count = count_parameters(model)
    assert (count.total, count.nonzero) == (total, result.nonzero)
    assert compression_ratio(model) == pytest.approx(4, rel=1e-3)
    head = model.lm_head if hasattr(model, "lm_head") else model.head
    assert get_mask(head, "weight") is None and torch.count_nonzero(head.weight) == head.weight.numel()
    for name in prunable_parameters(model):
        module = model.get_submodule(name.rpartition(".")[0])
        assert torch.equal(module.weight * (1 - get_mask(module, "weight")), torch.zeros_like(module.weight))


# -- training --------------------------------------------------------------------------------------

def test_training_steps_lower_the_gpt_loss():
    model = small_gpt().train()
    x = (torch.arange(T + 1).repeat(4, 1) + torch.arange(4)[:, None]) % V  # a learnable pattern
    inputs, targets = x[:, :-1], x[:, 1:]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        loss = F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(math.log(V), rel=0.1)  # small initial logits: near uniform
    assert losses[-1] < 0.7 * losses[0]
    assert model.lm_head.weight is model.wte.weight  # the optimizer keeps the tie


def test_training_steps_lower_the_vit_loss():
    model = small_vit().train()
    x, y = torch.randn(8, 1, 8, 8, generator=gen(1)), torch.arange(8) % 10
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(10):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(math.log(10), rel=0.05)
    assert all(b < a for a, b in zip(losses, losses[1:])) and losses[-1] < 0.8 * losses[0]


# -- errors ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "kwargs", "match"), [
    ("vit_tiny", {"input_shape": (1, 30, 30)}, r"input 30x30 is not a whole number of 4x4 patches"),
    ("vit_tiny", {"patch_size": 5}, r"input 32x32 is not a whole number of 5x5 patches"),
    ("vit_tiny", {"input_shape": (1, 9, 9)}, r"9x9 .* 2x2 patches"),
    ("vit_tiny", {"input_shape": (1, 1, 1)}, r"needs inputs of at least 2x2"),
    ("vit_tiny", {"patch_size": 0}, r"patch_size must be an int >= 1"),
    ("vit_tiny", {"mlp_ratio": 0}, r"mlp_ratio"),
    ("vit_tiny", {"input_shape": (128,)}, r"\(C, H, W\)"),
    ("char_gpt", {"n_embd": 130}, r"n_embd 130 is not a multiple of n_head 4"),
    ("char_gpt", {"n_layer": 0}, r"n_layer must be an int >= 1"),
    ("char_gpt", {"input_shape": (1, 28, 28)}, r"input_shape must be \(block_size,\)"),
    ("char_gpt", {"dropout": 1.0}, r"dropout"),
    ("char_gpt", {"tie_weights": "yes"}, r"tie_weights must be true or false"),
    ("char_gpt", {"bias": 1}, r"bias must be true or false"),
    ("char_gpt", {"patch_size": 4}, r"no option 'patch_size'; its options: bias, dropout, n_embd"),
])
def test_bad_options_raise_model_error(name, kwargs, match):
    with pytest.raises(ModelError, match=match):
        create(name, **kwargs)


def test_bad_inputs_raise_model_error():
    gpt = small_gpt()
    with pytest.raises(ModelError, match=r"int64 token ids of shape \(batch, tokens\), got a torch.float32"):
        gpt(torch.zeros(1, T))
    with pytest.raises(ModelError, match="block_size 9 takes at most 9 tokens, got 10"):
        gpt(tokens(1, T + 1))
    with pytest.raises(ModelError, match="int64 token ids"):
        count_macs(gpt, torch.zeros(1, T))
    vit = small_vit()
    with pytest.raises(ModelError, match=r"built for inputs \(batch, 1, 8, 8\), got shape \(2, 1, 16, 16\)"):
        vit(torch.zeros(2, 1, 16, 16))


def test_the_models_trace_with_torch_fx():
    for model, x in ((small_gpt(), tokens(1)), (small_vit(), torch.randn(1, 1, 8, 8))):
        traced = torch.fx.symbolic_trace(model.eval())
        with torch.no_grad():
            assert torch.equal(traced(x), model(x))
        with pytest.raises(ModelError):  # the input checks survive tracing
            traced(torch.zeros(1, 5, 5, 5))


# -- a Hugging Face causal LM as a plain module ------------------------------------------------------

def test_hf_wrapper_needs_an_output_embedding():
    with pytest.raises(ModelError, match="no output embedding"):
        hf_causal_lm(nn.Linear(4, 4))


def test_hf_causal_lm_returns_logits():
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(vocab_size=50, n_positions=16, n_embd=16, n_layer=1, n_head=2,
                                     bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    model = hf_causal_lm(transformers.GPT2LMHeadModel(config)).eval()
    x = torch.randint(0, 50, (2, 7), generator=gen(0))
    with torch.no_grad():
        out = model(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 7, 50)
    assert model.shrinkbench_classifier == "model.lm_head" == classifier_name(model)
    assert "model.lm_head.weight" not in prunable_parameters(model)
    report = count_macs(model, x[:1])
    assert report.dense == gpt_macs(7, 16, 1, 50) and report.uncounted == {}  # the same layout as ours
