"""`shrinkbench run | quickstart | results | list | profile`: outputs, exit codes, one-line errors."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from cli_helpers import call, write_config
from tiny_config import TINY

from shrinkbench.experiment import config_from_dict, run_id
from shrinkbench.cli import quickstart as quick

pytestmark = pytest.mark.usefixtures("single_thread")


def test_run_prints_a_summary_and_finds_a_finished_run(tmp_path, capsys):
    cfg_file = write_config(tmp_path, TINY)
    out = tmp_path / "out"
    code, stdout, err = call(["run", cfg_file, "--out", out], capsys)
    assert code == 0 and err == "", err  # no progress bars when stderr is not a terminal
    rid = run_id(config_from_dict(TINY))
    assert stdout.count("\n") == 1 and stdout.startswith(f"run {rid}: digits/convnet_digits GlobalMagWeight x4")
    assert "compression 4.00" in stdout and str(out / "runs" / rid) in stdout
    metrics = json.loads((out / "runs" / rid / "metrics.json").read_text())
    assert f"{100 * metrics['post_test_acc1']:.2f}% fine-tuned" in stdout
    mtime = (out / "runs" / rid / "metrics.json").stat().st_mtime_ns
    code, again, _ = call(["run", cfg_file, "--out", out], capsys)
    assert code == 0 and (out / "runs" / rid / "metrics.json").stat().st_mtime_ns == mtime
    assert again.split(" (")[0] == stdout.split(" (")[0]
    code, other, _ = call(["run", cfg_file, "--out", out, "--set", "pruning.compression=8"], capsys)
    assert code == 0 and "x8" in other and "compression 8.00" in other

    code, table, _ = call(["results", out], capsys)
    assert code == 0 and len(table.splitlines()) == 3 and "GlobalMagWeight" in table
    code, text, _ = call(["results", out, "--format", "json"], capsys)
    rows = json.loads(text)
    assert code == 0 and sorted(r["compression"] for r in rows) == [4.0, 8.0]
    assert {r["post_test_top1_pct"] for r in rows if r["compression"] == 4.0} == {100 * metrics["post_test_acc1"]}
    code, text, _ = call(["results", out, "--format", "csv"], capsys)
    import pandas as pd

    frame = pd.read_csv(io.StringIO(text))
    assert code == 0 and len(frame) == 2 and {"run_id", "finetune.lr", "speedup"} <= set(frame)

    code, text, _ = call(["profile", "convnet_digits", "--checkpoint", out / "runs" / rid / "model.pt"], capsys)
    assert code == 0 and "compression 4.00" in text and "conv2" in text


def test_list(capsys):
    code, text, _ = call(["list", "strategies"], capsys)
    assert code == 0 and "global_magnitude" in text and "GlobalMagWeight" in text and "random" in text
    code, text, _ = call(["list", "models"], capsys)
    assert code == 0 and any(line.startswith("lenet300 ") for line in text.splitlines())
    code, text, _ = call(["list", "datasets"], capsys)
    assert code == 0 and any(line.startswith("mnist ") and "1x28x28" in line for line in text.splitlines())


def test_profile_dense_model(capsys):
    code, text, _ = call(["profile", "lenet300", "--dataset", "mnist"], capsys)
    assert code == 0
    fc1 = next(line for line in text.splitlines() if line.lstrip().startswith("fc1"))
    assert "235,500" in fc1 and "300x784" in fc1  # 784*300 weights + 300 biases
    assert "compression 1.00" in text and "MACs 266,200 dense" in text and "speedup 1.00x" in text


@pytest.mark.parametrize("command", ["run", "quickstart", "results", "list", "profile"])
def test_help(command, capsys):
    code, text, _ = call([command, "--help"], capsys)
    assert code == 0 and text.startswith("usage: ") and command in text


def _bad_configs() -> list[tuple[str, dict | str, list[str], str]]:
    def tree(**changes):
        out = json.loads(json.dumps(TINY))
        for dotted, value in changes.items():
            node = out
            *parents, leaf = dotted.split("__")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = value
        return out

    return [
        ("negative-lr", tree(finetune__lr=-1), [], "finetune.lr: expected a positive number, got -1"),
        ("text-lr", tree(finetune__lr="fast"), [], "finetune.lr: expected a number, got 'fast'"),
        ("unknown-key", tree(finetune__lrr=0.1), [], "finetune.lrr: unknown key"),
        ("unknown-section", tree(extra={}), [], "extra: unknown key"),
        ("unknown-strategy", tree(pruning__strategy="MagicPrune"), [], "pruning.strategy: unknown pruning strategy 'MagicPrune'"),
        ("low-compression", tree(pruning__compression=0.5), [], "pruning.compression: expected a number >= 1"),
        ("unreachable", tree(model__name="mlp_digits", pruning__compression=32), [], "pruning.compression: 32 cannot be reached"),
        ("unknown-model", tree(model__name="resnet1000"), [], "model.name: unknown model 'resnet1000'"),
        ("model-option", tree(model__options={"depth": 3}), [], "model.options.depth:"),
        ("model-data-misfit", tree(model__name="vgg16"), [], "model.name: model 'vgg16' needs inputs of at least 32x32"),
        ("model-too-big", tree(model__name="lenet5"), [], "model.name: model 'lenet5' needs inputs of at least 16x16"),
        ("unknown-dataset", tree(data__name="svhn"), [], "data.name: unknown data set 'svhn'"),
        ("missing-data", tree(data__name="mnist", model__name="lenet300", data__data_dir="{tmp}"), [], "mnist"),
        ("missing-data-dir", tree(data__data_dir="{tmp}/nowhere"), [], "data.data_dir: folder"),
        ("bad-val-size", tree(data__val_size=-3), [], "data.val_size: expected an integer >= 0"),
        ("optimizer", tree(finetune__optimizer="lbfgs"), [], "finetune.optimizer: unknown optimizer 'lbfgs'"),
        ("schedule", tree(dense__recipe__schedule="exp"), [], "dense.recipe.schedule: unknown schedule 'exp'"),
        ("epochs-type", tree(finetune__epochs="two"), [], "finetune.epochs: expected an integer, got 'two'"),
        ("batch-size", tree(dense__recipe__batch_size=0), [], "dense.recipe.batch_size: expected a positive number"),
        ("momentum", tree(finetune__momentum=1), [], "finetune.momentum: expected a number in [0, 1)"),
        ("nesterov", tree(finetune__nesterov=True, finetune__momentum=0), [], "finetune.nesterov: needs optimizer sgd"),
        ("seed", tree(seed=-2), [], "seed: expected a number >= 0, got -2"),
        ("device", tree(device="gpu0"), [], "device: expected one of: auto, cpu"),
        ("precision", tree(precision="int8"), [], "precision: expected one of: fp32, bf16"),
        ("dense-file", tree(dense__source="{tmp}/dense.pt"), [], "dense.source: expected 'train' or an existing checkpoint"),
        ("dense-garbage", tree(dense__source="{tmp}/garbage.pt"), [], "garbage.pt"),
        ("dense-misfit", tree(dense__source="{tmp}/lenet300.pt"), [], "do not match the model"),
        ("not-a-mapping", "- 1\n- 2\n", [], "expected a mapping of fields at the top"),
        ("bad-yaml", "data: {name: digits\n", [], "invalid YAML at line"),
        ("set-syntax", TINY, ["--set", "finetune.lr"], "--set 'finetune.lr': expected KEY=VALUE"),
        ("set-unknown", TINY, ["--set", "finetune.rate=0.1"], "finetune.rate: unknown key"),
        ("set-range", TINY, ["--set", "pruning.score_batches=0"], "pruning.score_batches: expected a positive number"),
        ("set-not-section", TINY, ["--set", "finetune.lr.x=1"], "finetune.lr: is not a section"),
    ]


BAD_CONFIGS = _bad_configs()


@pytest.mark.parametrize("content, extra, message", [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, content, extra, message):
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    from shrinkbench.models import create

    torch.save(create("lenet300").state_dict(), tmp_path / "lenet300.pt")
    text = content if isinstance(content, str) else yaml.safe_dump(content)
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(text.replace("{tmp}", str(tmp_path)))
    out = tmp_path / "out"
    code, stdout, err = call(["run", cfg_file, "--out", out, *extra], capsys)
    assert code == 2 and stdout == ""
    assert err.count("\n") == 1 and err.startswith("shrinkbench: error: "), err
    assert message.replace("{tmp}", str(tmp_path)) in err, err
    assert not out.exists()


BAD_COMMANDS = [
    ("missing-config", ["run", "{tmp}/missing.yaml"], "config file '{tmp}/missing.yaml' does not exist"),
    ("no-config", ["run"], "the following arguments are required: CONFIG.yaml"),
    ("unknown-flag", ["run", "{tmp}/cfg.yaml", "--fast"], "unrecognized arguments: --fast"),
    ("out-is-a-file", ["run", "{tmp}/cfg.yaml", "--out", "{tmp}/cfg.yaml"], "is not a folder"),
    ("quickstart-out-is-a-file", ["quickstart", "--out", "{tmp}/cfg.yaml"], "is not a folder"),
    ("list-what", ["list", "losses"], "argument what: invalid choice: 'losses'"),
    ("model-too-big-for-digits", ["run", "{tmp}/cfg.yaml", "--out", "{tmp}/o", "--set", "model.name=resnet50"],
     "model.name: model 'resnet50' needs inputs of at least 32x32, not 8x8 (its feature maps would shrink "
     "to nothing); models for inputs this small: convnet_digits, lenet300, mlp_digits"),
    ("results-missing", ["results", "{tmp}/nowhere"], "results folder {tmp}/nowhere does not exist"),
    ("results-empty-dir", ["results", "{tmp}"], "holds no results store"),
    ("results-format", ["results", "{tmp}", "--format", "xml"], "argument --format: invalid choice: 'xml'"),
    ("profile-model", ["profile", "alexnet"], "unknown model 'alexnet'"),
    ("profile-dataset", ["profile", "lenet300", "--dataset", "svhn"], "unknown data set 'svhn'"),
    ("profile-missing", ["profile", "lenet300", "--checkpoint", "{tmp}/none.pt"], "--checkpoint: file"),
    ("profile-garbage", ["profile", "lenet300", "--checkpoint", "{tmp}/garbage.pt"], "--checkpoint: checkpoint"),
    ("profile-misfit", ["profile", "lenet5", "--checkpoint", "{tmp}/lenet300.pt"], "--checkpoint: weights"),
    ("unknown-command", ["prune"], "argument COMMAND: invalid choice: 'prune'"),
]


@pytest.mark.parametrize("argv, message", [c[1:] for c in BAD_COMMANDS], ids=[c[0] for c in BAD_COMMANDS])
def test_bad_command_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, argv, message):
    write_config(tmp_path, TINY)
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    from shrinkbench.models import create

    torch.save(create("lenet300").state_dict(), tmp_path / "lenet300.pt")
    before = sorted(p.name for p in tmp_path.iterdir())
    code, stdout, err = call([a.replace("{tmp}", str(tmp_path)) for a in argv], capsys)
    assert code == 2 and stdout == ""
    assert err.count("\n") == 1 and message.replace("{tmp}", str(tmp_path)) in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not (Path.cwd() / "shrinkbench-out").exists()


def test_quickstart_on_a_small_grid(tmp_path, capsys, monkeypatch):
    spec = tmp_path / "quick.yaml"
    spec.write_text(yaml.safe_dump({"base": {"finetune": {"epochs": 1}}, "grid": {
        "seed": [0], "pruning.strategy": ["RandomPruning", "GlobalMagWeight"], "pruning.compression": [1, 8]}}))
    monkeypatch.setattr(quick, "spec_path", lambda: spec)
    out = tmp_path / "qs"
    code, text, err = call(["quickstart", "--out", out], capsys)
    assert code == 0, err
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("strategy"))
    assert lines[header].split() == ["strategy", "x1", "x8"]
    rows = [line.split() for line in lines[header + 2:header + 4]]
    assert [row[0] for row in rows] == ["RandomPruning", "GlobalMagWeight"]
    assert rows[0][1] == rows[1][1]  # x1: one unpruned control shared by both strategies
    assert f"results: {out} (3 runs;" in text and "already done" not in text
    # one line per finished run when the output is not a terminal (2 pruned, 1 control, 1 dense)
    assert err.count("done ") == 4
    report = out / "report.html"
    mtime = report.stat().st_mtime_ns
    code, again, err = call(["quickstart", "--out", out], capsys)
    assert code == 0 and again.startswith(f"3 of 3 runs were already done in {out}; 0 run now")
    tables = lambda t: t[t.index("test top-1 after pruning"):t.index("report:")]  # noqa: E731
    assert tables(again) == tables(text) and err == ""  # found, not redone: the same tables
    assert report.stat().st_mtime_ns == mtime  # nothing changed: the report is not redrawn


def test_quickstart_spec_is_shipped_and_linked_from_examples():
    root = Path(__file__).resolve().parents[2]
    linked = root / "examples" / "sweeps" / "quickstart.yaml"
    assert linked.read_text() == quick.spec_path().read_text()
    from shrinkbench.sweep import load_spec, plan_sweep

    plan = plan_sweep(load_spec(quick.spec_path()))
    assert (len(plan.runs), len(plan.dense), plan.duplicates) == (63, 3, 9)


@pytest.mark.slow
def test_full_quickstart(tmp_path, capsys):
    out = tmp_path / "qs"
    code, text, err = call(["quickstart", "--out", out], capsys)
    assert code == 0, err
    from shrinkbench.results import load

    frame = load(out)
    assert len(frame) == 63 and set(frame["compression"]) == {1, 2, 4, 8, 16, 32}
    assert set(frame[frame["compression"] == 1]["strategy"]) == {"Unpruned"}
    means = frame.groupby(["strategy", "compression"])["pre_test_top1_pct"].mean()
    assert means[("GlobalMagWeight", 32.0)] > means[("RandomPruning", 32.0)] + 10
    assert (frame["compression_ratio"] - frame["compression"]).abs().max() < 0.05
    from shrinkbench.results import checklist

    failing = {item.rule: item.detail for item in checklist(frame) if not item.passed}
    assert failing == {}  # the quickstart passes its own reporting checklist (3 seeds and the rest)
    report = (out / "report.html").read_text(encoding="utf-8")
    assert report.index('id="summary"') < report.index('id="plots"') < report.index('id="tables"')
    assert "top-5" not in report.lower().split('id="setup"')[0]  # digits has 10 classes: top-1 only


def test_threads_flag_sets_the_runs_threads_and_its_id(tmp_path, capsys, monkeypatch):
    cfg_file = write_config(tmp_path, TINY)
    out = tmp_path / "out"
    monkeypatch.setattr(os, "cpu_count", lambda: 1)  # so that 2 threads are more than the CPUs
    code, stdout, err = call(["run", cfg_file, "--out", out, "--threads", "2", "--set",
                              "finetune.epochs=1"], capsys)
    assert code == 0, err
    expected = run_id(config_from_dict({**TINY, "threads": 2, "finetune": {**TINY["finetune"], "epochs": 1}}))
    assert stdout.startswith(f"run {expected}:")
    assert err.count("shrinkbench: warning: threads: 2 is more than the 1 CPUs") == 1 and err.count("\n") == 1
    from shrinkbench.results import load

    frame = load(out)
    assert list(frame["threads"]) == [2] and list(frame["env.torch_threads"]) == [2]
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"base": "cfg.yaml", "grid": {"seed": [0, 1]}}))
    code, text, _ = call(["sweep", spec, "--out", out, "--threads", "3", "--dry-run"], capsys)
    from shrinkbench.sweep import load_spec, plan_sweep

    ids = {run.run_id for run in plan_sweep(load_spec(spec, ["threads=3"])).runs}
    assert code == 0 and len(ids) == 2 and all(i in text for i in ids)
    code, _, err = call(["run", cfg_file, "--out", out, "--threads", "0"], capsys)
    assert code == 2 and "--threads: expected a whole number >= 1, got '0'" in err
    code, _, err = call(["run", cfg_file, "--out", out, "--threads", "2", "--set", "threads=3"], capsys)
    assert code == 2 and "threads: given both as --threads and as --set threads=...; give it once" in err
    swept = tmp_path / "swept.yaml"
    swept.write_text(yaml.safe_dump({"base": "cfg.yaml", "grid": {"threads": [1, 2]}}))
    code, _, err = call(["sweep", swept, "--out", out, "--threads", "2", "--dry-run"], capsys)
    assert code == 2 and "sweeps threads itself" in err


def test_dry_run_refuses_a_model_too_big_for_the_data(tmp_path, capsys):
    write_config(tmp_path, TINY)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"base": "cfg.yaml", "grid": {"model.name": ["convnet_digits", "resnet50"]}}))
    code, out, err = call(["sweep", spec, "--out", tmp_path / "o", "--dry-run"], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "model.name: model 'resnet50' needs inputs of at least 32x32, not 8x8" in err
    assert not (tmp_path / "o").exists()
