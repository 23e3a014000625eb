"""The in-memory loader: batching, epochs fixed by (seed, epoch), batch augmentation, normalization."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from shrinkbench.data import AUGMENTATIONS, CropFlip, TensorLoader
from shrinkbench.data.loader import normalizer


def _loader(n=50, batch_size=8, **kw) -> TensorLoader:
    x = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 4, 4).contiguous()
    return TensorLoader(x, torch.arange(n), batch_size=batch_size, **kw)


@pytest.mark.parametrize("n,bs,drop,expected", [(50, 8, False, 7), (50, 8, True, 6),
                                                 (48, 8, False, 6), (3, 8, True, 0)])
def test_length_and_sizes(n, bs, drop, expected):
    loader = _loader(n, bs, drop_last=drop)
    sizes = [len(y) for _, y in loader]
    assert len(loader) == len(sizes) == expected and loader.num_samples == n
    assert sum(sizes) == (n // bs * bs if drop else n)


def test_each_epoch_is_a_permutation_fixed_by_seed_and_epoch():
    loader = _loader(shuffle=True, seed=5)
    orders = []
    for epoch in (0, 1, 0):
        loader.set_epoch(epoch)
        orders.append(torch.cat([y for _, y in loader]))
    assert sorted(orders[0].tolist()) == list(range(50))
    assert torch.equal(orders[0], orders[2]) and not torch.equal(orders[0], orders[1])
    other_seed = _loader(shuffle=True, seed=6)
    assert not torch.equal(torch.cat([y for _, y in other_seed]), orders[0])
    # without set_epoch, iterations advance the epoch: the next pass is epoch 1
    fresh = _loader(shuffle=True, seed=5)
    list(fresh)
    assert torch.equal(torch.cat([y for _, y in fresh]), orders[1])


def test_x_follows_y_and_is_normalized():
    scale, shift = normalizer((0.5,), (0.25,), 255.0, torch.device("cpu"))
    loader = _loader(shuffle=True, scale=scale, shift=shift)
    for x, y in loader:
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        expected = (y.float() / 255 - 0.5) / 0.25
        torch.testing.assert_close(x[:, 0, 2, 3], expected)


def test_unshuffled_loader_keeps_order_and_never_exposes_storage():
    loader = _loader(n=20, batch_size=6)
    assert torch.cat([y for _, y in loader]).tolist() == list(range(20))
    for x, y in loader:
        x.zero_()
        y.zero_()
    assert torch.cat([y for _, y in loader]).tolist() == list(range(20))
    assert int(torch.cat([x for x, _ in loader]).sum()) == sum(range(20)) * 16


def test_augmentation_does_not_change_the_order():
    plain = _loader(shuffle=True, seed=2)
    augmented = _loader(shuffle=True, seed=2, augmentation=AUGMENTATIONS.get("crop_flip"))
    assert torch.equal(torch.cat([y for _, y in plain]), torch.cat([y for _, y in augmented]))
    augmented.set_epoch(0)
    first = torch.cat([x for x, _ in augmented])
    augmented.set_epoch(0)
    assert torch.equal(first, torch.cat([x for x, _ in augmented]))


def _reference(x: torch.Tensor, dy: int, dx: int, flip: bool, pad: int) -> torch.Tensor:
    c, h, w = x.shape
    padded = torch.zeros(c, h + 2 * pad, w + 2 * pad, dtype=x.dtype)
    padded[:, pad:pad + h, pad:pad + w] = x
    out = padded[:, dy:dy + h, dx:dx + w]
    return out.flip(2) if flip else out


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 6), c=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9),
       pad=st.integers(0, 4), seed=st.integers(0, 1000), dtype=st.sampled_from(["u8", "f32"]))
def test_crop_flip_matches_a_per_sample_reference(n, c, h, w, pad, seed, dtype):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, c, h, w), generator=gen, dtype=torch.uint8)
    if dtype == "f32":
        x = x.float() - 100
    aug = CropFlip(pad=pad)
    params = aug.sample(n, gen)
    assert params["dy"].max() <= 2 * pad and params["dx"].min() >= 0
    out = aug.apply(x, params)
    assert out.shape == x.shape and out.dtype == x.dtype
    for i in range(n):
        ref = _reference(x[i], int(params["dy"][i]), int(params["dx"][i]), bool(params["flip"][i]), pad)
        assert torch.equal(out[i], ref)


def test_crop_flip_flips_about_half_and_shifts_uniformly():
    params = CropFlip(pad=4).sample(20000, torch.Generator().manual_seed(0))
    assert abs(params["flip"].float().mean().item() - 0.5) < 0.02
    counts = np.bincount(params["dx"].numpy(), minlength=9)
    assert counts.min() > 20000 / 9 * 0.9 and counts.max() < 20000 / 9 * 1.1


def test_normalizer_matches_the_formula():
    scale, shift = normalizer((0.1, 0.2, 0.3), (0.5, 0.25, 0.125), 255.0, torch.device("cpu"))
    x = torch.randint(0, 256, (4, 3, 2, 2), dtype=torch.uint8)
    mean = torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)
    std = torch.tensor([0.5, 0.25, 0.125]).view(1, 3, 1, 1)
    torch.testing.assert_close(x * scale + shift, (x.float() / 255 - mean) / std)
