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


LAUGHS = "a: &a [1,1,1,1,1,1,1,1,1]\n" + "".join(
    f"{name}: &{name} [{','.join(['*' + prev] * 9)}]\n" for prev, name in zip("abcdefgh", "bcdefghi"))


@pytest.mark.parametrize("text, message", [
    ("a: &x [1, *x]\n", r"alias \*x refers to itself \(a cycle\) at line 1"),
    ("a: &x {b: {c: *x}}\n", r"alias \*x refers to itself"),
    ("[" * 3000 + "]" * 3000, "nested more than 100 levels deep at line 1"),
    ("a: " + "{b: " * 3000 + "1" + "}" * 3000, "nested more than"),
    # each alias stays shallow, together they nest deeper than the limit
    ("".join(f"l{i}: &l{i} [[[[[{'*l%d' % (i - 1) if i else 1}]]]]]\n" for i in range(30)),
     "nested more than"),
    (LAUGHS, "aliases expand to more than 10,000 values at line 5"),
    ("a: 1\nb:\n  c: 2\n  c: 3\n", "duplicate key 'c' at line 4"),
    ("a: 1\na: 1\n", "duplicate key 'a' at line 2"),
    ("n: 1" + "0" * 5000 + "\n", "an integer with too many digits at line 1"),
])
def test_read_yaml_refuses_hostile_documents_in_one_line(tmp_path, text, message):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(StoreError, match=f"^sweep spec '{path}': {message}") as caught:
        files.read_yaml(path, "sweep spec", StoreError)
    assert "\n" not in str(caught.value)


def test_read_yaml_keeps_what_safe_load_reads(tmp_path):
    text = ("base: &base {lr: 0.1, epochs: 2}\nfinetune: {<<: *base, lr: 0.01}\n"
            "shared: [*base, *base]\nbig: 9223372036854775807\nwhen: 2024-01-02\n")
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    assert files.read_yaml(path, "config file", StoreError) == yaml.safe_load(text)
    assert files.parse_yaml("") is None


def test_read_yaml_names_a_directory(tmp_path):
    with pytest.raises(StoreError, match=f"config file '{tmp_path}' is a directory"):
        files.read_yaml(tmp_path, "config file", StoreError)


def test_json_is_strict_non_finite_floats_are_null(tmp_path):
    obj = {"inf": float("inf"), "ninf": -float("inf"), "nan": float("nan"), "np": np.float32("nan"),
           "ok": [1.5, np.int64(2), (3, float("inf"))], "nested": {"x": np.array([1.0, np.inf])}}
    expected = {"inf": None, "ninf": None, "nan": None, "np": None, "ok": [1.5, 2, [3, None]],
                "nested": {"x": [1.0, None]}}
    for text in (files.to_json(obj), files.to_json(obj, canonical=True)):
        assert "Infinity" not in text and "NaN" not in text
        assert json.loads(text) == expected
    write_json(tmp_path / "metrics.json", obj)
    assert json.loads((tmp_path / "metrics.json").read_text()) == expected
    assert json.loads(files.to_json({"x": float("nan")}, strict=False), parse_constant=str) == {"x": "NaN"}
