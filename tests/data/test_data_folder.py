"""The image-folder reader (ImageNet layout) on PNG and JPEG files written by Pillow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from shrinkbench.data import dataset_info, get_data
from shrinkbench.data.folder import center_box, random_resized_box
from shrinkbench.errors import ConfigError, DataError

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
COLOURS = {"ant": (200, 30, 60), "bee": (10, 220, 90), "cow": (120, 120, 250)}


def _image_folder(root: Path, per_class: int = 3, test_per_class: int = 1) -> Path:
    """train/ and val/ with one solid colour per class, mixed sizes, PNG and JPEG, grey too."""
    for split, count in (("train", per_class), ("val", test_per_class)):
        for c, (name, colour) in enumerate(COLOURS.items()):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                size = (20 + 7 * i + c, 18 + 5 * i)
                img = Image.new("RGB", size, colour)
                img.putpixel((0, 0), (i * 40, 0, 0))  # make images distinct
                ext = ".png" if i % 2 == 0 else ".JPG"
                img.save(folder / f"img{i}{ext}")
    (root / "train" / "ant" / "notes.txt").write_text("not an image")
    return root


def _colour_of(x: torch.Tensor) -> np.ndarray:
    """The mean RGB (0-255) of normalized images (N, 3, H, W)."""
    raw = x.numpy().transpose(0, 2, 3, 1) * STD + MEAN
    return raw.mean(axis=(1, 2)) * 255


def test_eval_batches_decode_labels_and_colours(tmp_path):
    root = _image_folder(tmp_path / "imgs")
    bundle = get_data("imagefolder", root=str(root), image_size=8, resize_size=10,
                      batch_size=4, val_size=0)
    assert bundle.info.num_classes == 3 and bundle.info.input_shape == (3, 8, 8)
    assert (bundle.info.num_train, bundle.info.num_val, bundle.info.num_test) == (9, 0, 3)
    assert bundle.val is None and len(bundle.test) == 1 and len(bundle.train) == 3
    x, y = next(iter(bundle.test))
    assert x.shape == (3, 3, 8, 8) and x.dtype == torch.float32 and y.tolist() == [0, 1, 2]
    np.testing.assert_allclose(_colour_of(x), np.array(list(COLOURS.values())), atol=6)


def test_training_augmentation_is_fixed_by_seed_and_epoch(tmp_path):
    root = _image_folder(tmp_path / "imgs", per_class=4)
    kw = dict(root=str(root), image_size=8, resize_size=10, batch_size=5, seed=3)
    loader = get_data("imagefolder", **kw).train
    loader.set_epoch(2)
    first = [(x.clone(), y.clone()) for x, y in loader]
    loader.set_epoch(2)
    again = list(loader)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    other = list(loader)  # epoch 3 follows
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(first, other))
    fresh = get_data("imagefolder", **kw).train
    fresh.set_epoch(2)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, fresh))
    labels = torch.cat([y for _, y in first])
    assert sorted(labels.tolist()) == [0] * 4 + [1] * 4 + [2] * 4


def test_workers_give_the_same_batches(tmp_path):
    root = _image_folder(tmp_path / "imgs", per_class=2)
    kw = dict(root=str(root), image_size=8, resize_size=10, batch_size=4, seed=1)
    serial = list(get_data("imagefolder", **kw).train)
    parallel = list(get_data("imagefolder", num_workers=2, **kw).train)
    assert len(serial) == len(parallel) == 2
    for (xa, ya), (xb, yb) in zip(serial, parallel):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_validation_is_held_out_of_train(tmp_path):
    root = _image_folder(tmp_path / "imgs", per_class=4)
    bundle = get_data("imagefolder", root=str(root), image_size=8, resize_size=8, val_size=3)
    assert (bundle.train.num_samples, bundle.val.num_samples) == (9, 3)
    train = {s for s in bundle.train.dataset.samples}
    val = {s for s in bundle.val.dataset.samples}
    assert not train & val and len(train | val) == 12


def test_imagenet_lives_under_the_data_dir(tmp_path):
    _image_folder(tmp_path / "imagenet")
    bundle = get_data("imagenet", data_dir=tmp_path, image_size=8, resize_size=10)
    assert bundle.info.num_classes == 3 and bundle.test.num_samples == 3
    assert dataset_info("imagenet").num_classes == 1000
    assert dataset_info("imagefolder", root=str(tmp_path / "imagenet")).num_classes == 3


def test_corrupt_image_names_the_file(tmp_path):
    root = _image_folder(tmp_path / "imgs")
    for bad in (root / "val" / "bee" / "img0.png", root / "train" / "cow" / "img1.JPG"):
        bad.write_bytes(bad.read_bytes()[:60])
    bundle = get_data("imagefolder", root=str(root), image_size=8, resize_size=10)
    with pytest.raises(DataError, match=r"image .*bee/img0.png cannot be decoded"):
        list(bundle.test)
    with pytest.raises(DataError, match=r"image .*cow/img1.JPG cannot be decoded"):
        list(bundle.train)


def test_missing_or_inconsistent_folders(tmp_path):
    with pytest.raises(DataError, match=r"imagenet/train and .*imagenet/val.*cannot be downloaded"):
        get_data("imagenet", data_dir=tmp_path, download=True)
    root = _image_folder(tmp_path / "imgs")
    (root / "val" / "zebra").mkdir()
    with pytest.raises(DataError, match="class folders that the training folder lacks: zebra"):
        get_data("imagefolder", root=str(root))
    empty = tmp_path / "empty"
    (empty / "train" / "a").mkdir(parents=True)
    (empty / "val").mkdir()
    with pytest.raises(DataError, match="has no images"):
        get_data("imagefolder", root=str(empty))
    with pytest.raises(ConfigError, match="resize_size"):
        get_data("imagefolder", root=str(root), image_size=32, resize_size=16)


@settings(max_examples=200, deadline=None)
@given(w=st.integers(1, 400), h=st.integers(1, 400), seed=st.integers(0, 2**32 - 1))
def test_random_resized_box_stays_inside(w, h, seed):
    left, top, right, bottom = random_resized_box(w, h, np.random.default_rng(seed))
    assert 0 <= left < right <= w and 0 <= top < bottom <= h
    cw, ch = right - left, bottom - top
    if min(w, h) >= 50 and 0.5 < w / h < 2:  # then a sampled box exists: check area and aspect
        assert 0.07 * w * h <= cw * ch <= w * h
        assert 0.7 <= cw / ch <= 1.4


@given(w=st.integers(1, 500), h=st.integers(1, 500))
def test_center_box_is_centred_square(w, h):
    left, top, right, bottom = center_box(w, h, 224, 256)
    assert right - left == pytest.approx(bottom - top)
    assert right - left == pytest.approx(min(w, h) * 224 / 256)
    assert left + right == pytest.approx(w) and top + bottom == pytest.approx(h)


def test_symlink_loops_do_not_multiply_the_samples(tmp_path):
    root = _image_folder(tmp_path / "imgs")
    train = root / "train"
    (train / "ant" / "itself").symlink_to(train / "ant")  # a link to its own folder
    (train / "bee" / "parent").symlink_to(train)  # up to the folder of classes
    (train / "cow" / "deeper").mkdir()
    Image.new("RGB", (9, 9), COLOURS["cow"]).save(train / "cow" / "deeper" / "extra.png")
    (train / "cow" / "deeper" / "back").symlink_to(train / "cow")  # a loop two levels long
    (train / "cow" / "sibling").symlink_to(train / "ant")  # into another class
    (train / "cow" / "top").symlink_to(tmp_path)  # above the data set
    real_images = sum(1 for p in train.rglob("*") if p.suffix.lower() in (".png", ".jpg"))
    assert real_images == 3 * 3 + 1
    bundle = get_data("imagefolder", root=str(root), image_size=8, resize_size=10, val_size=0)
    assert bundle.info.num_train == real_images
    labels = torch.cat([y for _, y in bundle.train])
    assert torch.bincount(labels).tolist() == [3, 3, 4]
    (train / "loop").symlink_to(train)  # a class folder that is the folder of classes itself
    with pytest.raises(DataError, match=r"class folder .*loop links to .*which contains it"):
        get_data("imagefolder", root=str(root), image_size=8, resize_size=10)


def test_calibration_draws_distinct_unaugmented_training_images(tmp_path):
    root = _image_folder(tmp_path / "imgs", per_class=4)
    kw = dict(root=str(root), image_size=8, resize_size=8, batch_size=5, seed=3)
    loader = get_data("imagefolder", **kw).train
    batches = loader.calibration(7, seed=2, batch_size=3)
    assert [len(y) for _, y in batches] == [3, 3, 1]
    x = torch.cat([b[0] for b in batches])
    # unaugmented: each drawn image is exactly the centre crop that evaluation gives it
    plain = get_data("imagefolder", **kw)
    from shrinkbench.data.loader import calibration_indices
    idx = calibration_indices(loader.num_samples, 7, 2).tolist()
    assert len(set(idx)) == 7
    keys = [[(i, 0, False)] for i in idx]
    direct = torch.cat([b[0] for b in plain.train._load(keys)])
    assert torch.equal(x, direct)
    np.testing.assert_allclose(_colour_of(x), np.array([list(COLOURS.values())[int(y)]
                               for y in torch.cat([b[1] for b in batches])]), atol=8)
    assert torch.equal(torch.cat([b[0] for b in loader.calibration(7, seed=2, batch_size=7)]), x)
    with pytest.raises(DataError, match="more than the 12 training examples"):
        loader.calibration(13, seed=2, batch_size=3)
