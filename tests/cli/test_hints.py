"""Every hint the tool prints for a missing data set is a command that works: each test reads the
hint from the error, follows it to the letter, and checks that the run then succeeds."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest
from cli_helpers import call

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "data"))
from data_files import http_server  # noqa: E402

MNIST = os.environ.get("SHRINKBENCH_TEST_MNIST")
needs_mnist = pytest.mark.skipif(
    not (MNIST and (Path(MNIST) / "mnist").is_dir()),
    reason="SHRINKBENCH_TEST_MNIST (folder holding mnist/*.gz) is not set")
CONFIG = ROOT / "examples" / "mnist_lenet300.yaml"
# A small budget: 512 training examples, one epoch each way (about 2 s on 2 cores).
SMALL = ["--set", "data.options.train_size=512", "--set", "data.val_size=256",
         "--set", "dense.recipe.epochs=1", "--set", "finetune.epochs=1", "--set", "device=cpu"]


def hinted_overrides(err: str) -> tuple[list[str], list[str]]:
    """The two `--set KEY=VALUE` overrides the missing-data error suggests: to fetch, and to point."""
    assert err.startswith("shrinkbench: error: data.name: data set 'mnist' not found") and err.count("\n") == 1
    fetch = re.search(r"fetch it with `(--set [^`]+)`", err)
    point = re.search(r"pass `(--set data\.data_dir=)DIR`", err)
    assert fetch and point, err
    return fetch.group(1).split(" ", 1), point.group(1).split(" ", 1)


def missing(tmp_path: Path, capsys) -> str:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = call(["run", CONFIG, "--out", tmp_path / "out", *SMALL,
                           "--set", f"data.data_dir={empty}"], capsys)
    assert code == 2 and out == ""
    assert not (tmp_path / "out").exists()  # nothing half-written
    return err


@needs_mnist
def test_the_download_hint_fetches_the_data_and_the_run_succeeds(tmp_path, capsys):
    fetch, _ = hinted_overrides(missing(tmp_path, capsys))
    assert fetch == ["--set", "data.download=true"]
    mirror = tmp_path / "mirror"
    shutil.copytree(Path(MNIST) / "mnist", mirror)
    with http_server(mirror) as url:  # the official mirrors, stood in for by a local server
        code, out, err = call(["run", CONFIG, "--out", tmp_path / "out", *SMALL,
                               "--set", f"data.data_dir={tmp_path / 'empty'}", *fetch,
                               "--set", f"data.options.mirror={url}"], capsys)
    assert code == 0, err
    assert out.startswith("run ") and "GlobalMagWeight x12" in out
    assert sorted(p.name for p in (tmp_path / "empty" / "mnist").iterdir()) == sorted(
        p.name for p in mirror.iterdir())


@needs_mnist
def test_the_data_dir_hint_finds_the_data_and_the_run_succeeds(tmp_path, capsys):
    _, point = hinted_overrides(missing(tmp_path, capsys))
    holder = tmp_path / "holder"
    holder.mkdir()
    (holder / "mnist").symlink_to(Path(MNIST) / "mnist")  # "the folder that holds mnist/"
    code, out, err = call(["run", CONFIG, "--out", tmp_path / "out", *SMALL,
                           point[0], point[1] + str(holder)], capsys)
    assert code == 0, err
    assert out.startswith("run ") and "GlobalMagWeight x12" in out


def test_the_hints_name_overrides_that_run_and_sweep_accept(tmp_path, capsys):
    err = missing(tmp_path, capsys)
    fetch, point = hinted_overrides(err)
    from shrinkbench.experiment import load_config

    cfg = load_config(CONFIG, [fetch[1], point[1] + str(tmp_path), *SMALL[1::2]])
    assert cfg.data.download is True and cfg.data.data_dir == str(tmp_path)
    for command in ("run", "sweep"):
        code, usage, _ = call([command, "--help"], capsys)
        assert code == 0 and "--set" in usage


def test_a_data_set_that_cannot_be_downloaded_says_so_and_names_its_folder(tmp_path, capsys):
    code, _, err = call(["run", ROOT / "examples" / "imagenet_resnet50.yaml", "--out", tmp_path / "o",
                         "--set", f"data.data_dir={tmp_path}"], capsys)
    assert code == 2 and err.count("\n") == 1 and not err.rstrip().endswith("...")
    assert "cannot be downloaded automatically" in err and "download=true" not in err
    assert "`--set data.data_dir=DIR`" in err and "`--set data.options.root=DIR`" in err
