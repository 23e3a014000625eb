"""Downloads against a local HTTP server on 127.0.0.1: good file, bad checksum, unreachable server."""

from __future__ import annotations

import hashlib
import os
import shutil
import time

import numpy as np
import pytest
from data_files import closed_port, http_server, make_mnist, tar_with

from shrinkbench.data import fetch, fetch_first, get_data
from shrinkbench.errors import DownloadError


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def served(tmp_path):
    """A folder served over HTTP, with one 300 kB file; yields (folder, base URL, content)."""
    folder = tmp_path / "served"
    folder.mkdir()
    content = np.random.default_rng(0).bytes(300_000)
    (folder / "blob.bin").write_bytes(content)
    with http_server(folder) as url:
        yield folder, url, content


def test_good_file_is_verified_and_renamed_into_place(tmp_path, served):
    _, url, content = served
    dest = tmp_path / "out" / "blob.bin"
    assert fetch(f"{url}/blob.bin", dest, md5=_md5(content), timeout=5) == dest
    assert dest.read_bytes() == content
    assert os.listdir(dest.parent) == ["blob.bin"]
    sha = hashlib.sha256(content).hexdigest()
    dest2 = tmp_path / "out" / "blob2.bin"
    fetch(f"{url}/blob.bin", dest2, sha256=sha.upper(), timeout=5)
    assert dest2.read_bytes() == content


def test_bad_checksum_leaves_nothing(tmp_path, served):
    _, url, content = served
    out = tmp_path / "out"
    out.mkdir()
    (out / "blob.bin").write_bytes(b"old")  # an existing file is not replaced by a bad download
    with pytest.raises(DownloadError, match=r"checksum mismatch for http://127.0.0.1:\d+/blob.bin"):
        fetch(f"{url}/blob.bin", out / "blob.bin", md5="0" * 32, timeout=5)
    assert os.listdir(out) == ["blob.bin"] and (out / "blob.bin").read_bytes() == b"old"
    with pytest.raises(DownloadError, match="expected sha256"):
        fetch(f"{url}/blob.bin", out / "new.bin", sha256="1" * 64, timeout=5)
    assert os.listdir(out) == ["blob.bin"]


def test_accept_hook_admits_an_equivalent_file(tmp_path, served):
    _, url, content = served
    seen = []

    def accept(path):
        seen.append(path.read_bytes() == content)
        return True

    dest = fetch(f"{url}/blob.bin", tmp_path / "b", md5="0" * 32, accept=accept, timeout=5)
    assert seen == [True] and dest.read_bytes() == content


def test_unreachable_server_is_a_clear_error_and_quick(tmp_path):
    port = closed_port()
    start = time.monotonic()
    with pytest.raises(DownloadError, match=rf"could not download http://127.0.0.1:{port}/x.gz"):
        fetch(f"http://127.0.0.1:{port}/x.gz", tmp_path / "x.gz", md5="0" * 32, timeout=2)
    assert time.monotonic() - start < 10
    assert os.listdir(tmp_path) == []


def test_missing_file_on_the_server(tmp_path, served):
    _, url, _ = served
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(f"{url}/nope.gz", tmp_path / "nope.gz", md5="0" * 32, timeout=5)
    assert os.listdir(tmp_path) == ["served"]


def test_fetch_first_falls_back_to_the_next_mirror(tmp_path, served):
    _, url, content = served
    dead = f"http://127.0.0.1:{closed_port()}"
    dest = fetch_first([f"{dead}/blob.bin", f"{url}/blob.bin"], tmp_path / "b.bin",
                       md5=_md5(content), timeout=2)
    assert dest.read_bytes() == content
    with pytest.raises(DownloadError, match="no mirror delivered c.bin: .*Connection refused"):
        fetch_first([f"{dead}/blob.bin"], tmp_path / "c.bin", md5=_md5(content), timeout=2)


def test_fetch_needs_a_checksum(tmp_path):
    with pytest.raises(ValueError, match="md5 or sha256"):
        fetch("http://127.0.0.1:1/x", tmp_path / "x")


def test_mnist_download_of_wrong_files_fails_and_leaves_nothing(tmp_path):
    make_mnist(tmp_path / "mirror", gz=True)  # valid idx files, but not the published ones
    data = tmp_path / "data"
    with http_server(tmp_path / "mirror") as url:
        with pytest.raises(DownloadError, match="train-images-idx3-ubyte.gz.*checksum mismatch"):
            get_data("mnist", data_dir=data, download=True, mirror=url)
    assert list((data / "mnist").iterdir()) == []


def test_cifar_download_of_a_wrong_archive_fails_and_leaves_nothing(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    tar_with(mirror / "cifar-10-python.tar.gz", [("cifar-10-batches-py/x", "file", b"x")])
    data = tmp_path / "data"
    with http_server(mirror) as url:
        with pytest.raises(DownloadError, match="c58f30108f718f92721af3b95e74349a"):
            get_data("cifar10", data_dir=data, download=True, mirror=url)
    assert list((data / "cifar10").iterdir()) == []


MNIST_ROOT = os.environ.get("SHRINKBENCH_TEST_MNIST")


@pytest.mark.skipif(not MNIST_ROOT, reason="SHRINKBENCH_TEST_MNIST is not set")
def test_real_mnist_downloads_from_a_mirror(tmp_path):
    mirror = tmp_path / "mirror"
    shutil.copytree(os.path.join(MNIST_ROOT, "mnist"), mirror)
    data = tmp_path / "data"
    with http_server(mirror) as url:
        bundle = get_data("mnist", data_dir=data, download=True, mirror=url)
    assert (bundle.info.num_train, bundle.info.num_val, bundle.info.num_test) == (55000, 5000, 10000)
    names = sorted(p.name for p in (data / "mnist").iterdir())
    assert names == sorted(f"{n}.gz" for n in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))
    for name in names:  # byte-identical to what was served
        assert (data / "mnist" / name).read_bytes() == (mirror / name).read_bytes()
