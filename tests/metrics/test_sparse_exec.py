"""CSR execution of masked Linear layers: same outputs as the dense masked model, on a copy."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from shrinkbench.errors import ConfigError
from shrinkbench.metrics import CSRLinear, csr_layers, sparse_linear
from shrinkbench.metrics.sparse_exec import weight_sparsity
from shrinkbench.pruning.masks import attach_mask


def random_mask(shape: tuple[int, ...], sparsity: float, seed: int) -> torch.Tensor:
    """A 0/1 mask with exactly round(sparsity * numel) zeros."""
    gen = torch.Generator().manual_seed(seed)
    numel = int(torch.Size(shape).numel())
    mask = torch.ones(numel)
    mask[torch.randperm(numel, generator=gen)[: round(sparsity * numel)]] = 0
    return mask.reshape(shape)


def masked_mlp(bias: bool = True) -> nn.Sequential:
    """Linear layers pruned to 90%, 30% and 0% (unmasked)."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(20, 16, bias=bias), nn.ReLU(), nn.Linear(16, 12, bias=bias), nn.ReLU(),
        nn.Linear(12, 5, bias=bias),
    )
    attach_mask(net[0], "weight", random_mask((16, 20), 0.9, seed=1))
    attach_mask(net[2], "weight", random_mask((12, 16), 0.3, seed=2))
    return net


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(7, 20), (3, 4, 20), (1, 20)])
def test_csr_linear_computes_the_masked_linear(bias, shape):
    linear = masked_mlp(bias)[0]
    csr = CSRLinear.from_linear(linear)
    x = torch.randn(*shape)
    out = csr(x)
    expected = linear(x)
    assert out.shape == expected.shape and out.layout == torch.strided and out.is_contiguous()
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert csr.weight.layout == torch.sparse_csr and csr.nnz == 32  # 10% of 320 kept
    assert not csr.weight.requires_grad and list(csr.parameters()) == []
    assert (csr.bias is None) == (not bias)


@pytest.mark.parametrize("bias", [True, False])
def test_sparse_model_matches_the_dense_masked_model_in_2d_and_3d(bias):
    net = masked_mlp(bias)
    fast = sparse_linear(net)
    assert csr_layers(fast) == ["0"]  # 90% sparse; the 30% one and the unpruned classifier stay dense
    assert type(fast[2]) is nn.Linear and type(fast[4]) is nn.Linear
    for shape in [(6, 20), (2, 3, 20)]:
        x = torch.randn(*shape)
        torch.testing.assert_close(fast(x), net(x), atol=1e-5, rtol=1e-5)


def test_threshold_uses_the_actual_zero_fraction():
    net = masked_mlp()
    assert weight_sparsity(net[0]) == pytest.approx(0.9)
    assert weight_sparsity(net[2]) == pytest.approx(0.3, abs=1 / 192)
    assert csr_layers(sparse_linear(net, min_sparsity=0.3)) == ["0", "2"]
    assert csr_layers(sparse_linear(net, min_sparsity=0.95)) == []
    assert csr_layers(sparse_linear(net, min_sparsity=0.0)) == ["0", "2", "4"]
    with torch.no_grad():
        net[4].weight[:, :9] = 0  # zeros without a mask count too: 9 of 12 columns
    assert csr_layers(sparse_linear(net, min_sparsity=0.75)) == ["0", "4"]


def test_an_unpruned_linear_is_not_replaced_at_the_default():
    net = nn.Sequential(nn.Linear(4, 4))
    assert csr_layers(sparse_linear(net)) == []
    bare = nn.Linear(4, 4)
    copied = sparse_linear(bare)
    assert type(copied) is nn.Linear and copied is not bare


def test_a_bare_pruned_linear_becomes_a_csr_linear():
    linear = masked_mlp()[0]
    fast = sparse_linear(linear)
    assert isinstance(fast, CSRLinear) and csr_layers(fast) == [""]
    x = torch.randn(5, 20)
    torch.testing.assert_close(fast(x), linear(x), atol=1e-5, rtol=1e-5)


def test_the_original_model_is_unchanged():
    net = masked_mlp()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    fast = sparse_linear(net)
    assert fast is not net
    assert [type(m) for m in net] == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]
    after = net.state_dict()
    assert state.keys() == after.keys() and all(torch.equal(state[k], after[k]) for k in state)
    assert fast[2].weight is not net[2].weight


def test_nested_shared_and_non_linear_modules():
    class Head(nn.Linear):
        """A Linear subclass: may compute something else, so it is never replaced."""

    shared = nn.Linear(8, 8)
    attach_mask(shared, "weight", random_mask((8, 8), 0.75, seed=3))
    head = Head(8, 2)
    attach_mask(head, "weight", random_mask((2, 8), 0.75, seed=4))
    attn = nn.MultiheadAttention(8, 2)
    with torch.no_grad():
        attn.out_proj.weight.zero_()
    net = nn.ModuleDict({"block": nn.Sequential(shared, nn.ReLU(), shared), "head": head, "attn": attn})
    fast = sparse_linear(net)
    assert fast["block"][0] is fast["block"][2] and isinstance(fast["block"][0], CSRLinear)
    assert type(fast["head"]) is Head and type(fast["attn"].out_proj) is not CSRLinear
    x = torch.randn(3, 8)
    torch.testing.assert_close(fast["block"](x), net["block"](x), atol=1e-5, rtol=1e-5)


def test_copies_and_state_dicts_of_the_csr_model():
    net = masked_mlp()
    fast = sparse_linear(net)
    x = torch.randn(4, 20)
    twin = copy.deepcopy(fast)  # PyTorch cannot deep-copy a CSR tensor by itself
    assert twin[0].weight is not fast[0].weight
    torch.testing.assert_close(twin(x), net(x), atol=1e-5, rtol=1e-5)
    buffer = io.BytesIO()
    torch.save(fast.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    fresh = sparse_linear(masked_mlp(), min_sparsity=0.0)  # other nonzero counts: replaced on load
    fresh.load_state_dict({k: v for k, v in state.items() if not k.endswith("_mask")})
    torch.testing.assert_close(fresh(x), net(x), atol=1e-5, rtol=1e-5)
    assert fresh[0].weight.layout == torch.sparse_csr and fresh[0].nnz == 32


def test_float64_and_bad_arguments():
    linear = masked_mlp()[0].double()
    x = torch.randn(2, 20, dtype=torch.float64)
    torch.testing.assert_close(CSRLinear.from_linear(linear)(x), linear(x))
    with pytest.raises(ConfigError, match="min_sparsity"):
        sparse_linear(nn.Linear(2, 2), min_sparsity=1.5)
    with pytest.raises(ConfigError, match="nn.Linear"):
        CSRLinear.from_linear(nn.Conv1d(2, 2, 1))
