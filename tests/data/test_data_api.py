"""The public API: registry, static info, where data lives, argument checks, digits and synthetic."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from shrinkbench.data import (DATASETS, dataset_info, describe_datasets, get_data, list_datasets,
                              resolve_data_dir)
from shrinkbench.errors import ConfigError, DataError, UnknownNameError


def test_registry_lists_every_required_data_set():
    names = list_datasets()
    for name in ("mnist", "fashion-mnist", "kmnist", "cifar10", "cifar100", "imagenet",
                 "imagefolder", "digits", "synthetic"):
        assert name in names
    assert names == sorted(names)
    assert DATASETS.canonical("CIFAR-10") == "cifar10" and DATASETS.canonical("MNIST") == "mnist"
    with pytest.raises(UnknownNameError, match="unknown data set 'mnsit'.*did you mean 'mnist'"):
        get_data("mnsit")


def test_static_info_needs_no_files():
    info = dataset_info("cifar100")
    assert (info.num_classes, info.input_shape) == (100, (3, 32, 32))
    assert (info.num_train, info.num_val, info.num_test) == (45000, 5000, 10000)
    syn = dataset_info("synthetic", shape=[2, 5, 7], num_classes=4, num_train=100, num_test=30)
    assert (syn.num_classes, syn.input_shape, syn.mean) == (4, (2, 5, 7), (0.0, 0.0))
    assert (syn.num_train, syn.num_val, syn.num_test) == (90, 10, 30)
    assert dataset_info("imagenet", image_size=160).input_shape == (3, 160, 160)


def test_resolve_data_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("SHRINKBENCH_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir("~/d") == Path.home() / "d"
    assert resolve_data_dir(None) == tmp_path / "env"
    monkeypatch.delenv("SHRINKBENCH_DATA")
    assert resolve_data_dir() == tmp_path / "cache" / "shrinkbench" / "data"


def test_missing_files_error_uses_the_environment_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("SHRINKBENCH_DATA", str(tmp_path))
    with pytest.raises(DataError, match=str(tmp_path / "kmnist")):
        get_data("kmnist")


@pytest.mark.parametrize("kwargs,match", [
    ({"batch_size": 0}, "batch_size must be an integer >= 1"),
    ({"eval_batch_size": -3}, "eval_batch_size"),
    ({"val_size": -1}, "val_size must be"),
    ({"val_size": 1.5}, "val_size must be"),
    ({"val_size": 1437}, "val_size 1437 leaves no training data"),
    ({"seed": -1}, "seed must be"),
    ({"num_workers": 1.5}, "num_workers"),
    ({"colour": True}, "unknown option 'colour' for data set 'digits'; valid options: split_seed"),
    ({"device": "tpu:9"}, "device 'tpu:9' is not a valid torch device"),
])
def test_bad_arguments_are_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        get_data("digits", **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_is_a_config_error():
    with pytest.raises(ConfigError, match="CUDA is not available"):
        get_data("digits", device="cuda")


def test_digits_split_is_fixed_and_documented():
    bundle = get_data("digits", batch_size=2000)
    assert (bundle.info.num_train, bundle.info.num_val, bundle.info.num_test) == (1257, 180, 360)
    xs = {k: next(iter(getattr(bundle, k)))[0] for k in ("train", "val", "test")}
    rows = {k: {bytes(r.numpy().tobytes()) for r in v.reshape(len(v), -1)} for k, v in xs.items()}
    assert sum(len(r) for r in rows.values()) >= 1797 - 20  # few exact duplicates in digits
    other = get_data("digits", seed=7, split_seed=3, batch_size=2000)
    assert torch.equal(next(iter(other.test))[0], xs["test"])  # test never moves
    assert not torch.equal(next(iter(other.val))[0], xs["val"])  # validation follows split_seed
    x, y = next(iter(get_data("digits", val_size=0.25, batch_size=4000).val))
    assert len(y) == round(0.25 * 1437) and x.shape[1:] == (1, 8, 8)
    assert abs(float(xs["train"].mean())) < 0.05 and abs(float(xs["train"].std()) - 1) < 0.05


def test_val_size_zero_gives_no_validation_loader():
    assert get_data("digits", val_size=0).val is None


def test_eval_batch_size_applies_to_val_and_test():
    bundle = get_data("digits", batch_size=100, eval_batch_size=50)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (13, 4, 8)
    assert [len(y) for _, y in bundle.test][-1] == 10  # drop_last is off
    assert describe_datasets()["digits"].startswith("scikit-learn")


def test_synthetic_is_seeded_and_learnable():
    kw = dict(shape=(3, 6, 6), num_classes=5, num_train=600, num_test=200, batch_size=1000)
    a, b = get_data("synthetic", seed=1, **kw), get_data("synthetic", seed=1, **kw)
    xa, ya = next(iter(a.test))
    xb, yb = next(iter(b.test))
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(next(iter(get_data("synthetic", seed=2, **kw).test))[0], xa)
    assert a.info.num_train == 540 and a.info.num_val == 60 and xa.shape == (200, 3, 6, 6)
    x, y = next(iter(a.train))
    means = torch.stack([x[y == k].mean(0) for k in range(5)])
    pred = torch.cdist(xa.flatten(1), means.flatten(1)).argmin(1)
    assert (pred == ya).float().mean() > 0.9  # nearest class mean separates the classes
    assert abs(float(x.std()) - 1) < 0.05


def test_synthetic_options_are_checked():
    with pytest.raises(ConfigError, match="shape must be"):
        get_data("synthetic", shape=(3, 0, 2))
    with pytest.raises(ConfigError, match="num_classes must be"):
        get_data("synthetic", num_classes=0)
    with pytest.raises(UnknownNameError, match="unknown augmentation 'rotate'"):
        get_data("synthetic", augmentation="rotate")
    with pytest.raises(ConfigError, match="needs an image shape"):
        get_data("synthetic", shape=(20,), augmentation="flip")
    flat = get_data("synthetic", shape=20, num_train=50, num_test=10, val_size=0)
    assert next(iter(flat.train))[0].shape == (50, 20)
    aug = get_data("synthetic", shape=(3, 8, 8), augmentation="crop_flip", num_train=64, val_size=0)
    plain = get_data("synthetic", shape=(3, 8, 8), augment=False, num_train=64, val_size=0)
    assert not torch.equal(next(iter(aug.train))[0], next(iter(plain.train))[0])


def test_train_size_takes_a_seeded_subset_of_the_training_split():
    from shrinkbench.data import get_data

    full = get_data("digits", val_size=180, seed=0)
    small = get_data("digits", val_size=180, seed=0, train_size=500)
    again = get_data("digits", val_size=180, seed=0, train_size=500)
    assert small.info.num_train == 500 and full.info.num_train == 1797 - 180 - full.info.num_test
    assert torch.equal(small.train.x, again.train.x)  # fixed by split_seed
    assert torch.equal(small.val.x, full.val.x)  # the validation split is untouched
    rows = {tuple(r.tolist()) for r in full.train.x.flatten(1)}
    assert all(tuple(r.tolist()) in rows for r in small.train.x.flatten(1))
    with pytest.raises(ConfigError, match="data.options.train_size: expected an integer in"):
        get_data("digits", train_size=10**6)
