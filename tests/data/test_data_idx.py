"""The idx reader (MNIST, Fashion-MNIST, KMNIST) on small files in the published format."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from data_files import MNIST_NAMES, idx_bytes, make_mnist, write_file
from hypothesis import given, settings
from hypothesis import strategies as st

from shrinkbench.data import dataset_info, get_data
from shrinkbench.data.idx import MNIST, parse_idx, read_idx_file
from shrinkbench.errors import DataError


def _all_x(loader) -> torch.Tensor:
    return torch.cat([x for x, _ in loader])


def _all_y(loader) -> torch.Tensor:
    return torch.cat([y for _, y in loader])


@settings(max_examples=30, deadline=None)
@given(
    dtype=st.sampled_from([np.uint8, np.int8, ">i2", ">i4", ">f4", ">f8"]),
    shape=st.lists(st.integers(0, 5), min_size=1, max_size=4),
    seed=st.integers(0, 2**16),
)
def test_parse_idx_round_trips_every_type(dtype, shape, seed):
    array = (np.random.default_rng(seed).normal(size=shape) * 50).astype(dtype)
    out = parse_idx(idx_bytes(array), "x.idx")
    assert out.shape == tuple(shape)
    np.testing.assert_array_equal(out, array)


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("layout", ["mnist", "MNIST/raw"])
def test_mnist_reads_written_files_exactly(tmp_path, gz, layout):
    arrays = make_mnist(tmp_path / layout, n_train=40, n_test=12, gz=gz)
    bundle = get_data("mnist", data_dir=tmp_path, val_size=10, batch_size=16, verify=False)
    info = bundle.info
    assert (info.num_train, info.num_val, info.num_test) == (30, 10, 12)
    assert info.num_classes == 10 and info.input_shape == (1, 28, 28)
    expected = (arrays["test_images"][:, None].astype(np.float32) / 255 - 0.1307) / 0.3081
    np.testing.assert_allclose(_all_x(bundle.test).numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(_all_y(bundle.test).numpy(), arrays["test_labels"])
    # train + val are exactly the published training set, disjoint
    train_y = sorted(_all_y(bundle.train).tolist() + _all_y(bundle.val).tolist())
    assert train_y == sorted(arrays["train_labels"].tolist())
    train_x = torch.cat([_all_x(bundle.train), _all_x(bundle.val)])
    raw = torch.round((train_x * 0.3081 + 0.1307) * 255).to(torch.uint8).reshape(40, -1)
    assert sorted(map(bytes, raw.numpy())) == sorted(map(bytes, arrays["train_images"].reshape(40, -1)))


@pytest.mark.parametrize("name,folder", [
    ("fashion-mnist", "fashion-mnist"), ("kmnist", "KMNIST/raw"),
    ("fashion_mnist", "FashionMNIST/raw"),
])
def test_same_reader_serves_fashion_and_kmnist(tmp_path, name, folder):
    arrays = make_mnist(tmp_path / folder, n_train=20, n_test=5, gz=True, seed=3)
    bundle = get_data(name, data_dir=tmp_path, val_size=4, verify=False)
    assert bundle.info.num_test == 5 and bundle.val.num_samples == 4
    np.testing.assert_array_equal(_all_y(bundle.test).numpy(), arrays["test_labels"])
    assert bundle.info.mean == dataset_info(name).mean != (0.1307,)


def test_missing_files_name_every_file_and_folder(tmp_path):
    with pytest.raises(DataError) as err:
        get_data("mnist", data_dir=tmp_path)
    message = str(err.value)
    for name in MNIST_NAMES.values():
        assert name in message
    assert str(tmp_path / "mnist") in message and str(tmp_path / "MNIST" / "raw") in message
    assert "download" in message and "\n" not in message


def test_a_partial_folder_counts_as_missing(tmp_path):
    make_mnist(tmp_path / "mnist", gz=True)
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        get_data("mnist", data_dir=tmp_path, verify=False)


def _corrupt(tmp_path: Path, key: str, data: bytes, gz: bool) -> None:
    make_mnist(tmp_path / "mnist", gz=gz)
    name = MNIST_NAMES[key] + (".gz" if gz else "")
    path = tmp_path / "mnist" / name
    path.unlink()
    write_file(tmp_path / "mnist" / MNIST_NAMES[key], data, gz=gz)


@pytest.mark.parametrize("gz", [True, False])
def test_bad_magic_number(tmp_path, gz):
    data = bytearray(idx_bytes(np.zeros((3, 28, 28), np.uint8)))
    data[2] = 0x42
    _corrupt(tmp_path, "train_images", bytes(data), gz)
    with pytest.raises(DataError, match="train-images.*bad magic number 0x00004203"):
        get_data("mnist", data_dir=tmp_path, verify=False)


@pytest.mark.parametrize("gz", [True, False])
def test_truncated_content(tmp_path, gz):
    data = idx_bytes(np.zeros((3, 28, 28), np.uint8))[:-5]
    _corrupt(tmp_path, "test_images", data, gz)
    with pytest.raises(DataError, match=r"t10k-images.*truncated.*needs 2368"):
        get_data("mnist", data_dir=tmp_path, verify=False)


def test_trailing_bytes(tmp_path):
    _corrupt(tmp_path, "test_labels", idx_bytes(np.zeros(12, np.uint8)) + b"\0", gz=False)
    with pytest.raises(DataError, match="longer than its header says"):
        get_data("mnist", data_dir=tmp_path, verify=False)


def test_truncated_and_corrupt_gzip(tmp_path):
    make_mnist(tmp_path / "mnist", gz=True)
    path = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="corrupt or truncated gzip"):
        get_data("mnist", data_dir=tmp_path, verify=False)
    broken = bytearray(blob)
    broken[-6] ^= 0xFF  # inside the CRC32 trailer
    path.write_bytes(bytes(broken))
    with pytest.raises(DataError, match="corrupt or truncated gzip"):
        get_data("mnist", data_dir=tmp_path, verify=False)


def test_checksum_mismatch_is_refused_unless_verify_false(tmp_path):
    make_mnist(tmp_path / "mnist", gz=True)
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz fails its checksum.*6bbc9ace"):
        get_data("mnist", data_dir=tmp_path)
    assert get_data("mnist", data_dir=tmp_path, verify=False, val_size=0).val is None


def test_checksum_of_raw_content_accepts_a_recompressed_file(tmp_path):
    content = idx_bytes(np.arange(6, dtype=np.uint8))
    from shrinkbench.data.idx import IdxFile, _md5

    spec = IdxFile("x", gz_md5="0" * 32, raw_md5=_md5(content))
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(content, compresslevel=1))
    np.testing.assert_array_equal(read_idx_file(path, spec), np.arange(6))
    path.write_bytes(gzip.compress(content + b"", compresslevel=9, mtime=1))
    np.testing.assert_array_equal(read_idx_file(path, spec), np.arange(6))
    path.write_bytes(gzip.compress(idx_bytes(np.arange(1, 7, dtype=np.uint8))))
    with pytest.raises(DataError, match="fails its checksum"):
        read_idx_file(path, spec)


def test_mismatched_counts_shapes_and_labels(tmp_path):
    _corrupt(tmp_path, "train_labels", idx_bytes(np.zeros(39, np.uint8)), gz=False)
    with pytest.raises(DataError, match="labels of shape \\(39,\\).*40 images"):
        get_data("mnist", data_dir=tmp_path, verify=False)
    _corrupt(tmp_path, "train_images", idx_bytes(np.zeros((40, 20, 20), np.uint8)), gz=False)
    with pytest.raises(DataError, match=r"\(20, 20\).*28x28"):
        get_data("mnist", data_dir=tmp_path, verify=False)
    _corrupt(tmp_path, "test_labels", idx_bytes(np.full(12, 10, np.uint8)), gz=False)
    with pytest.raises(DataError, match=r"t10k-labels.*outside \[0, 9\]"):
        get_data("mnist", data_dir=tmp_path, verify=False)


MNIST_ROOT = os.environ.get("SHRINKBENCH_TEST_MNIST")


@pytest.mark.skipif(not MNIST_ROOT, reason="SHRINKBENCH_TEST_MNIST is not set")
def test_real_mnist_has_the_published_shapes():
    bundle = get_data("mnist", data_dir=MNIST_ROOT, batch_size=1000)  # checksums verified
    info = bundle.info
    assert (info.num_train, info.num_val, info.num_test) == (55000, 5000, 10000)
    assert info.num_classes == 10 and info.input_shape == (1, 28, 28)
    assert bundle.train.num_samples + bundle.val.num_samples == 60000
    x, y = next(iter(bundle.test))
    assert x.shape == (1000, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # the published test set's first labels
    test_y = _all_y(bundle.test)
    assert torch.bincount(test_y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    full = get_data("mnist", data_dir=MNIST_ROOT, val_size=0, augment=False, batch_size=60000)
    xs, ys = next(iter(full.train))
    assert xs.shape == (60000, 1, 28, 28) and abs(float(xs.mean())) < 1e-3
    assert abs(float(xs.std()) - 1) < 1e-3
    assert MNIST.files["train_images"].raw_md5 == "6bbc9ace898e44ae57da46a324031adb"
