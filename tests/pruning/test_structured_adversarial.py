"""Adversarial cases for channel pruning: user models that the tracer mis-models, counts that do not
match the metrics, and slim files that load when they should be refused.

Each case was a failure found by an adversarial review and is fixed; the contract under test is that
channel removal never silently changes a model's function (outputs equal the masked model's on any
input, or the channel is pinned, or a one-line PruningError), and that the counts prune() reports
equal what metrics.count_parameters / count_macs give for the slim model.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from shrinkbench.errors import CheckpointError, PruningError, ShrinkBenchError
from shrinkbench.metrics import count_macs, count_parameters
from shrinkbench.pruning import prune
from shrinkbench.pruning.structured import dependency_graph, load_slim, remove_channels, save_slim


def _gen(seed: int = 0) -> None:
    torch.manual_seed(seed)


def _prune_remove_compare(model: nn.Module, x: torch.Tensor, amount: float = 2.0,
                          strategy: str = "global_channel_l1", **kw) -> None:
    """The contract: prune refuses in one line, or removal refuses in one line, or the slim model
    computes what the masked model computes on fresh inputs (not only the example)."""
    try:
        result = prune(model, strategy, amount, inputs=x, **kw)
        slim = remove_channels(model, x[:1], graph=result.graph)
    except ShrinkBenchError:
        return
    model.eval()
    slim.eval()
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for _ in range(3):
            other = torch.randn(x.shape, generator=gen)
            torch.testing.assert_close(slim(other), model(other), rtol=1e-4, atol=1e-5)
    assert count_parameters(slim).total == result.nonzero


# -- the tracer -----------------------------------------------------------------------------------

class LayerScale(nn.Module):
    """A learned per-channel scale (ReZero / LayerScale / SkipInit style) on prunable channels."""

    def __init__(self) -> None:
        super().__init__()
        _gen()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.alpha = nn.Parameter(torch.rand(1, 8, 1, 1) + 0.5)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = F.relu(self.c1(x)) * self.alpha
        return self.fc(F.relu(self.c2(x)).mean((2, 3)))


def test_a_parameter_multiplied_into_channels_pins_them_or_is_refused_in_one_line():
    _prune_remove_compare(LayerScale(), torch.randn(4, 3, 8, 8))


class Maxout(nn.Module):
    """Maxout units: F.max_pool1d over a Linear's features (pairs of features -> one unit)."""

    def __init__(self) -> None:
        super().__init__()
        _gen()
        self.fc1 = nn.Linear(10, 16)
        self.fc2 = nn.Linear(8, 16)
        self.out = nn.Linear(8, 3)

    def forward(self, x):
        x = F.max_pool1d(self.fc1(x), 2)
        x = F.max_pool1d(self.fc2(x), 2)
        return self.out(x)


def test_pooling_over_the_feature_dimension_pins_those_features():
    _prune_remove_compare(Maxout(), torch.randn(4, 10))


class GatedMLP(nn.Module):
    """Channel-last gated MLP: up(x) * sigmoid(gate(x)), then down."""

    def __init__(self) -> None:
        super().__init__()
        _gen()
        self.up = nn.Linear(8, 32)
        self.gate = nn.Linear(8, 32)
        self.down = nn.Linear(32, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.down(self.up(x) * torch.sigmoid(self.gate(x))).mean(1))


def test_gating_by_an_unmodelled_op_on_channel_last_tensors_pins_the_gated_channels():
    _prune_remove_compare(GatedMLP(), torch.randn(2, 5, 8))


class ChunkGLU(nn.Module):
    """GLU written with the Tensor.chunk method."""

    def __init__(self) -> None:
        super().__init__()
        _gen()
        self.fc = nn.Linear(8, 32)
        self.out = nn.Linear(16, 3)

    def forward(self, x):
        a, b = self.fc(x).chunk(2, dim=-1)
        return self.out(a * F.silu(b))


def test_chunk_method_pins_its_input():
    graph = dependency_graph(ChunkGLU(), torch.randn(1, 8))
    assert not any(g.producers == ("fc",) for g in graph.groups)


class FeatureConv(nn.Module):
    """A per-step embedding (channel-last Linear), then a Conv1d that runs along the embedding."""

    def __init__(self) -> None:
        super().__init__()
        _gen()
        self.embed = nn.Linear(6, 16, bias=False)
        self.conv = nn.Conv1d(8, 12, 3, padding=1)
        self.head = nn.Linear(12, 3)

    def forward(self, x):  # x: (N, 8 steps, 6 features)
        h = F.relu(self.conv(F.relu(self.embed(x))))
        return self.head(F.adaptive_avg_pool1d(h, 1).flatten(1))


def test_a_conv_along_tracked_channels_pins_them_and_the_zero_example_check_is_not_fooled():
    model, x = FeatureConv(), torch.randn(4, 8, 6)
    result = prune(model, "global_channel_l1", 1.5, inputs=x)
    try:
        slim = remove_channels(model, torch.zeros(1, 8, 6), graph=result.graph)  # as runner.py does
    except PruningError:
        return
    model.eval()
    slim.eval()
    with torch.no_grad():
        torch.testing.assert_close(slim(x), model(x), rtol=1e-4, atol=1e-5)


class SegHead(nn.Module):
    """A segmentation-style model returning a dict, as torchvision's do."""

    def __init__(self) -> None:
        super().__init__()
        _gen()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return {"out": self.c2(F.relu(self.c1(x)))}


def test_a_dict_output_is_pinned():
    model, x = SegHead(), torch.randn(2, 3, 8, 8)
    prune(model, "global_channel_l1", 1.5, inputs=x)
    with torch.no_grad():
        out = model(x)["out"]
    assert bool((out.abs().sum((0, 2, 3)) > 0).all()), "an output channel was pruned"


class TiedLM(nn.Module):
    """A decoder head tied to an embedding (nanoGPT style), hidden width not behind a norm."""

    def __init__(self, vocab: int = 20, dim: int = 8) -> None:
        super().__init__()
        _gen()
        self.emb = nn.Embedding(vocab, dim)
        self.fc1 = nn.Linear(dim, 16)
        self.fc2 = nn.Linear(16, dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, tokens):
        h = self.fc2(F.relu(self.fc1(self.emb(tokens))))
        return self.head(F.relu(h))


def test_a_weight_tied_to_an_embedding_keeps_the_counts_true():
    model, tokens = TiedLM(), torch.randint(0, 20, (4, 5))
    result = prune(model, "global_channel_l1", 2.0, inputs=tokens)
    slim = remove_channels(model, tokens[:1], graph=result.graph)
    assert slim.head.weight is slim.emb.weight
    assert count_parameters(slim).total == result.nonzero


class WeightNormed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        _gen()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = torch.nn.utils.parametrizations.weight_norm(nn.Conv2d(8, 8, 3, padding=1))
        self.c3 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = F.relu(self.c2(F.relu(self.c1(x))))
        return self.fc(F.relu(self.c3(x)).mean((2, 3)))


def test_a_parametrized_conv_is_pinned_or_refused_in_one_line():
    _prune_remove_compare(WeightNormed(), torch.randn(3, 3, 8, 8), amount=1.5)


class BatchStatsMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        _gen()
        self.fc1 = nn.Linear(6, 16)
        self.bn = nn.BatchNorm1d(16, track_running_stats=False)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc2(F.relu(self.bn(self.fc1(x))))


def test_a_batch_norm_with_batch_statistics_can_be_channel_pruned():
    model, x = BatchStatsMLP(), torch.randn(8, 6)
    result = prune(model, "global_channel_l1", 1.5, inputs=x)
    assert result.channels_kept < result.channels_total


# -- attention ------------------------------------------------------------------------------------

class AttnNoNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        _gen()
        self.inp = nn.Linear(6, 16)
        self.mha = nn.MultiheadAttention(16, 4, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        h = F.relu(self.inp(x))
        a, _ = self.mha(h, h, h)
        return self.head(a.mean(1))


def test_attention_without_norms_prunes_only_what_removal_can_remove():
    model, x = AttnNoNorm(), torch.randn(2, 5, 6)
    result = prune(model, "global_channel_l1", 2.0, inputs=x)
    slim = remove_channels(model, x[:1], graph=result.graph)
    assert count_parameters(slim).total == result.nonzero


class Alibi(nn.Module):
    """Self-attention with a per-head additive mask (ALiBi), shape (N * heads, T, T)."""

    def __init__(self, dim: int = 16, heads: int = 4, tokens: int = 5) -> None:
        super().__init__()
        _gen()
        self.inp = nn.Linear(6, dim)
        self.ln = nn.LayerNorm(dim)
        self.mha = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.head = nn.Linear(dim, 3)
        slopes = torch.tensor([2.0 ** -(i + 1) for i in range(heads)])
        pos = torch.arange(tokens)
        self.register_buffer("bias", -(slopes[:, None, None] * (pos[:, None] - pos[None, :]).abs()))

    def forward(self, x):
        h = self.ln(self.inp(x))
        a, _ = self.mha(h, h, h, attn_mask=self.bias.repeat(x.shape[0], 1, 1), need_weights=False)
        return self.head(self.ln(h + a).mean(1))


def test_heads_with_a_per_head_mask_are_pinned():
    _prune_remove_compare(Alibi(), torch.randn(2, 5, 6), amount=1.3)


class Block(nn.Module):
    def __init__(self, dim: int = 32, heads: int = 8) -> None:
        super().__init__()
        _gen()
        self.inp = nn.Linear(6, dim)
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.mha = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.up, self.down = nn.Linear(dim, 64), nn.Linear(64, dim)
        self.head = nn.Linear(dim, 3)

    def forward(self, x):
        h = self.inp(x)
        a = self.ln1(h)
        h = h + self.mha(a, a, a, need_weights=False)[0]
        h = h + self.down(F.gelu(self.up(self.ln2(h))))
        return self.head(h.mean(1))


def test_ignore_protects_attention_heads():
    model = Block()
    prune(model, "global_channel_l1", 1.5, inputs=torch.randn(2, 40, 6), ignore=["mha"])
    assert not hasattr(model.mha, "in_proj_weight_mask") or bool(model.mha.in_proj_weight_mask.all())


def test_masked_and_slim_mac_counts_agree_for_attention_heads():
    model, x = Block(), torch.randn(2, 40, 6)
    dense = count_macs(model, x[:1]).dense
    result = prune(model, "global_channel_l1", 2.0, inputs=x, target="speedup")
    slim = remove_channels(model, x[:1], graph=result.graph)
    # count_macs of the masked model keeps the score and value products dense (no weight shows
    # the heads gone), so runs count the slim model: it is what prune() reports
    assert dense / count_macs(slim, x[:1]).dense == pytest.approx(result.speedup, rel=1e-6)


# -- counts ---------------------------------------------------------------------------------------

class ConvLSTM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        _gen()
        self.c1 = nn.Conv1d(4, 16, 3, padding=1)
        self.c2 = nn.Conv1d(16, 16, 3, padding=1)
        self.lstm = nn.LSTM(16, 8, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        h = F.relu(self.c2(F.relu(self.c1(x))))
        out, _ = self.lstm(h.transpose(1, 2))
        return self.head(out[:, -1])


class ConvVector(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        _gen()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 8, 3, padding=1)
        self.v = nn.Parameter(torch.randn(64))

    def forward(self, x):
        return torch.matmul(F.relu(self.c2(F.relu(self.c1(x)))).flatten(2), self.v)


@pytest.mark.parametrize("make,shape", [(ConvLSTM, (2, 4, 12)), (ConvVector, (2, 3, 8, 8))])
def test_speedup_reported_by_prune_is_the_one_count_macs_gives(make, shape):
    model, x = make(), torch.randn(*shape)
    dense = count_macs(model, x[:1]).dense
    try:
        result = prune(model, "global_channel_l1", 2.0, inputs=x, target="speedup")
    except PruningError as exc:  # refused, not guessed: an operator nothing here counts
        assert "cannot be counted" in str(exc)
        return
    slim = remove_channels(model, x[:1], graph=result.graph)
    assert result.speedup == pytest.approx(dense / count_macs(slim, x[:1]).dense, rel=1e-6)


# -- ignore= ---------------------------------------------------------------------------------------

def _small():
    _gen()
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 8, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


@pytest.mark.parametrize("pattern", ["3*", "3.weight"])
def test_structured_ignore_takes_the_same_patterns_as_unstructured(pattern):
    model = _small()
    prune(model, "global_channel_l1", 2.0, inputs=torch.randn(2, 3, 8, 8), ignore=[pattern])
    assert not hasattr(model[3], "weight_mask") or bool(model[3].weight_mask.flatten(1).any(1).all())


def test_structured_ignore_refuses_a_name_that_matches_nothing():
    with pytest.raises(PruningError):
        prune(_small(), "global_channel_l1", 2.0, inputs=torch.randn(2, 3, 8, 8), ignore=["nonexistent"])


# -- slim files ------------------------------------------------------------------------------------

def _slim_file(tmp_path):
    model, x = _small(), torch.randn(2, 3, 8, 8)
    result = prune(model, "global_channel_l1", 2.0, inputs=x)
    save_slim(remove_channels(model, x[:1], graph=result.graph), tmp_path / "slim.pt")
    return torch.load(tmp_path / "slim.pt", weights_only=True)


def _hostile(tmp_path, payload):
    torch.save(payload, tmp_path / "hostile.pt")
    return tmp_path / "hostile.pt"


@pytest.mark.parametrize("how", ["non-tensor", "huge"])
def test_hostile_slim_files_are_refused_with_a_checkpoint_error(tmp_path, how):
    payload = _slim_file(tmp_path)
    if how == "non-tensor":
        payload["state_dict"]["0.weight"] = 5
    else:
        payload["architecture"]["9"].update(in_features=10**7, out_features=10**7)
        del payload["state_dict"]["9.weight"]
    with pytest.raises(CheckpointError):
        load_slim(_hostile(tmp_path, payload), _small())


@pytest.mark.parametrize("field,value", [("in_channels", 99), ("groups", 2)])
def test_slim_architecture_that_contradicts_its_tensors_is_refused(tmp_path, field, value):
    payload = _slim_file(tmp_path)
    payload["architecture"]["3"][field] = value
    with pytest.raises(CheckpointError):
        load_slim(_hostile(tmp_path, copy.deepcopy(payload)), _small())


class AuxHead(nn.Module):
    """Deep supervision: an auxiliary head on an intermediate feature, used only while training."""

    def __init__(self) -> None:
        super().__init__()
        _gen()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16, 3)
        self.aux = nn.Linear(8, 3)

    def forward(self, x):
        f = F.relu(self.c1(x))
        out = self.fc(F.relu(self.c2(f)).mean((2, 3)))
        if self.training:
            out = out + 0.4 * self.aux(f.mean((2, 3)))
        return out


def test_a_training_only_branch_is_seen_before_channels_are_removed():
    model, x = AuxHead().eval(), torch.randn(4, 3, 8, 8)
    try:
        result = prune(model, "global_channel_l1", 1.5, inputs=x)
        slim = remove_channels(model, x[:1], graph=result.graph)
    except ShrinkBenchError:
        return
    slim.train()
    slim(x).sum().backward()


# -- second round: after the fixes of 2923512 ------------------------------------------------------

class WeightNormedWide(nn.Module):
    """A weight-normed conv (pinned, unmodelled) carrying most of the MACs."""

    def __init__(self) -> None:
        super().__init__()
        _gen()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = torch.nn.utils.parametrizations.weight_norm(nn.Conv2d(8, 32, 3, padding=1))
        self.c3 = nn.Conv2d(32, 32, 3, padding=1)
        self.fc = nn.Linear(32, 3)

    def forward(self, x):
        x = F.relu(self.c2(F.relu(self.c1(x))))
        return self.fc(F.relu(self.c3(x)).mean((2, 3)))


def test_a_parametrized_conv_still_counts_its_macs():
    model, x = WeightNormedWide(), torch.randn(3, 3, 8, 8)
    dense = count_macs(model, x[:1]).dense
    result = prune(model, "global_channel_l1", 2.0, inputs=x, target="speedup")
    slim = remove_channels(model, x[:2], graph=result.graph)
    assert result.speedup == pytest.approx(dense / count_macs(slim, x[:1]).dense, rel=1e-6)


def _bilinear_decoder():
    _gen()
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.UpsamplingBilinear2d(scale_factor=2),
                         nn.Conv2d(16, 2, 1))


def test_bilinear_upsampling_does_not_block_a_speedup_target():
    model, x = _bilinear_decoder(), torch.randn(2, 3, 16, 16)
    dense = count_macs(model, x[:1]).dense
    result = prune(model, "global_channel_l1", 1.5, inputs=x, target="speedup")
    slim = remove_channels(model, x[:2], graph=result.graph)
    assert result.speedup == pytest.approx(dense / count_macs(slim, x[:1]).dense, rel=1e-6)


class IdentityView(nn.Module):
    """A defensive identity view written with literal sizes."""

    def __init__(self) -> None:
        super().__init__()
        _gen()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        h = F.relu(self.c1(x)).view(-1, 16, 8, 8)
        return self.fc(F.relu(self.c2(h)).mean((2, 3)))


def test_an_identity_view_with_a_literal_channel_count_pins():
    _prune_remove_compare(IdentityView(), torch.randn(4, 3, 8, 8))


class TrainOnlyStatistic(nn.Module):
    """A training-only term that reads a statistic over the channels (size-agnostic, so the slim
    model runs in training mode, but computes something else than the masked model)."""

    def __init__(self) -> None:
        super().__init__()
        _gen()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        f = F.relu(self.c1(x))
        if self.training:
            f = f + 0.5 * f.mean(1, keepdim=True)
        return self.fc(F.relu(self.c2(f)).mean((2, 3)))


def test_a_training_only_branch_computes_what_the_masked_model_computes():
    model, x = TrainOnlyStatistic().eval(), torch.randn(4, 3, 8, 8)
    try:
        result = prune(model, "global_channel_l1", 1.5, inputs=x)
        slim = remove_channels(model, x[:2], graph=result.graph)
    except ShrinkBenchError:
        return
    model.train()
    slim.train()
    with torch.no_grad():
        torch.testing.assert_close(slim(x), model(x), rtol=1e-4, atol=1e-5)


def test_remove_channels_leaves_the_global_rng_alone():
    _gen()
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Dropout(0.5),
                          nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(8, 3))
    x = torch.randn(2, 3, 8, 8)
    result = prune(model, "global_channel_l1", 1.5, inputs=x)
    before = torch.random.get_rng_state().clone()
    remove_channels(model, x, graph=result.graph)
    assert torch.equal(before, torch.random.get_rng_state())
