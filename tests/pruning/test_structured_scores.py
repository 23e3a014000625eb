"""Channel scores against direct computations on small models."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from shrinkbench.pruning.scores import ScoreContext
from shrinkbench.pruning.structured import (bn_scale_score, channel_l1_score, channel_l2_score,
                                            channel_random_score, channel_taylor_score,
                                            dependency_graph)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.mid = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        x = F.relu(self.bn(self.stem(x)))
        x = F.relu(x + self.mid(x))  # stem and mid make the same channels
        return self.head(x.mean((2, 3)))


def _setup():
    model = Net().eval()
    x = torch.randn(5, 2, 6, 6, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 1, 0])
    graph = dependency_graph(model, x[:1])
    (group,) = graph.groups
    ctx = ScoreContext(model=model, batches=[(x, y)], loss_fn=nn.CrossEntropyLoss(), seed=3)
    return model, graph, group, ctx, x, y


def test_norm_scores_sum_the_coupled_filters():
    model, graph, group, ctx, _, _ = _setup()
    assert set(group.producers) == {"mid", "stem"}
    l1 = channel_l1_score(graph, ctx, normalize=False)[group.index]
    want = model.stem.weight.abs().sum((1, 2, 3)) + model.mid.weight.abs().sum((1, 2, 3))
    assert torch.allclose(l1.float(), want.detach(), rtol=1e-6)
    l2 = channel_l2_score(graph, ctx, normalize=False)[group.index]
    want = (model.stem.weight.pow(2).sum((1, 2, 3)) + model.mid.weight.pow(2).sum((1, 2, 3))).sqrt()
    assert torch.allclose(l2.float(), want.detach(), rtol=1e-6)
    normalized = channel_l1_score(graph, ctx)[group.index]
    assert torch.allclose(normalized, l1 / l1.mean())


def test_bn_scale_is_the_absolute_gamma():
    model, graph, group, ctx, _, _ = _setup()
    model.bn.weight.data = torch.tensor([0.5, -2.0, 0.1, 1.0])
    assert torch.allclose(bn_scale_score(graph, ctx)[group.index].float(), torch.tensor([0.5, 2.0, 0.1, 1.0]))


def test_taylor_is_activation_times_gradient_per_example_and_channel():
    model, graph, group, ctx, x, y = _setup()
    got = channel_taylor_score(graph, ctx, normalize=False)[group.index]
    # by hand: the outputs of stem and mid, their gradients, |mean over positions| per example
    acts = {}
    h1 = model.stem.register_forward_hook(lambda m, a, o: acts.__setitem__("stem", o))
    h2 = model.mid.register_forward_hook(lambda m, a, o: acts.__setitem__("mid", o))
    loss = F.cross_entropy(model(x), y)
    h1.remove()
    h2.remove()
    grads = torch.autograd.grad(loss, [acts["stem"], acts["mid"]])
    want = sum((a * g).mean((2, 3)).abs().sum(0) for a, g in zip([acts["stem"], acts["mid"]], grads))
    assert torch.allclose(got.float(), want.detach(), rtol=1e-5)
    assert all(p.grad is None for p in model.parameters())  # the score left no gradients behind


def test_random_scores_follow_the_seed():
    _, graph, group, ctx, _, _ = _setup()
    a = channel_random_score(graph, ctx)[group.index]
    b = channel_random_score(graph, ctx)[group.index]
    ctx.seed = 4
    c = channel_random_score(graph, ctx)[group.index]
    assert torch.equal(a, b) and not torch.equal(a, c)
