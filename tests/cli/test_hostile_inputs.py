"""Hostile and broken inputs: each ends in one line on stderr naming what is wrong, exit 2, no
traceback, nothing half-written."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import sqlite3
import time
from pathlib import Path

import pytest
import torch
import yaml

from cli_helpers import call
from cli_helpers import write_config as write
from tiny_config import tiny

from shrinkbench.cli.main import MAX_ERROR_CHARS
from shrinkbench.common import set_dotted
from shrinkbench.errors import CompressionError
from shrinkbench.experiment import config_from_dict
from shrinkbench.models import create

PREFIX = "shrinkbench: error: "
TINY = tiny(dense={"epochs": 1}, finetune={"epochs": 1})
BIG = "1" + "0" * 400


def refused(argv, capsys, *fragments: str) -> str:
    """Run `argv`, check it ends in one short error line (exit 2) holding `fragments`; the line."""
    code, _, err = call(argv, capsys)
    assert code == 2, err
    assert err.startswith(PREFIX) and err.count("\n") == 1, err
    assert "Traceback" not in err and "\x1b" not in err
    assert len(err) <= len(PREFIX) + MAX_ERROR_CHARS + 1
    for fragment in fragments:
        assert fragment in err, err
    return err


def write_config(folder: Path, tree: dict | None = None, name: str = "cfg.yaml") -> Path:
    return write(folder, tree or TINY, name)


# 1. integers beyond 64 bits


@pytest.mark.parametrize("how, field", [("yaml", "seed"), ("set", "seed"), ("set", "finetune.lr"),
                                        ("set", "finetune.epochs"), ("yaml", "finetune.epochs"),
                                        ("set", "model.options.width")])
def test_a_400_digit_integer_is_refused_naming_the_field(tmp_path, capsys, how, field):
    out = tmp_path / "out"
    if how == "yaml":
        tree = copy.deepcopy(TINY)
        set_dotted(tree, field, "PLACEHOLDER")
        path = tmp_path / "big.yaml"
        path.write_text(yaml.safe_dump(tree).replace("PLACEHOLDER", BIG))
        argv = ["run", path, "--out", out]
    else:
        argv = ["run", write_config(tmp_path), "--out", out, "--set", f"{field}={BIG}"]
    refused(argv, capsys, f"{field}: expected", "401 digits")
    assert not out.exists()


def test_an_integer_too_long_for_python_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    refused(["run", write_config(tmp_path), "--out", out, "--set", "seed=1" + "0" * 5000], capsys,
            "--set seed: an integer with too many digits")
    path = tmp_path / "huge.yaml"
    path.write_text(f"seed: 1{'0' * 5000}\n")
    refused(["run", path, "--out", out], capsys, f"config file '{path}'", "too many digits")
    assert not out.exists()


# 2-4. YAML: cycles, deep nesting, alias bombs, duplicate keys


def _options_yaml(options_text: str) -> str:
    body = {k: v for k, v in TINY.items() if k != "model"}
    return yaml.safe_dump(body) + "model:\n  name: convnet_digits\n  options:\n" + "".join(
        f"    {line}\n" for line in options_text.splitlines())


@pytest.mark.parametrize("text, fragment", [
    (_options_yaml("x: &a [1, *a]"), "refers to itself"),
    (_options_yaml("x: &a {y: *a}"), "refers to itself"),
    (_options_yaml("x: " + "[" * 3000 + "]" * 3000), "nested more than"),
    (_options_yaml("x: " + "{a: " * 3000 + "1" + "}" * 3000), "nested more than"),
])
def test_self_referencing_and_deeply_nested_yaml_are_refused(tmp_path, capsys, text, fragment):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    refused(["run", path, "--out", tmp_path / "out"], capsys, f"config file '{path}'", fragment)
    refused(["sweep", path, "--out", tmp_path / "out"], capsys, f"sweep spec '{path}'", fragment)
    refused(["run", write_config(tmp_path, name="ok.yaml"), "--out", tmp_path / "out", "--set",
             "model.options.x=" + text.split("x: ", 1)[1].split("\n")[0]], capsys, "--set", fragment)
    assert not (tmp_path / "out").exists()


LAUGHS = "a: &a [1,1,1,1,1,1,1,1,1]\n" + "".join(
    f"{name}: &{name} [{','.join(['*' + prev] * 9)}]\n" for prev, name in zip("abcdefgh", "bcdefghi"))


def test_an_alias_bomb_is_refused_at_once(tmp_path, capsys):
    path = tmp_path / "bomb.yaml"
    path.write_text(_options_yaml(LAUGHS))
    assert len(path.read_bytes()) < 600  # about 10**9 values once expanded
    began = time.perf_counter()
    refused(["run", path, "--out", tmp_path / "out"], capsys, f"config file '{path}'",
            "aliases expand to more than")
    assert time.perf_counter() - began < 10
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text, key", [
    ("seed: 1\nseed: 2\n", "'seed'"),
    ("finetune:\n  lr: 0.1\n  epochs: 1\n  lr: 0.2\n", "'lr'"),
    ("model:\n  name: mlp_digits\n  options: {hidden: [8], hidden: [16]}\n", "'hidden'"),
])
def test_duplicate_keys_are_refused_naming_key_and_file(tmp_path, capsys, text, key):
    path = tmp_path / "dup.yaml"
    path.write_text(yaml.safe_dump({"device": "cpu"}) + text)
    refused(["run", path, "--out", tmp_path / "out"], capsys, f"config file '{path}'",
            f"duplicate key {key}")
    assert not (tmp_path / "out").exists()


# 5. options of the wrong type

PLUGIN = '''
from torch import nn
from shrinkbench.models import register_model


@register_model("hostile_width_net", input_shape=(1, 8, 8), num_classes=10, family="test")
def hostile_width_net(num_classes, input_shape, generator=None, width=8):
    """A plugin model that trusts its option to be a number."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, int(width)), nn.ReLU(),
                          nn.Linear(int(width), num_classes))
    model.shrinkbench_classifier = "3"
    return model
'''


@pytest.mark.parametrize("overrides, fragments", [
    (["data.options.split_seed=x"], ["data.options.split_seed: expected an integer"]),
    (["data.options.split_seed=[1]"], ["data.options.split_seed: expected an integer"]),
    (["data.options.train_size=[1]"], ["data.options.train_size"]),
    (["data.name=synthetic", "data.options.shape=[1,8,8]", "data.options.augmentation=[1]"],
     ["data.options:", "'synthetic'", "augmentation"]),
    (["data.name=imagefolder", "data.options.root=[1]"], ["data.options:", "'imagefolder'", "root"]),
    (["data.name=imagefolder", "data.options.mean=abc"], ["data.options:", "mean"]),
    (["model.name=mlp_digits", "model.options.hidden=abc"], ["model.options:", "hidden"]),
])
def test_options_of_the_wrong_type_are_one_line(tmp_path, capsys, overrides, fragments):
    argv = ["run", write_config(tmp_path), "--out", tmp_path / "out"]
    for item in overrides:
        argv += ["--set", item]
    refused(argv, capsys, *fragments)
    assert not (tmp_path / "out").exists()


def test_a_model_option_a_constructor_chokes_on_is_one_line(tmp_path, capsys, monkeypatch):
    from shrinkbench.models import MODELS

    monkeypatch.setattr(MODELS, "_items", dict(MODELS._items))  # the plugin's model goes with the test
    plugin = tmp_path / "hostile_plugin.py"
    plugin.write_text(PLUGIN)
    argv = ["run", write_config(tmp_path), "--out", tmp_path / "out", "--plugin", plugin,
            "--set", "model.name=hostile_width_net", "--set", "model.options.width=abc"]
    refused(argv, capsys, "model.options: model 'hostile_width_net' cannot use", "width")
    assert not (tmp_path / "out").exists()


# 6, 10, 11. checkpoints: sparse, meta, unsafe, a directory


def _state(kind: str) -> dict:
    state = create("convnet_digits", generator=torch.Generator().manual_seed(0)).state_dict()
    if kind == "sparse":
        state["conv1.weight"] = state["conv1.weight"].to_sparse()
    elif kind == "meta":
        state = {k: v.to("meta") for k, v in state.items()}
    return state


class NotATensor:
    """A class that safe loading must refuse to unpickle."""


@pytest.mark.parametrize("kind, fragment", [
    ("sparse", "'conv1.weight' is a sparse tensor (layout torch.sparse_coo)"),
    ("meta", "'conv1.weight' is a meta tensor"),
])
def test_sparse_or_meta_checkpoints_are_refused(tmp_path, capsys, kind, fragment):
    path = tmp_path / f"{kind}.pt"
    torch.save(_state(kind), path)
    refused(["profile", "convnet_digits", "--checkpoint", path], capsys, "--checkpoint", str(path),
            fragment)
    refused(["run", write_config(tmp_path), "--out", tmp_path / "out", "--set",
             f"dense.source={path}"], capsys, str(path), fragment)
    assert not (tmp_path / "out").exists()


def test_an_unsafe_checkpoint_says_why_in_one_line(tmp_path, capsys):
    path = tmp_path / "unsafe.pt"
    torch.save({"conv1.weight": NotATensor()}, path)
    for argv in (["profile", "convnet_digits", "--checkpoint", path],
                 ["run", write_config(tmp_path), "--out", tmp_path / "out", "--set",
                  f"dense.source={path}"]):
        err = refused(argv, capsys, str(path), "objects other than tensors", "Unsupported global",
                      "NotATensor")
        assert "weights_only" not in err and "\x1b" not in err
    assert not (tmp_path / "out").exists()


def test_a_directory_where_a_file_is_expected_says_so(tmp_path, capsys):
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    out = tmp_path / "out"
    cfg = write_config(tmp_path)
    refused(["run", folder, "--out", out], capsys, f"config file '{folder}' is a directory")
    refused(["sweep", folder, "--out", out], capsys, f"sweep spec '{folder}' is a directory")
    refused(["profile", "convnet_digits", "--checkpoint", folder], capsys,
            f"--checkpoint: '{folder}' is a directory")
    refused(["run", cfg, "--out", out, "--set", f"dense.source={folder}"], capsys,
            f"dense.source: '{folder}' is a directory")
    plugin = tmp_path / "plugin.py"
    plugin.mkdir()
    refused(["run", cfg, "--out", out, "--plugin", plugin], capsys, f"'{plugin}' is a directory")
    assert not out.exists()


# 7. damaged run files


def _finished_run(tmp_path: Path, capsys) -> tuple[Path, Path, Path]:
    cfg = write_config(tmp_path)
    out = tmp_path / "out"
    code, _, err = call(["run", cfg, "--out", out], capsys)
    assert code == 0, err
    rid = config_from_dict(TINY).run_id
    return cfg, out, out / "runs" / rid


def _forget_store(out: Path) -> None:
    for path in out.glob("results.sqlite*"):
        path.unlink()


@pytest.mark.parametrize("name", ["metrics.json", "epochs.csv"])
def test_a_truncated_run_file_makes_the_run_redone(tmp_path, capsys, name):
    cfg, out, folder = _finished_run(tmp_path, capsys)
    before = json.loads((folder / "metrics.json").read_text())
    _forget_store(out)  # the store no longer says it is done: the folder is what counts
    data = (folder / name).read_bytes()
    (folder / name).write_bytes(data[: len(data) // 2])
    code, stdout, err = call(["run", cfg, "--out", out], capsys)
    assert code == 0 and "Traceback" not in err, err
    after = json.loads((folder / "metrics.json").read_text())
    assert after["post_test_acc1"] == before["post_test_acc1"] and "fine-tuned" in stdout
    assert (folder / "epochs.csv").read_bytes().endswith(b"\n")
    lines = (folder / "epochs.csv").read_text().splitlines()
    assert len(lines) == 1 + TINY["finetune"]["epochs"]


def test_a_finished_run_with_null_metrics_prints_its_summary(tmp_path, capsys):
    cfg, out, folder = _finished_run(tmp_path, capsys)
    _forget_store(out)
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics.update(speedup=None, compression_ratio=None, time_total_s=None)  # inf and nan, written
    (folder / "metrics.json").write_text(json.dumps(metrics))
    code, stdout, err = call(["run", cfg, "--out", out], capsys)
    assert code == 0 and "Traceback" not in err, err
    assert "compression nan, speedup nanx" in stdout


def test_a_truncated_dense_metrics_file_retrains_the_dense_model(tmp_path, capsys):
    cfg, out, folder = _finished_run(tmp_path, capsys)
    dense = next((out / "dense").iterdir())
    before = json.loads((dense / "metrics.json").read_text())
    _forget_store(out)
    (dense / "metrics.json").write_text('{"dense_test_acc1": 0.')
    code, _, err = call(["run", cfg, "--out", out, "--force"], capsys)
    assert code == 0 and "Traceback" not in err, err
    assert json.loads((dense / "metrics.json").read_text())["dense_test_acc1"] == before["dense_test_acc1"]


def test_results_and_report_ignore_damaged_run_files(tmp_path, capsys):
    _, out, folder = _finished_run(tmp_path, capsys)
    for name in ("metrics.json", "epochs.csv", "layers.csv"):
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: len(data) // 3])
    code, text, err = call(["results", out], capsys)
    assert code == 0 and "GlobalMagWeight" in text and err == "", err
    code, text, err = call(["report", out], capsys)
    assert code == 0 and text.strip().endswith("report.html") and "Traceback" not in err, err


# 8. an unwritable report path


def test_a_report_under_a_regular_file_is_one_line(tmp_path, capsys):
    _, out, _ = _finished_run(tmp_path, capsys)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for target in (blocker / "report.html", blocker / "sub" / "report.md"):
        refused(["report", out, "--out", target], capsys, f"report output {target} cannot be written",
                f"{blocker} is not a folder")
    assert blocker.read_text() == "not a folder"


# 9. compression beyond the float range


@pytest.mark.parametrize("compression", [10**400, float("inf"), 1e400, 10**5000],
                         ids=["10**400", "inf", "1e400", "10**5000"])
def test_prune_refuses_an_infinite_or_huge_compression(compression):
    import shrinkbench

    model = create("convnet_digits", generator=torch.Generator().manual_seed(0))
    with pytest.raises(CompressionError, match="finite number >= 1") as caught:
        shrinkbench.prune(model, "GlobalMagWeight", compression=compression)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 120
    assert not list(shrinkbench.pruning.masked_parameters(model))  # nothing was pruned


# 12. long error lines


def test_a_long_error_line_is_cut(tmp_path, capsys):
    deep = tmp_path.joinpath(*(["folder"] * 150), "cfg.yaml")
    err = refused(["run", deep, "--out", tmp_path / "out"], capsys, "config file")
    assert len(err) == len(PREFIX) + MAX_ERROR_CHARS + 1 and err.endswith("...\n")


# 13. strict JSON


def test_json_output_has_no_infinity_or_nan(tmp_path, capsys):
    _, out, folder = _finished_run(tmp_path, capsys)
    with sqlite3.connect(out / "results.sqlite") as conn:
        rid, text = conn.execute("SELECT id, metrics FROM runs WHERE kind = 'prune'").fetchone()
        metrics = json.loads(text)
        metrics.update(speedup=math.inf, post_test_loss=math.nan, macs_sparse=-math.inf)
        conn.execute("UPDATE runs SET metrics = ? WHERE id = ?", (json.dumps(metrics), rid))
    code, text, err = call(["results", out, "--format", "json"], capsys)
    assert code == 0, err
    assert "Infinity" not in text and "NaN" not in text
    row = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))[0]
    assert row["speedup"] is None and row["post_test_loss"] is None and row["macs_sparse"] is None
    assert row["compression_ratio"] == pytest.approx(4.0, abs=0.01)
    from shrinkbench.report.litout import format_summary

    text = format_summary({"median_speedup": math.inf, "pairs": [math.nan, 1.5]}, "json")
    assert json.loads(text) == {"median_speedup": None, "pairs": [None, 1.5]}


# 14. an SQLite file of another program


def test_a_foreign_sqlite_file_is_refused_and_left_unchanged(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    db = out / "results.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("create table t(x)")
    conn.commit()
    conn.close()
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    refused(["results", out], capsys, str(db), "another program")
    refused(["run", write_config(tmp_path), "--out", out], capsys, str(db), "another program")
    refused(["status", out], capsys, str(db), "another program")
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in out.iterdir()) == ["results.sqlite"]  # no -wal, -shm or runs/
