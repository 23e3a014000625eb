"""SNIP, GraSP and SynFlow: scores by hand, against direct computations, and through prune()."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from pruning_helpers import SmallConvNet, conv_batch, pruned_entries_zero, train
from torch import nn
from torch.func import functional_call

from shrinkbench.errors import PruningError
from shrinkbench.pruning import STRATEGIES, ScoreContext, masked_parameters, prune
from shrinkbench.pruning.init_scores import grasp_score, snip_score, synflow_score

X, Y = conv_batch()
mse = nn.functional.mse_loss


def linear_net(*weights: list[list[float]], relu: bool = False) -> nn.Sequential:
    """Bias-free Linear layers with the given weight matrices (optionally ReLU between them)."""
    layers: list[nn.Module] = []
    for i, w in enumerate(weights):
        t = torch.tensor(w, dtype=torch.float32)
        layer = nn.Linear(t.shape[1], t.shape[0], bias=False)
        with torch.no_grad():
            layer.weight.copy_(t)
        if i and relu:
            layers.append(nn.ReLU())
        layers.append(layer)
    return nn.Sequential(*layers)


def weights_of(model: nn.Module) -> dict[str, nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if n.endswith("weight")}


# ---- SNIP ----

def test_snip_by_hand_gradients_summed_before_the_absolute_value() -> None:
    w1, w2 = [[1.0, 0.5], [-1.0, 2.0]], [[0.5, -1.0]]
    model = linear_net(w1, w2)
    batches = [(torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0]])),
               (torch.tensor([[-1.0, -2.0]]), torch.tensor([[3.0]]))]
    # batch 1: h = W1 x = (2, 3), y = 0.5*2 - 3 = -2, dL/dy = 2(y - t) = -6
    #   dL/dW2 = -6 * h = (-12, -18); dL/dh = -6 * W2 = (-3, 6); dL/dW1 = outer((-3, 6), (1, 2))
    # batch 2: h = (-2, -3), y = -1 + 3 = 2, dL/dy = 2(2 - 3) = -2
    #   dL/dW2 = -2 * h = (4, 6); dL/dh = -2 * W2 = (-1, 2); dL/dW1 = outer((-1, 2), (-1, -2))
    g1 = [[-3 * 1 + -1 * -1, -3 * 2 + -1 * -2], [6 * 1 + 2 * -1, 6 * 2 + 2 * -2]]  # [[-2,-4],[4,8]]
    g2 = [[-12 + 4, -18 + 6]]                                                      # [[-8, -12]]
    want1 = [[abs(w1[i][j] * g1[i][j]) for j in range(2)] for i in range(2)]       # [[2,2],[4,16]]
    want2 = [[abs(w2[0][j] * g2[0][j]) for j in range(2)]]                         # [[4, 12]]
    scores = snip_score(weights_of(model), ScoreContext(model, batches=batches, loss_fn=mse))
    assert scores["0.weight"].tolist() == want1 == [[2, 2], [4, 16]]
    assert scores["1.weight"].tolist() == want2 == [[4, 12]]
    # per-batch magnitudes (global_gradient) differ here: |0.5*-12| + |0.5*4| = 8, not 4
    assert STRATEGIES.get("SNIP").score is snip_score


def test_snip_equals_w_times_grad_and_restores_the_model() -> None:
    model = SmallConvNet(3)
    model.train()
    ref = copy.deepcopy(model)
    params = {n: p for n, p in model.named_parameters() if n.endswith("weight") and "bn" not in n}
    sentinel = {n: torch.full_like(p, 3.0) for n, p in model.named_parameters()}
    for n, p in model.named_parameters():
        p.grad = sentinel[n].clone()
    model.fc1.weight.requires_grad_(False)
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    scores = snip_score(params, ScoreContext(model, batches=[(X, Y)]))
    nn.functional.cross_entropy(ref(X), Y).backward()
    for name, p in ref.named_parameters():
        if name in params:
            torch.testing.assert_close(scores[name], (p.detach() * p.grad).abs())
    assert all(torch.equal(p.grad, sentinel[n]) for n, p in model.named_parameters())
    assert not model.fc1.weight.requires_grad and model.conv1.weight.requires_grad
    assert all(torch.equal(b, buffers[n]) for n, b in model.named_buffers())
    assert model.training


# ---- GraSP ----

@pytest.mark.parametrize("temperature", [1.0, 2.0, 200.0])
def test_grasp_by_hand_on_a_scalar_chain(temperature: float) -> None:
    a, b, x, t = 2.0, -1.0, 1.0, 1.0
    model = linear_net([[a]], [[b]])
    # y = a*b*x / T; L = (y - t)^2. With u = x / T: r = a*b*u - t,
    # g = (2 r b u, 2 r a u); H = [[2 b^2 u^2, 2 a b u^2 + 2 r u], [same, 2 a^2 u^2]]
    u = x / temperature
    r = a * b * u - t
    g_a, g_b = 2 * r * b * u, 2 * r * a * u
    h_aa, h_bb, h_ab = 2 * b * b * u * u, 2 * a * a * u * u, 2 * a * b * u * u + 2 * r * u
    hg_a, hg_b = h_aa * g_a + h_ab * g_b, h_ab * g_a + h_bb * g_b
    if temperature == 1.0:  # the numbers: r = -3, g = (6, -12), H = [[2, -10], [-10, 8]]
        assert (hg_a, hg_b) == (132.0, -156.0)
    ctx = ScoreContext(model, batches=[(torch.tensor([[x]]), torch.tensor([[t]]))], loss_fn=mse)
    scores = grasp_score(weights_of(model), ctx, temperature=temperature)
    assert scores["0.weight"].item() == pytest.approx(a * hg_a, rel=1e-5)
    assert scores["1.weight"].item() == pytest.approx(b * hg_b, rel=1e-5)


def test_grasp_default_temperature_is_the_authors_200() -> None:
    assert STRATEGIES.get("GraSP").option_defaults() == {"temperature": 200.0}


def test_grasp_matches_autograd_hvp_on_two_batches() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()
    gen = torch.Generator().manual_seed(1)
    batches = [(torch.randn(4, 5, generator=gen, dtype=torch.float64), torch.tensor([0, 2, 1, 2])),
               (torch.randn(3, 5, generator=gen, dtype=torch.float64), torch.tensor([1, 1, 0]))]
    params = weights_of(model)
    names = list(params)
    temperature = 3.0

    def loss(*ws: torch.Tensor) -> torch.Tensor:
        total = 0
        for x, y in batches:
            out = functional_call(model, dict(zip(names, ws)), (x,))
            total = total + nn.functional.cross_entropy(out / temperature, y)
        return total

    ws = tuple(p.detach() for p in params.values())
    g = torch.autograd.functional.jacobian(loss, ws)
    _, hg = torch.autograd.functional.hvp(loss, ws, tuple(g))
    scores = grasp_score(params, ScoreContext(model, batches=batches), temperature=temperature)
    for name, w, h in zip(names, ws, hg):
        torch.testing.assert_close(scores[name], (w * h).float())
    assert all(p.grad is None for p in model.parameters())


# ---- SynFlow ----

W1 = [[-0.5, 0.25], [4.0, 3.0], [-1.5, 1.0]]   # 3 x 2
W2 = [[0.25, 0.25, 0.5], [1.5, 2.0, 2.5]]      # 2 x 3 (no ties among the scores below)


def synflow_by_hand(w1: list[list[float]], w2: list[list[float]]) -> tuple[list, list]:
    """R = 1^T |W2| |W1| 1: dR/dW1[i][j] = sum_k |W2[k][i]|, dR/dW2[k][i] = sum_j |W1[i][j]|."""
    col = [sum(abs(w2[k][i]) for k in range(len(w2))) for i in range(len(w1))]
    row = [sum(abs(v) for v in w1[i]) for i in range(len(w1))]
    s1 = [[abs(w1[i][j]) * col[i] for j in range(len(w1[0]))] for i in range(len(w1))]
    s2 = [[abs(w2[k][i]) * row[i] for i in range(len(w1))] for k in range(len(w2))]
    return s1, s2


def test_synflow_one_shot_by_hand() -> None:
    model = linear_net(W1, W2, relu=True)  # all positive after |.|: the ReLU changes nothing
    s1, s2 = synflow_by_hand(W1, W2)
    # column sums of |W2|: 1.75, 2.25, 3; row sums of |W1|: 0.75, 7, 2.5
    assert s1[0] == [0.5 * 1.75, 0.25 * 1.75] and s2[1] == [1.5 * 0.75, 2.0 * 7, 2.5 * 2.5]
    data = torch.randn(5, 2)  # only its shape (one example: 2 features) is used
    ctx = ScoreContext(model, batches=[(data, None)])
    scores = synflow_score(weights_of(model), ctx, rounds=1)
    assert scores["0.weight"].tolist() == s1
    assert scores["2.weight"].tolist() == s2
    assert scores["0.weight"].dtype == torch.float32


def test_synflow_abs_of_buffers_and_eval_mode_by_hand() -> None:
    lin1 = nn.Linear(2, 3, bias=False)
    bn = nn.BatchNorm1d(3)
    lin2 = nn.Linear(3, 1, bias=False)
    w1, w2 = [[1.0, -2.0], [0.5, 0.5], [-1.0, 3.0]], [-1.0, 2.0, 0.5]
    gamma, beta = [-2.0, 1.0, 0.5], [0.5, -1.0, 2.0]
    mean, var = [-1.0, 0.5, 0.25], [4.0, 1.0, 0.25]
    with torch.no_grad():
        lin1.weight.copy_(torch.tensor(w1))
        lin2.weight.copy_(torch.tensor([w2]))
        bn.weight.copy_(torch.tensor(gamma))
        bn.bias.copy_(torch.tensor(beta))
        bn.running_mean.copy_(torch.tensor(mean))
        bn.running_var.copy_(torch.tensor(var))
    model = nn.Sequential(lin1, bn, lin2).train()  # train mode on one example would fail in BN
    # eval mode, everything |.|: z_i = (sum_j |W1_ij| - |mean_i|) / sqrt(|var_i| + eps) |g_i| + |b_i|
    eps = bn.eps
    scale = [abs(gamma[i]) / math.sqrt(abs(var[i]) + eps) for i in range(3)]
    z = [(sum(abs(v) for v in w1[i]) - abs(mean[i])) * scale[i] + abs(beta[i]) for i in range(3)]
    want1 = [[abs(w1[i][j]) * abs(w2[i]) * scale[i] for j in range(2)] for i in range(3)]
    want2 = [[abs(w2[i]) * z[i] for i in range(3)]]
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    params = {"0.weight": lin1.weight, "2.weight": lin2.weight}
    scores = synflow_score(params, ScoreContext(model, batches=[(torch.zeros(8, 2), None)]), rounds=1)
    torch.testing.assert_close(scores["0.weight"], torch.tensor(want1))
    torch.testing.assert_close(scores["2.weight"], torch.tensor(want2))
    assert model.training and all(torch.equal(b, buffers[n]) for n, b in model.named_buffers())
    assert lin1.weight.tolist() == w1 and lin1.weight.grad is None


def top_k(scores: dict[str, list[list[float]]], k: int) -> dict[str, list[list[bool]]]:
    """The k highest entries over all tensors (the test's values have no ties)."""
    flat = sorted((v for s in scores.values() for row in s for v in row), reverse=True)
    cut = flat[k - 1]
    return {n: [[v >= cut for v in row] for row in s] for n, s in scores.items()}


def test_synflow_two_rounds_by_hand() -> None:
    model = linear_net(W1, W2, relu=True)
    total = 6 + 6
    result = prune(model, "synflow", total / 3, inputs=torch.ones(1, 2), include_classifier=True,
                   options={"rounds": 2})
    keep = 3
    assert result.nonzero == keep
    # round 1: density (3/12)^(1/2) = 1/2 -> keep 6 of the one-shot scores
    s1, s2 = synflow_by_hand(W1, W2)
    first = top_k({"0.weight": s1, "1.weight": s2}, round(12 * (keep / 12) ** 0.5))
    # round 2: the same formula on the weights left (removed ones are 0), then the top 3
    m1 = [[W1[i][j] if first["0.weight"][i][j] else 0.0 for j in range(2)] for i in range(3)]
    m2 = [[W2[k][i] if first["1.weight"][k][i] else 0.0 for i in range(3)] for k in range(2)]
    r1, r2 = synflow_by_hand(m1, m2)
    r1 = [[v if first["0.weight"][i][j] else -math.inf for j, v in enumerate(row)]
          for i, row in enumerate(r1)]
    r2 = [[v if first["1.weight"][k][i] else -math.inf for i, v in enumerate(row)]
          for k, row in enumerate(r2)]
    final = top_k({"0.weight": r1, "1.weight": r2}, keep)
    assert model[0].weight_mask.bool().tolist() == final["0.weight"]
    assert model[2].weight_mask.bool().tolist() == final["1.weight"]
    one_shot = top_k({"0.weight": s1, "1.weight": s2}, keep)
    assert final != one_shot  # the second round changed the choice in this case


def test_synflow_one_round_equals_one_shot_scores() -> None:
    model = SmallConvNet(4)
    params = {n: p for n, p in model.named_parameters() if n.endswith("weight") and "bn" not in n}
    direct = synflow_score(params, ScoreContext(model, batches=[(X, Y)]), rounds=1)
    # the same by a plain computation: float64 copy in eval mode, |state|, grad of sum(out(ones))
    ref = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for v in ref.state_dict().values():
            if v.is_floating_point():
                v.abs_()
    ref(torch.ones(1, 3, 6, 6, dtype=torch.float64)).sum().backward()
    for name, p in ref.named_parameters():
        if name in params:
            torch.testing.assert_close(direct[name], (p * p.grad).abs().float())


def snapshot(model: nn.Module) -> dict:
    return {
        "params": {n: p.detach().clone() for n, p in model.named_parameters()},
        "grads": {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()},
        "flags": {n: p.requires_grad for n, p in model.named_parameters()},
        "buffers": {n: b.clone() for n, b in model.named_buffers()},
        "training": [m.training for m in model.modules()],
        "dtypes": {n: p.dtype for n, p in model.named_parameters()},
    }


@pytest.mark.parametrize("allocation", [None, "erk", "uniform"])
@pytest.mark.parametrize("strategy", ["SNIP", "GraSP", "SynFlow"])
@pytest.mark.parametrize("compression", [3, 11.5])
def test_prune_exact_masks_hold_and_model_untouched(strategy: str, allocation: str | None,
                                                    compression: float) -> None:
    model = SmallConvNet(5).train()
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.125)
    model.conv2.weight.requires_grad_(False)
    before = snapshot(model)
    options = {"rounds": 20} if strategy == "SynFlow" else {}
    result = prune(model, strategy, compression, inputs=X, targets=Y, allocation=allocation,
                   options=options)
    total = sum(p.numel() for p in model.parameters())
    assert result.nonzero == math.floor(total / compression)
    assert result.allocation == {None: "global", "uniform": "layerwise"}.get(allocation, allocation)
    after = snapshot(model)
    masks = {n: m for n, _, _, m in masked_parameters(model)}
    for name, value in before["params"].items():
        want = value * masks[name] if name in masks else value
        assert torch.equal(after["params"][name], want), name
    for key in ("flags", "training", "dtypes"):
        assert after[key] == before[key], key
    assert all(torch.equal(after["grads"][n], g) for n, g in before["grads"].items())
    assert all(torch.equal(after["buffers"][n], b) for n, b in before["buffers"].items())
    assert pruned_entries_zero(model)
    train(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), steps=2)
    assert pruned_entries_zero(model)


@pytest.mark.parametrize("strategy", ["snip", "grasp", "synflow"])
def test_deterministic(strategy: str) -> None:
    a, b = SmallConvNet(6), SmallConvNet(6)
    prune(a, strategy, 7, inputs=X, targets=Y)
    prune(b, strategy, 7, inputs=X, targets=Y)
    for (_, _, _, ma), (_, _, _, mb) in zip(masked_parameters(a), masked_parameters(b)):
        assert torch.equal(ma, mb)


def test_synflow_on_a_masked_model_only_removes_more() -> None:
    """Rounds start from what is alive; at a high compression no layer is emptied."""
    model = SmallConvNet(7)
    prune(model, "synflow", 4, inputs=X)
    first = {n: m.clone() for n, _, _, m in masked_parameters(model)}
    result = prune(model, "synflow", 15, inputs=X, options={"rounds": 10})
    assert result.nonzero == math.floor(result.total / 15)
    assert all(int(k) > 0 for k in result.kept.values())
    for name, _, _, mask in masked_parameters(model):
        assert bool((mask <= first[name]).all())


def test_synflow_with_layer_rates() -> None:
    model = SmallConvNet(8)
    result = prune(model, "synflow", 5, inputs=X, allocation="layerwise", include_classifier=True,
                   layer_rates={"fc2.weight": 0.5}, options={"rounds": 5})
    assert result.nonzero == math.floor(result.total / 5)


def test_option_and_data_refusals() -> None:
    model = SmallConvNet(0)
    for bad in (0, -3, 1.5, True, "10"):
        with pytest.raises(PruningError, match="option rounds must be an integer >= 1"):
            prune(model, "synflow", 4, inputs=X, options={"rounds": bad})
    for bad in (0, -1.0, float("nan"), float("inf"), "200", False):
        with pytest.raises(PruningError, match="option temperature must be a finite number > 0"):
            prune(model, "grasp", 4, inputs=X, targets=Y, options={"temperature": bad})
    with pytest.raises(PruningError, match="needs one example batch for the input shape"):
        prune(model, "synflow", 4)
    with pytest.raises(PruningError, match="needs targets"):
        prune(model, "snip", 4, inputs=X)
    with pytest.raises(PruningError, match="through prune"):
        synflow_score(dict(model.named_parameters()), ScoreContext(model, batches=[(X, None)]))
    assert not list(masked_parameters(model))


def test_synflow_scores_beyond_float32_are_scaled_by_a_power_of_two() -> None:
    layers = [nn.Linear(4, 4, bias=False) for _ in range(20)]
    with torch.no_grad():
        for layer in layers:
            layer.weight.fill_(100.0)
        layers[0].weight[1, 2] = 200.0
    model = nn.Sequential(*layers)
    params = {f"{i}.weight": layer.weight for i, layer in enumerate(layers)}
    scores = synflow_score(params, ScoreContext(model, batches=[(torch.ones(1, 4), None)]), rounds=1)
    # R = 4 * 400^19 * (row sums of layer 0), about 1e52: float32 would hold only inf
    first = scores["0.weight"]
    assert all(bool(torch.isfinite(s).all()) and float(s.min()) > 0 for s in scores.values())
    assert float(first.max()) <= 1.0 and first.argmax().item() == 1 * 4 + 2
    # every weight of layer 0 scores |w| * (sum of the columns below): ratios are exact
    assert first[1, 2].item() / first[0, 0].item() == pytest.approx(2.0)
