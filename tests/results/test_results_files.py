"""Atomic writes and run folders."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from shrinkbench.errors import StoreError
from shrinkbench.results import files
from shrinkbench.results.files import (
    atomic_write_bytes, atomic_write_text, dense_dir, run_dir, write_csv, write_json, write_yaml,
)


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_atomic_write_creates_parents_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a" / "b" / "x.txt"
    atomic_write_text(target, "hello")
    atomic_write_text(target, "world")
    assert target.read_text() == "world"
    assert _listing(target.parent) == ["x.txt"]
    atomic_write_bytes(tmp_path / "y.bin", b"\x00\x01")
    assert (tmp_path / "y.bin").read_bytes() == b"\x00\x01"


def test_permissions_follow_umask(tmp_path):
    path = atomic_write_text(tmp_path / "p.txt", "x")
    assert path.stat().st_mode & 0o777 == 0o666 & ~files._UMASK


def test_failed_write_keeps_old_file_and_removes_temp(tmp_path, monkeypatch):
    target = tmp_path / "m.json"
    write_json(target, {"a": 1})

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 1}
    assert _listing(tmp_path) == ["m.json"]


def test_write_json_and_yaml_plain_values(tmp_path):
    obj = {"b": np.float32(0.5), "a": [np.int64(3), 4], "p": Path("/x/y"), "t": (1, 2)}
    write_json(tmp_path / "m.json", obj)
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": [3, 4], "b": 0.5, "p": "/x/y", "t": [1, 2]}
    write_yaml(tmp_path / "c.yaml", {"z": 1, "data": {"name": "mnist", "size": np.int32(5)}})
    text = (tmp_path / "c.yaml").read_text()
    assert yaml.safe_load(text) == {"z": 1, "data": {"name": "mnist", "size": 5}}
    assert text.index("z:") < text.index("data:")  # key order kept


def test_write_csv_union_of_columns(tmp_path):
    rows = [{"epoch": 0, "loss": 1.5}, {"epoch": 1, "loss": float("nan"), "acc": 0.5, "shape": (3, 4)}]
    write_csv(tmp_path / "e.csv", rows)
    with open(tmp_path / "e.csv", newline="") as handle:
        got = list(csv.DictReader(handle))
    assert got == [
        {"epoch": "0", "loss": "1.5", "acc": "", "shape": ""},
        {"epoch": "1", "loss": "nan", "acc": "0.5", "shape": "[3, 4]"},
    ]
    write_csv(tmp_path / "empty.csv", [])
    assert (tmp_path / "empty.csv").read_text() == ""
    write_csv(tmp_path / "cols.csv", [{"a": 1, "b": 2}], columns=["b"])
    assert (tmp_path / "cols.csv").read_text() == "b\n2\n"


def test_run_and_dense_dirs(tmp_path):
    assert run_dir(tmp_path, "abc123") == tmp_path / "runs" / "abc123"
    assert (tmp_path / "runs" / "abc123").is_dir()
    assert dense_dir(tmp_path, "d1", create=False) == tmp_path / "dense" / "d1"
    assert not (tmp_path / "dense").exists()
    for bad in ("", "..", "a/b", "."):
        with pytest.raises(StoreError, match="not a valid folder name"):
            run_dir(tmp_path, bad)


def test_concurrent_readers_never_see_partial_file(tmp_path):
    target = tmp_path / "big.txt"
    versions = ["a" * 200_000, "b" * 300_000]
    atomic_write_text(target, versions[0])
    pid = os.fork()
    if pid == 0:  # child: keep rewriting
        try:
            for i in range(30):
                atomic_write_text(target, versions[i % 2])
        finally:
            os._exit(0)
    seen = set()
    while True:
        seen.add(target.read_text())
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            break
    assert seen <= set(versions)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
