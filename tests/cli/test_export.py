"""`shrinkbench export`: a finished run's model as a plain state dict or CSR tensors; sizes; errors."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from cli_helpers import call
from tiny_config import tiny

import shrinkbench
from shrinkbench.cli.export_cmd import format_bytes
from shrinkbench.errors import CheckpointError, StoreError
from shrinkbench.experiment import config_from_dict
from shrinkbench.experiment.export import CSR_FORMAT, decode, find_run, load_exported
from shrinkbench.pruning.masks import load_state_dict
from shrinkbench.results.store import Store
from shrinkbench.sweep import run_experiment

BASE = tiny(dense={"epochs": 2}, pruning={"compression": 32}, finetune={"epochs": 1})
pytestmark = pytest.mark.usefixtures("single_thread")
SIZE = r"([0-9.]+) (B|kB|MB|GB)"
UNITS = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}
LINE = re.compile(rf"^exported (?P<id>[0-9a-f]{{16}}) \((?P<what>[^)]*)\) as (?P<fmt>\w+): model.pt \(weights and masks\) "
                  rf"{SIZE} -> {SIZE} \((?P<ratio>[0-9.]+)x (?P<dir>smaller|larger)\), "
                  rf"(?P<kept>[0-9,]+) of (?P<total>[0-9,]+) parameters nonzero, at (?P<path>.+)$")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """An output folder with a finished run at compression 32 and the control (compression 1)."""
    out = tmp_path_factory.mktemp("export") / "out"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pruned = config_from_dict(BASE)
        control = config_from_dict({**BASE, "pruning": {"compression": 1}})
        for cfg in (pruned, control):
            run_experiment(cfg, out, progress=False)
    finally:
        torch.set_num_threads(threads)
    return out, pruned, control


def _zoo_model() -> torch.nn.Module:
    return shrinkbench.create_model("convnet_digits", num_classes=10, input_shape=(1, 8, 8))


def _masked_model(out: Path, rid: str) -> tuple[torch.nn.Module, dict]:
    state = torch.load(out / "runs" / rid / "model.pt", weights_only=True)
    model = _zoo_model()
    load_state_dict(model, state)
    return model.eval(), state


def _check_line(stdout: str, source: Path, target: Path) -> re.Match:
    """The one printed line, its sizes equal to the files' real sizes (to the digit shown)."""
    assert stdout.count("\n") == 1, stdout
    found = LINE.match(stdout.strip())
    assert found, stdout
    before, after = source.stat().st_size, target.stat().st_size
    assert f"masks) {format_bytes(before)} -> {format_bytes(after)} (" in stdout
    groups = found.groups()
    shown = [float(groups[3]) * UNITS[groups[4]], float(groups[5]) * UNITS[groups[6]]]
    assert abs(shown[0] - before) <= 0.05 * UNITS[groups[4]]
    assert abs(shown[1] - after) <= 0.05 * UNITS[groups[6]]
    ratio = before / after
    assert found["ratio"] == (f"{ratio:.1f}" if ratio >= 1 else f"{1 / ratio:.1f}")
    assert Path(found["path"]) == target
    return found


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` (SQLite's own -wal/-shm sidecars aside) with its size and mtime."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file() and not p.name.endswith(("-wal", "-shm"))}


def test_state_dict_export_loads_strict_and_matches_the_masked_model(finished, tmp_path, capsys):
    out, cfg, _ = finished
    rid = cfg.run_id
    target = tmp_path / "plain.pt"
    code, stdout, err = call(["export", rid, "--out", out, "--to", target], capsys)
    assert code == 0 and err == "", err
    found = _check_line(stdout, out / "runs" / rid / "model.pt", target)
    assert found["id"] == rid and found["fmt"] == "state_dict"
    assert found["what"] == "digits/convnet_digits GlobalMagWeight x32 seed 0"

    state = torch.load(target, weights_only=True)
    masked, saved = _masked_model(out, rid)
    masks = {k[: -len("_mask")]: v for k, v in saved.items() if k.endswith("_mask")}
    assert set(masks) == {"conv1.weight", "conv2.weight", "fc1.weight"}
    assert not any(k.endswith("_mask") for k in state)
    assert all(v.layout == torch.strided for v in state.values())
    model = _zoo_model()
    model.load_state_dict(state, strict=True)
    model.eval()
    x = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(x), masked(x))
    for key, mask in masks.items():
        assert torch.equal(state[key], saved[key]) and int((state[key][mask == 0] != 0).sum()) == 0

    metrics = json.loads((out / "runs" / rid / "metrics.json").read_text())
    params = dict(model.named_parameters())
    nonzero = sum(int(torch.count_nonzero(state[k])) if k in masks else p.numel() for k, p in params.items())
    assert nonzero == metrics["params_nonzero"] == int(found["kept"].replace(",", ""))
    total = sum(p.numel() for p in params.values())
    assert int(found["total"].replace(",", "")) == metrics["params_total"] == total
    # the default file name, reached through a unique prefix of the id
    code, stdout, _ = call(["export", rid[:5], "--out", out], capsys)
    default = out / "runs" / rid / "export-state_dict.pt"
    assert code == 0 and stdout.rstrip().endswith(f"at {default}")
    assert default.read_bytes() == target.read_bytes()


def test_csr_export_round_trips_exactly_and_is_smaller(finished, tmp_path, capsys):
    out, cfg, _ = finished
    rid = cfg.run_id
    dense_file, csr_file = tmp_path / "dense.pt", tmp_path / "sub" / "sparse.pt"
    assert call(["export", rid, "--out", out, "--to", dense_file], capsys)[0] == 0
    code, stdout, err = call(["export", rid[:8], "--out", out, "--format", "csr", "--to", csr_file], capsys)
    assert code == 0 and err == "", err
    found = _check_line(stdout, out / "runs" / rid / "model.pt", csr_file)
    assert found["fmt"] == "csr" and found["dir"] == "smaller"

    raw = torch.load(csr_file, weights_only=True)
    assert raw["format"] == CSR_FORMAT and raw["version"] == 1
    _, saved = _masked_model(out, rid)
    sparse = {k for k, v in raw["state_dict"].items() if v.layout == torch.sparse_csr}
    assert sparse == {"conv1.weight", "conv2.weight", "fc1.weight"} == set(raw["shapes"])
    assert raw["shapes"]["conv2.weight"] == [32, 16, 3, 3]
    for key in sparse:
        csr, mask = raw["state_dict"][key], saved[key + "_mask"]
        assert csr.shape == (mask.shape[0], mask[0].numel()) and csr.crow_indices().dtype == torch.int32
        assert csr.values().numel() == int(mask.count_nonzero())  # stored entries = kept positions

    plain = torch.load(dense_file, weights_only=True)
    back = load_exported(csr_file)
    assert list(back) == list(plain)
    for key, value in plain.items():
        assert back[key].dtype == value.dtype and back[key].shape == value.shape
        assert torch.equal(back[key], value)
        if value.is_floating_point():  # bit for bit, signs of zeros included
            assert torch.equal(back[key].view(torch.int32), value.view(torch.int32))
    assert load_exported(dense_file).keys() == plain.keys()
    dense_size, csr_size = dense_file.stat().st_size, csr_file.stat().st_size
    assert csr_size * 4 < dense_size, (csr_size, dense_size)
    model = _zoo_model()
    model.load_state_dict(back, strict=True)


def test_control_run_exports_dense_tensors(finished, tmp_path, capsys):
    out, _, control = finished
    for fmt in ("state_dict", "csr"):
        target = tmp_path / f"{fmt}.pt"
        code, stdout, err = call(["export", control.run_id, "--out", out, "--format", fmt, "--to", target],
                                 capsys)
        assert code == 0 and err == "", err
        found = _check_line(stdout, out / "runs" / control.run_id / "model.pt", target)
        assert found["what"] == "digits/convnet_digits Unpruned x1 seed 0"
        assert found["kept"] == found["total"]
        state = load_exported(target)
        assert all(v.layout == torch.strided for v in state.values())
        _zoo_model().load_state_dict(state, strict=True)
    assert torch.load(tmp_path / "csr.pt", weights_only=True)["shapes"] == {}


def _error_cases():
    # (name, argv after `export`, what to break in a copy of the output folder, message part)
    return [
        ("unknown-id", ["0123456789abcdef"], None, "no run '0123456789abcdef'"),
        ("empty-id", [""], None, "RUN_ID: empty"),
        ("dense-id", ["{dense}"], None, "is a dense model, not a pruned run"),
        ("unknown-format", ["{rid}", "--format", "onnx"], None,
         "--format: unknown export format 'onnx'; choose from: state_dict, csr"),
        ("missing-model", ["{rid}"], "delete", "model.pt' does not exist"),
        ("corrupt-model", ["{rid}"], "corrupt", "cannot be loaded"),
        ("wrong-model", ["{rid}"], "wrong", "does not fit model 'convnet_digits'"),
        ("to-directory", ["{rid}", "--to", "{tmp}"], None, "is a directory"),
        ("to-under-file", ["{rid}", "--to", "{tmp}/out/results.sqlite/x.pt"], None, "--to: cannot write"),
        ("to-model-file", ["{rid}", "--to", "{tmp}/out/runs/{rid}/model.pt"], None, "is among the files of results folder"),
        ("to-store", ["{rid}", "--to", "{tmp}/out/results.sqlite"], None, "is among the files of results folder"),
        ("to-dense-model", ["{rid}", "--to", "{tmp}/out/dense/{dense}/model.pt"], None,
         "is among the files of results folder"),
        ("to-report", ["{rid}", "--to", "{tmp}/out/report.html"], None, "is among the files of results folder"),
        ("to-device", ["{rid}", "--to", "/dev/null"], None, "exists and is not a plain file"),
        ("to-trailing-slash", ["{rid}", "--to", "{tmp}/newdir/"], None, "is a directory"),
        ("no-store", ["{rid}", "--out", "{tmp}/nowhere"], None, "no results store in"),
    ]


@pytest.mark.parametrize("name,argv,damage,message", _error_cases(), ids=[c[0] for c in _error_cases()])
def test_errors_are_one_line_and_write_nothing(finished, tmp_path, capsys, name, argv, damage, message):
    source, cfg, _ = finished
    out = tmp_path / "out"
    shutil.copytree(source, out)
    model_file = out / "runs" / cfg.run_id / "model.pt"
    if damage == "delete":
        model_file.unlink()
    elif damage == "corrupt":
        model_file.write_bytes(model_file.read_bytes()[:1000])
    elif damage == "wrong":
        torch.save({"fc9.weight": torch.zeros(2, 2)}, model_file)
    names = {"rid": cfg.run_id, "dense": cfg.dense_id, "tmp": tmp_path}
    args = [a.format(**names) for a in argv]
    if "--out" not in args:
        args += ["--out", out]
    before = _files(tmp_path)
    code, stdout, err = call(["export", *args], capsys)
    assert code == 2 and stdout == "", (stdout, err)
    assert err.count("\n") == 1 and err.startswith("shrinkbench: error: ") and message in err, err
    assert _files(tmp_path) == before  # no export, no temporary file, nothing changed


def _store_with(tmp_path: Path, rows: list[tuple[str, str, str]]) -> Path:
    out = tmp_path / "store"
    with Store(out) as store:
        for rid, kind, status in rows:
            store.register(rid, kind, {"pruning": {"strategy": "none"}})
            if status == "done":
                store.finish(rid, {"params_nonzero": 1})
            elif status == "failed":
                store.fail(rid, "boom")
    return out


def test_run_lookup_by_prefix(tmp_path, capsys):
    out = _store_with(tmp_path, [("abcd000000000001", "prune", "done"),
                                 ("abcd000000000002", "prune", "done"),
                                 ("abce000000000003", "dense", "done"),
                                 ("ffff000000000004", "prune", "failed"),
                                 ("eeee000000000005", "prune", "pending")])
    assert find_run(out, "abcd000000000002")["id"] == "abcd000000000002"
    assert find_run(out, "ABCD000000000001")["id"] == "abcd000000000001"
    with pytest.raises(StoreError, match="ambiguous.*abcd000000000001, abcd000000000002"):
        find_run(out, "abcd")
    with pytest.raises(StoreError, match="is a dense model"):
        find_run(out, "abce")
    with pytest.raises(StoreError, match=r"not finished \(status failed\)"):
        find_run(out, "ffff")
    for argv, part in ((["abc"], "ambiguous"), (["eeee"], "not finished (status pending)")):
        before = _files(tmp_path)
        code, stdout, err = call(["export", *argv, "--out", out], capsys)
        assert code == 2 and stdout == "" and err.count("\n") == 1 and part in err, err
        assert _files(tmp_path) == before


def test_decode_refuses_malformed_csr_files():
    csr = torch.eye(3).to_sparse_csr()
    good = {"format": CSR_FORMAT, "version": 1, "state_dict": {"w": csr, "b": torch.ones(3)},
            "shapes": {"w": [3, 3]}}
    assert torch.equal(decode(good)["w"], torch.eye(3))
    for bad, part in (
        ({**good, "version": 2}, "version 2"),
        ({**good, "shapes": {}}, "is a sparse tensor"),
        ({**good, "shapes": {"w": [3, 1, 2]}}, "is not a CSR tensor of shape (3, 2)"),
        ({**good, "shapes": {"w": [3, 3], "x": [1, 1]}}, "'shapes' names 'x'"),
        ({**good, "shapes": {"w": "3x3"}}, "has no valid shape"),
        ({**good, "state_dict": None}, "needs 'state_dict' and 'shapes'"),
    ):
        with pytest.raises(CheckpointError, match=re.escape(part)):
            decode(bad)


def test_help(capsys):
    code, text, _ = call(["export", "--help"], capsys)
    assert code == 0 and text.startswith("usage: ") and "--format" in text and "--to" in text
