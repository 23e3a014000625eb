"""shrinkbench.common: shared names, file checksums, state-dict unwrapping and dotted keys (no torch)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shrinkbench import common
from shrinkbench.common import flatten_dotted, get_dotted, set_dotted, unwrap_state_dict
from shrinkbench.errors import CheckpointError, ConfigError, ModelError


class FakeTensor:
    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape
        self.dtype = "float32"


def test_imports_nothing_heavy() -> None:
    code = ("import sys, shrinkbench.common\n"
            "heavy = ('torch', 'numpy', 'pandas', 'yaml')\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_names_that_other_layers_reexport() -> None:
    from shrinkbench.results import files, frame, store

    assert (files.RUNS_DIR, files.DENSE_DIR, store.DB_NAME) == ("runs", "dense", "results.sqlite")
    assert frame.METRIC_KEYS is common.METRIC_KEYS and len(common.METRIC_KEYS) == 30
    assert common.METRIC_KEYS[:3] == ("dense_val_acc1", "dense_val_acc5", "dense_val_loss")
    assert {"data", "model", "dense", "seed", "precision", "channels_last"} <= set(common.DENSE_SECTIONS)
    assert common.MASK_SUFFIX == "_mask" and common.CHECKPOINT_FILE == "checkpoint.pt"


def test_file_sha256_is_the_content_digest_and_follows_changes(tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    data = os.urandom(3 * (1 << 20) + 17)  # more than one block
    path.write_bytes(data)
    assert common.file_sha256(path) == hashlib.sha256(data).hexdigest()
    assert common.file_sha256(str(path)) == hashlib.sha256(data).hexdigest()
    path.write_bytes(b"other")
    os.utime(path, ns=(1, 1))
    assert common.file_sha256(path) == hashlib.sha256(b"other").hexdigest()
    with pytest.raises(FileNotFoundError):
        common.file_sha256(tmp_path / "absent")


def test_file_sha256_is_memoized(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "blob.bin"
    path.write_bytes(b"abc")
    first = common.file_sha256(path)
    monkeypatch.setattr(common.hashlib, "new", lambda *a: pytest.fail("read again"))
    assert common.file_sha256(tmp_path / "." / "blob.bin") == first


def test_file_sha256_reexports() -> None:
    from shrinkbench.models import file_sha256

    assert file_sha256 is common.file_sha256


def test_unwrap_state_dict() -> None:
    state = {"fc.weight": FakeTensor((2, 3)), "fc.bias": FakeTensor((2,))}
    assert unwrap_state_dict(state, "x") == state
    for key in ("state_dict", "model"):
        assert unwrap_state_dict({key: state, "epoch": 3}, "x") == state
    with pytest.raises(CheckpointError, match=r"^weights file a\.pt holds no state_dict"):
        unwrap_state_dict([1, 2], "weights file a.pt")
    with pytest.raises(CheckpointError, match="holds no state_dict"):
        unwrap_state_dict({}, "x")
    with pytest.raises(ModelError, match=r"^c\.pt is not a state_dict: entry 'epoch' is not a tensor$"):
        unwrap_state_dict({"epoch": 3, **state}, "c.pt", error=ModelError)


def test_get_dotted() -> None:
    tree = {"a": {"b": {"c": 1}, "n": None}, "x": 2}
    assert get_dotted(tree, "a.b.c") == 1
    assert get_dotted(tree, "x") == 2
    assert get_dotted(tree, "a.n") is None
    assert get_dotted(tree, "a.b.missing", default=7) == 7
    assert get_dotted(tree, "x.y", default=7) == 7  # a leaf in the way


def test_set_dotted() -> None:
    tree: dict = {"a": {"b": 1}, "n": None}
    set_dotted(tree, "a.c.d", 2)
    set_dotted(tree, "n.m", 3)
    set_dotted(tree, "top", 4)
    assert tree == {"a": {"b": 1, "c": {"d": 2}}, "n": {"m": 3}, "top": 4}
    with pytest.raises(ConfigError, match=r"a\.b: is not a section, cannot set 'a\.b\.c'"):
        set_dotted(tree, "a.b.c", 5)
    with pytest.raises(ConfigError, match="'a..b' is not a dotted key"):
        set_dotted(tree, "a..b", 5)
    assert tree["a"]["b"] == 1


def test_flatten_dotted() -> None:
    tree = {"a": {"b": 1, "c": {"d": [1, 2]}, "e": {}}, "f": None}
    assert flatten_dotted(tree) == {"a.b": 1, "a.c.d": [1, 2], "f": None}
    assert flatten_dotted({"k": 1}, "env") == {"env.k": 1}
    tree2: dict = {}
    for key, value in flatten_dotted(tree).items():
        set_dotted(tree2, key, value)
    assert tree2 == {"a": {"b": 1, "c": {"d": [1, 2]}}, "f": None}
