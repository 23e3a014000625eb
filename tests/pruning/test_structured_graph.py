"""Channel dependency groups: coupling through residuals, concatenation, depthwise convolutions,
flatten, and the places that must pin channels; removal keeps outputs; untraceable models refused."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from shrinkbench.errors import PruningError
from shrinkbench.pruning.structured import dependency_graph, remove_channels, structured_mask


def _groups_by_producers(model, x):
    graph = dependency_graph(model, x)
    return graph, {g.producers: g for g in graph.groups}


def _zero(model, x, pick):
    """Zero the classes `pick(graph)` returns with structured masks; the masked model and graph."""
    graph = dependency_graph(model, x)
    structured_mask(model, graph, pick(graph))
    return graph


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.a = nn.Conv2d(8, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 8, 3, padding=1)
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        x = F.relu(self.bn(self.stem(x)))
        y = self.b(F.relu(self.a(x)))
        x = F.relu(x + y)
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


def test_residual_addition_couples_both_producers_and_every_consumer():
    model = Residual()
    x = torch.randn(1, 3, 6, 6)
    graph, groups = _groups_by_producers(model, x)
    stream = groups[("b", "stem")]
    assert stream.size == 8 and stream.has_norm
    keys = set(stream.keys)
    assert {("stem.weight", 0), ("stem.bias", 0), ("bn.weight", 0), ("b.weight", 0), ("a.weight", 1),
            ("head.weight", 1)} <= keys
    assert groups[("a",)].size == 4
    # channel 3 of the stream is stem's out 3, b's out 3, a's in 3 and head's in 3, together
    cls = stream.classes[3]
    places = {(p, d): i.tolist() for p, d, i in graph.classes[cls]}
    assert places[("stem.weight", 0)] == [3] and places[("b.weight", 0)] == [3]
    assert places[("a.weight", 1)] == [3] and places[("head.weight", 1)] == [3]

    _zero(model, x, lambda g: [stream.classes[1], stream.classes[3], groups[("a",)].classes[0]])
    slim = remove_channels(model, x)  # raises when outputs differ
    assert (slim.stem.out_channels, slim.b.out_channels, slim.a.in_channels) == (6, 6, 6)
    assert slim.a.out_channels == 3 and slim.b.in_channels == 3 and slim.bn.num_features == 6
    assert slim.head.in_features == 6
    kept = [0, 2, 4, 5, 6, 7]
    assert torch.equal(slim.head.weight, model.head.weight[:, kept])
    assert torch.equal(slim.bn.running_mean, model.bn.running_mean[kept])


class Concat(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(2, 3, 1)
        self.c2 = nn.Conv2d(2, 4, 1)
        self.c3 = nn.Conv2d(7, 2, 1)

    def forward(self, x):
        return self.c3(torch.cat([F.relu(self.c1(x)), F.relu(self.c2(x))], dim=1)).mean((2, 3))


def test_concatenation_maps_each_input_to_its_offset():
    model = Concat()
    x = torch.randn(1, 2, 4, 4)
    graph, groups = _groups_by_producers(model, x)
    assert groups[("c1",)].size == 3 and groups[("c2",)].size == 4
    second_of_c2 = groups[("c2",)].classes[1]
    places = {(p, d): i.tolist() for p, d, i in graph.classes[second_of_c2]}
    assert places[("c3.weight", 1)] == [3 + 1]
    _zero(model, x, lambda g: [groups[("c1",)].classes[2], second_of_c2])
    slim = remove_channels(model, x)
    assert slim.c3.in_channels == 5
    assert torch.equal(slim.c3.weight, model.c3.weight[:, [0, 1, 3, 5, 6]])


class Depthwise(nn.Module):
    def __init__(self):
        super().__init__()
        self.expand = nn.Conv2d(3, 6, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(6)
        self.dw = nn.Conv2d(6, 6, 3, padding=1, groups=6, bias=False)
        self.bn2 = nn.BatchNorm2d(6)
        self.project = nn.Conv2d(6, 4, 1)
        self.grouped = nn.Conv2d(4, 4, 1, groups=2)

    def forward(self, x):
        x = F.relu6(self.bn1(self.expand(x)))
        x = F.relu6(self.bn2(self.dw(x)))
        return self.grouped(self.project(x)).flatten(1)


def test_depthwise_convolution_carries_its_input_channels_and_grouped_ones_pin():
    model = Depthwise()
    x = torch.randn(1, 3, 5, 5)
    graph, groups = _groups_by_producers(model, x)
    hidden = groups[("dw", "expand")]
    assert hidden.size == 6
    assert {("dw.weight", 0), ("bn2.weight", 0), ("project.weight", 1)} <= set(hidden.keys)
    # a grouped (non-depthwise) convolution pins its input: project's channels cannot go
    assert not any(("project.weight", 0) in g.keys for g in graph.groups)
    for m in (model.bn1, model.bn2):
        m.running_mean.uniform_(-1, 1)
        m.running_var.uniform_(0.5, 2)
    _zero(model, x, lambda g: hidden.classes[:2])
    slim = remove_channels(model, x)
    assert (slim.expand.out_channels, slim.dw.groups, slim.dw.out_channels, slim.project.in_channels) \
        == (4, 4, 4, 4)


class FlattenHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 3 * 3, 2)

    def forward(self, x):
        return self.fc(torch.flatten(F.relu(self.conv(x)), 1))


def test_flatten_into_a_linear_takes_each_channels_positions():
    model = FlattenHead()
    x = torch.randn(1, 1, 5, 5)
    graph, groups = _groups_by_producers(model, x)
    cls = groups[("conv",)].classes[1]
    places = {(p, d): i.tolist() for p, d, i in graph.classes[cls]}
    assert places[("fc.weight", 1)] == list(range(9, 18))
    _zero(model, x, lambda g: [cls])
    slim = remove_channels(model, x)
    assert slim.fc.in_features == 27
    assert torch.equal(slim.fc.weight, torch.cat([model.fc.weight[:, :9], model.fc.weight[:, 18:]], 1))


class Pins(nn.Module):
    def __init__(self, how):
        super().__init__()
        self.how = how
        self.c1 = nn.Conv2d(2, 4, 1)
        self.c2 = nn.Conv2d(4, 4, 1)
        self.c3 = nn.Conv2d(4, 3, 1)

    def forward(self, x):
        y = self.c1(x)
        if self.how == "sigmoid":
            y = torch.sigmoid(y)
        elif self.how == "constant":
            y = y + 1.0
        elif self.how == "pad":
            y = F.pad(y, (0, 0, 0, 0, 0, 2))[:, :4]
        elif self.how == "view":
            y = y.view(1, 4, -1).view(1, 4, 3, 3)
        y = self.c3(F.relu(self.c2(y)))
        return y.mean((2, 3))


@pytest.mark.parametrize("how", ["sigmoid", "constant", "pad"])
def test_operators_that_do_not_keep_a_zero_channel_zero_pin_it(how):
    graph, groups = _groups_by_producers(Pins(how), torch.randn(1, 2, 3, 3))
    assert ("c1",) not in groups  # pinned: removing it would change the outputs
    assert ("c2",) in groups  # the next layer is free
    assert graph.pinned


def test_a_reshape_with_a_literal_channel_count_pins_and_outputs_are_pinned():
    graph, groups = _groups_by_producers(Pins("view"), torch.randn(1, 2, 3, 3))
    assert ("c1",) not in groups  # view(1, 4, -1) would break with fewer channels
    assert ("c3",) not in groups  # c3 makes the model's output


class ViewHead(FlattenHead):
    def forward(self, x):
        y = F.relu(self.conv(x))
        return self.fc(y.view(y.size(0), -1))


def test_a_flattening_view_sized_by_the_tensor_is_followed():
    model = ViewHead()
    x = torch.randn(1, 1, 5, 5)
    graph, groups = _groups_by_producers(model, x)
    assert ("conv",) in groups
    _zero(model, x, lambda g: groups[("conv",)].classes[:1])
    assert remove_channels(model, x).fc.in_features == 27


def test_ignored_modules_keep_their_channels():
    model = Residual()
    graph = dependency_graph(model, torch.randn(1, 3, 6, 6), ignore=["a"])
    assert all(g.producers != ("a",) for g in graph.groups)


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = Gate()

    def forward(self, x):
        return self.inner(x)


class Gate(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        if x.sum() > 0:
            return self.fc(x)
        return x


def test_an_untraceable_model_gets_one_line_naming_the_module():
    with pytest.raises(PruningError) as info:
        dependency_graph(DataDependent(), torch.randn(1, 4))
    text = str(info.value)
    assert "'inner'" in text and "Gate" in text and "\n" not in text


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 6)
        self.b = nn.Linear(6, 3)

    def forward(self, x):
        h = F.relu(self.a(x))
        return self.b(h) + F.linear(h, self.b.weight)  # b's weight also used directly


def test_a_parameter_used_directly_by_the_forward_keeps_its_shape():
    graph, groups = _groups_by_producers(Tied(), torch.randn(1, 4))
    assert ("a",) not in groups  # its channels feed a weight that the forward uses by hand


class Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 6)
        self.b = nn.Linear(6, 6)
        self.out = nn.Linear(6, 2)

    def forward(self, x):
        h = F.relu(self.a(x))
        h = F.relu(self.b(h))
        h = F.relu(self.b(h))  # the same layer twice: its input and output channels are one
        return self.out(h)


def test_a_module_called_twice_shares_its_channels():
    model = Shared()
    x = torch.randn(1, 4)
    graph, groups = _groups_by_producers(model, x)
    assert len(graph.groups) == 1 and set(graph.groups[0].producers) == {"a", "b"}
    _zero(model, x, lambda g: g.groups[0].classes[:2])
    slim = remove_channels(model, x)
    assert slim.b.weight.shape == (4, 4) and slim.a.out_features == 4


class Block(nn.Module):
    """A pre-norm transformer block: self-attention and an MLP, each around a residual."""

    def __init__(self, d=16, heads=4, batch_first=True, use_weights=False):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=batch_first)
        self.fc1, self.fc2 = nn.Linear(d, 32), nn.Linear(32, d)
        self.use_weights = use_weights

    def forward(self, x):
        y = self.ln1(x)
        out, weights = self.attn(y, y, y, need_weights=self.use_weights)
        x = x + out
        if self.use_weights:
            x = x + weights.mean() * 0
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class Encoder(nn.Module):
    def __init__(self, **kw):
        super().__init__()
        self.embed = nn.Linear(6, 16)
        self.blocks = nn.Sequential(Block(**kw), Block(**kw))
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.blocks(self.embed(x)).mean(1 if self.blocks[0].attn.batch_first else 0))


@pytest.mark.parametrize("batch_first", [True, False])
def test_attention_heads_are_pruned_whole_and_the_model_dimension_stays(batch_first, tmp_path):
    from shrinkbench.metrics import count_macs, count_parameters
    from shrinkbench.pruning import prune
    from shrinkbench.pruning.structured import load_slim, save_slim

    torch.manual_seed(0)
    model = Encoder(batch_first=batch_first).eval()
    x = torch.randn(2, 7, 6) if batch_first else torch.randn(7, 2, 6)
    one = x[:1] if batch_first else x[:, :1]
    graph, groups = _groups_by_producers(model, one)
    heads = groups[("blocks.0.attn",)]
    assert heads.size == 4  # one class per head: its q, k, v rows and its out_proj columns
    places = {(p, d): i.tolist() for p, d, i in graph.classes[heads.classes[1]]}
    assert places[("blocks.0.attn.in_proj_weight", 0)] == [*range(4, 8), *range(20, 24), *range(36, 40)]
    assert places[("blocks.0.attn.out_proj.weight", 1)] == list(range(4, 8))
    assert not any(p.endswith("ln1.weight") for g in graph.groups for p, _ in g.keys)  # LayerNorm pins
    dense = count_macs(model, one).dense
    result = prune(model, "global_channel_l2", 2, inputs=x, target="speedup", example_input=one)
    slim = remove_channels(model, one)
    if batch_first:  # count_macs takes dim 0 as the batch: it counts one token of a (T, N, E) input
        assert result.speedup == pytest.approx(dense / count_macs(slim, one).dense)  # attention counted
    assert count_parameters(slim).total == result.nonzero
    path = tmp_path / "slim.pt"
    save_slim(slim, path)
    loaded = load_slim(path, Encoder(batch_first=batch_first)).eval()
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-5)


def test_attention_whose_weights_are_used_keeps_its_heads():
    graph, groups = _groups_by_producers(Encoder(use_weights=True).eval(), torch.randn(1, 7, 6))
    assert ("blocks.0.attn",) not in groups and ("blocks.0.fc1",) in groups
