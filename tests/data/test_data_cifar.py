"""The CIFAR reader and safe archive extraction, on small files in the published formats."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from data_files import cifar_batch, make_cifar10, make_cifar100, tar_folder, tar_with

from shrinkbench.data import get_data, safe_extract
from shrinkbench.data.cifar import load_batch
from shrinkbench.errors import DataError

C10_MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32).reshape(1, 3, 1, 1)
C10_STD = np.array([0.2470, 0.2435, 0.2616], np.float32).reshape(1, 3, 1, 1)


def _normalized(x: np.ndarray) -> np.ndarray:
    return (x.astype(np.float32) / 255 - C10_MEAN) / C10_STD


def _cat(loader, i):
    return torch.cat([batch[i] for batch in loader]).numpy()


@pytest.mark.parametrize("layout", ["cifar10", "."])
def test_cifar10_folder_reads_exactly(tmp_path, layout):
    x, y, xt, yt = make_cifar10(tmp_path / layout, per_batch=6, n_test=8)
    bundle = get_data("cifar10", data_dir=tmp_path, val_size=5, batch_size=7, verify=False)
    assert (bundle.info.num_train, bundle.info.num_val, bundle.info.num_test) == (25, 5, 8)
    np.testing.assert_allclose(_cat(bundle.test, 0), _normalized(xt), atol=1e-5)
    np.testing.assert_array_equal(_cat(bundle.test, 1), yt)
    # validation images are the training images at the held-out indices, unaugmented, in order
    val_x, val_y = _cat(bundle.val, 0), _cat(bundle.val, 1)
    matches = [int(np.argmin(np.abs(_normalized(x) - v).reshape(30, -1).sum(1))) for v in val_x]
    assert matches == sorted(matches) and len(set(matches)) == 5
    np.testing.assert_allclose(val_x, _normalized(x[matches]), atol=1e-5)
    np.testing.assert_array_equal(val_y, y[matches])


def test_cifar10_training_batches_are_cropped_and_flipped_views_of_the_images(tmp_path):
    x, _, _, _ = make_cifar10(tmp_path / "cifar10", per_batch=4, n_test=2)
    bundle = get_data("cifar10", data_dir=tmp_path, val_size=0, batch_size=20, verify=False)
    xb, _ = next(iter(bundle.train))
    raw = np.round((xb.numpy() * C10_STD + C10_MEAN) * 255).astype(np.int64)
    padded = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (4, 4), (4, 4)))
    for img in raw:  # each must be some 32x32 window of a padded image, possibly mirrored
        found = False
        for src in padded:
            for view in (src, src[:, :, ::-1]):
                for dy in range(9):
                    for dx in range(9):
                        if np.array_equal(view[:, dy:dy + 32, dx:dx + 32], img):
                            found = True
        assert found
    plain = get_data("cifar10", data_dir=tmp_path, val_size=0, batch_size=20, verify=False,
                     augment=False)
    xp, _ = next(iter(plain.train))
    assert not torch.equal(xp, xb)


def test_cifar100_reads_fine_labels(tmp_path):
    x, y, xt, yt = make_cifar100(tmp_path / "cifar100", n_train=20, n_test=6)
    bundle = get_data("cifar-100", data_dir=tmp_path, val_size=4, verify=False)
    assert bundle.info.num_classes == 100 and bundle.info.num_train == 16
    np.testing.assert_array_equal(_cat(bundle.test, 1), yt)


def test_cifar10_from_the_archive_extracts_once(tmp_path):
    src = tmp_path / "src"
    _, _, xt, yt = make_cifar10(src)
    (tmp_path / "data" / "cifar10").mkdir(parents=True)
    tar_folder(tmp_path / "data" / "cifar10" / "cifar-10-python.tar.gz",
               src / "cifar-10-batches-py", "cifar-10-batches-py")
    bundle = get_data("cifar10", data_dir=tmp_path / "data", val_size=0, verify=False)
    np.testing.assert_array_equal(_cat(bundle.test, 1), yt)
    extracted = tmp_path / "data" / "cifar10" / "cifar-10-batches-py"
    assert sorted(p.name for p in extracted.iterdir()) == sorted(
        [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"])
    assert [p.name for p in (tmp_path / "data" / "cifar10").iterdir() if p.name.startswith(".")] == []
    (tmp_path / "data" / "cifar10" / "cifar-10-python.tar.gz").unlink()
    assert get_data("cifar10", data_dir=tmp_path / "data", val_size=0, verify=False).info.num_test == 8


def test_archive_checksum_is_verified(tmp_path):
    src = tmp_path / "src"
    make_cifar10(src)
    tar_folder(tmp_path / "cifar-10-python.tar.gz", src / "cifar-10-batches-py", "cifar-10-batches-py")
    with pytest.raises(DataError, match="cifar-10-python.tar.gz fails its checksum.*c58f3010"):
        get_data("cifar10", data_dir=tmp_path)
    assert not (tmp_path / "cifar-10-batches-py").exists()


def test_archive_without_the_batches_is_an_error(tmp_path):
    tar_with(tmp_path / "cifar-10-python.tar.gz", [("other/file", "file", b"x")])
    with pytest.raises(DataError, match="did not contain the cifar10 batches"):
        get_data("cifar10", data_dir=tmp_path, verify=False)


def test_truncated_archive_is_an_error(tmp_path):
    src = tmp_path / "src"
    make_cifar10(src)
    archive = tar_folder(tmp_path / "cifar-10-python.tar.gz", src / "cifar-10-batches-py",
                         "cifar-10-batches-py")
    archive.write_bytes(archive.read_bytes()[:5000])
    with pytest.raises(DataError, match="corrupt or truncated"):
        get_data("cifar10", data_dir=tmp_path, verify=False)
    assert not (tmp_path / "cifar-10-batches-py").exists()


@pytest.mark.parametrize("member", [
    ("../evil", "file", b"owned"),
    ("/tmp/shrinkbench-evil-absolute", "file", b"owned"),
    ("inner/../../evil", "file", b"owned"),
    ("link", "symlink", "/etc/passwd"),
    ("link", "symlink", "../outside"),
    ("hard", "hardlink", "/etc/passwd"),
    ("fifo", "fifo", b""),
])
def test_escaping_members_are_refused_and_nothing_is_written(tmp_path, member):
    target = tmp_path / "target"
    archive = tar_with(tmp_path / "evil.tar.gz", [("good/file", "file", b"fine"), member])
    before = set(tmp_path.rglob("*"))
    with pytest.raises(DataError, match="refusing to extract"):
        safe_extract(archive, target)
    after = set(tmp_path.rglob("*"))
    assert after - before <= {target}  # at most the (empty) target folder itself
    assert not os.path.exists("/tmp/shrinkbench-evil-absolute")


def test_safe_extract_writes_regular_members_inside(tmp_path):
    archive = tar_with(tmp_path / "ok.tar.gz", [("a", "dir", b""), ("a/b/c.txt", "file", b"hi"),
                                                ("a/../d.txt", "file", b"inside")])
    safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "a" / "b" / "c.txt").read_bytes() == b"hi"
    assert (tmp_path / "out" / "d.txt").read_bytes() == b"inside"


def _write_batch(tmp_path, blob: bytes) -> None:
    make_cifar10(tmp_path / "cifar10")
    (tmp_path / "cifar10" / "cifar-10-batches-py" / "data_batch_3").write_bytes(blob)


def test_truncated_pickle(tmp_path):
    good = cifar_batch(np.zeros((6, 3072), np.uint8), [0] * 6)
    _write_batch(tmp_path, good[: len(good) // 2])
    with pytest.raises(DataError, match="data_batch_3 is not a readable CIFAR batch"):
        get_data("cifar10", data_dir=tmp_path, verify=False)


def test_wrong_row_length_and_label_count(tmp_path):
    _write_batch(tmp_path, cifar_batch(np.zeros((6, 3000), np.uint8), [0] * 6))
    with pytest.raises(DataError, match=r"data_batch_3 has 'data' of shape \(6, 3000\)"):
        get_data("cifar10", data_dir=tmp_path, verify=False)
    _write_batch(tmp_path, cifar_batch(np.zeros((6, 3072), np.uint8), [0] * 5))
    with pytest.raises(DataError, match="data_batch_3 has 5 'labels' for 6 images"):
        get_data("cifar10", data_dir=tmp_path, verify=False)
    _write_batch(tmp_path, cifar_batch(np.zeros((6, 3072), np.uint8), [0] * 5 + [10]))
    with pytest.raises(DataError, match=r"outside \[0, 9\]"):
        get_data("cifar10", data_dir=tmp_path, verify=False)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch exploited",))


def test_pickles_with_other_globals_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps({b"data": _Exploit()}, protocol=2))
    with pytest.raises(DataError, match="global .*system is not allowed"):
        load_batch(path, verify=False)
    assert not (tmp_path / "exploited").exists()
    path.write_bytes(pickle.dumps([1, 2], protocol=2))
    with pytest.raises(DataError, match="holds a list, not a dict"):
        load_batch(path, verify=False)


def test_batch_checksums_are_verified(tmp_path):
    make_cifar10(tmp_path / "cifar10")
    with pytest.raises(DataError, match="data_batch_1 fails its checksum.*c99cafc1"):
        get_data("cifar10", data_dir=tmp_path)


def test_missing_cifar_names_folder_and_archive(tmp_path):
    with pytest.raises(DataError) as err:
        get_data("cifar100", data_dir=tmp_path)
    message = str(err.value)
    assert str(tmp_path / "cifar100" / "cifar-100-python") in message
    assert str(tmp_path / "cifar100" / "cifar-100-python.tar.gz") in message
    assert "train, test" in message and "download=True" in message
