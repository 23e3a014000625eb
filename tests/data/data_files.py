"""Writers of small files in the real published formats, and a local HTTP server, for the data tests."""

from __future__ import annotations

import contextlib
import functools
import gzip
import io
import pickle
import socket
import struct
import tarfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import numpy as np

IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i2"): 0x0B,
             np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}

MNIST_NAMES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
               "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}


def idx_bytes(array: np.ndarray) -> bytes:
    """The idx encoding of `array` (big-endian, as published)."""
    dtype = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    header = bytes([0, 0, IDX_CODES[np.dtype(dtype)], array.ndim])
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(dtype).tobytes()


def write_file(path: Path, data: bytes, gz: bool = False) -> Path:
    """Write `data` (gzipped when `gz`, adding .gz to the name) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def make_mnist(folder: Path, n_train: int = 40, n_test: int = 12, gz: bool = True, seed: int = 0,
               size: int = 28) -> dict[str, np.ndarray]:
    """Write the four MNIST idx files with random content; return the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, size, size), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, size, size), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    for key, array in arrays.items():
        write_file(folder / MNIST_NAMES[key], idx_bytes(array), gz=gz)
    return arrays


def cifar_batch(data: np.ndarray, labels: list[int], label_key: bytes = b"labels") -> bytes:
    """A CIFAR batch pickled as published: a dict with bytes keys, protocol 2."""
    entry = {b"batch_label": b"test batch", label_key: labels, b"data": data,
             b"filenames": [b"img_%d.png" % i for i in range(len(labels))]}
    return pickle.dumps(entry, protocol=2)


def make_cifar10(folder: Path, per_batch: int = 6, n_test: int = 8, seed: int = 0
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Write cifar-10-batches-py/ into `folder`; return (x_train, y_train, x_test, y_test)."""
    rng = np.random.default_rng(seed)
    base = folder / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    for i in range(1, 6):
        x = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        y = rng.integers(0, 10, per_batch).tolist()
        (base / f"data_batch_{i}").write_bytes(cifar_batch(x, y))
        xs.append(x)
        ys.extend(y)
    xt = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    yt = rng.integers(0, 10, n_test).tolist()
    (base / "test_batch").write_bytes(cifar_batch(xt, yt))
    (base / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"a"] * 10}, protocol=2))
    return (np.concatenate(xs).reshape(-1, 3, 32, 32), np.array(ys),
            xt.reshape(-1, 3, 32, 32), np.array(yt))


def make_cifar100(folder: Path, n_train: int = 20, n_test: int = 6, seed: int = 0
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Write cifar-100-python/ into `folder`; return (x_train, y_train, x_test, y_test)."""
    rng = np.random.default_rng(seed)
    base = folder / "cifar-100-python"
    base.mkdir(parents=True, exist_ok=True)
    x = rng.integers(0, 256, (n_train, 3072), dtype=np.uint8)
    y = rng.integers(0, 100, n_train).tolist()
    xt = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    yt = rng.integers(0, 100, n_test).tolist()
    (base / "train").write_bytes(cifar_batch(x, y, b"fine_labels"))
    (base / "test").write_bytes(cifar_batch(xt, yt, b"fine_labels"))
    return x.reshape(-1, 3, 32, 32), np.array(y), xt.reshape(-1, 3, 32, 32), np.array(yt)


def tar_folder(archive: Path, folder: Path, arcname: str) -> Path:
    """Pack `folder` as `arcname` into a .tar.gz."""
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=arcname)
    return archive


def tar_with(archive: Path, members: list[tuple[str, str, bytes | str]]) -> Path:
    """A .tar.gz with members (name, kind in file/dir/symlink/hardlink, content or link target)."""
    with tarfile.open(archive, "w:gz") as tar:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                assert isinstance(payload, bytes)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
                         "hardlink": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE}[kind]
            if kind in ("symlink", "hardlink"):
                info.linkname = str(payload)
            tar.addfile(info)
    return archive


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@contextlib.contextmanager
def http_server(directory: Path) -> Iterator[str]:
    """Serve `directory` on 127.0.0.1 (a free port) in a thread; yield the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
