"""load_weights: round trips, wrapped checkpoints, clear errors, safe loading, checksummed URLs."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from pathlib import Path
from typing import Iterator

import pytest
import torch
from torch import nn

from shrinkbench.errors import CheckpointError, ConfigError, DownloadError, ModelError
from shrinkbench.models import create, file_sha256, load_weights


def _model(seed: int) -> nn.Module:
    return create("mlp_digits", generator=torch.Generator().manual_seed(seed))


def _same(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def saved(tmp_path: Path) -> tuple[nn.Module, Path]:
    source = _model(0)
    path = tmp_path / "weights.pt"
    torch.save(source.state_dict(), path)
    return source, path


def test_round_trip(saved: tuple[nn.Module, Path]) -> None:
    source, path = saved
    target = _model(1)
    assert not _same(source, target)
    assert load_weights(target, path) is target
    assert _same(source, target)
    assert load_weights(_model(2), str(path), sha256=file_sha256(path)) is not None


def test_round_trip_with_batch_norm_buffers(tmp_path: Path) -> None:
    source = create("resnet20", generator=torch.Generator().manual_seed(0))
    source.train()(torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
    path = tmp_path / "resnet.pt"
    torch.save(source.state_dict(), path)
    target = load_weights(create("resnet20"), path)
    assert _same(source, target)
    assert int(target.bn1.num_batches_tracked) == 1


@pytest.mark.parametrize("wrap", ["state_dict", "model", "module."])
def test_wrapped_checkpoints(tmp_path: Path, wrap: str) -> None:
    source = _model(0)
    state = source.state_dict()
    if wrap == "module.":  # saved from DataParallel
        obj: dict = {f"module.{k}": v for k, v in state.items()}
    else:
        obj = {wrap: state, "epoch": 3, "optimizer": {"lr": 0.1}}
    path = tmp_path / "ckpt.pt"
    torch.save(obj, path)
    assert _same(source, load_weights(_model(1), path))


def test_renamed_key_is_named(saved: tuple[nn.Module, Path], tmp_path: Path) -> None:
    source, _ = saved
    state = source.state_dict()
    state["fc9.weight"] = state.pop("fc2.weight")
    path = tmp_path / "renamed.pt"
    torch.save(state, path)
    with pytest.raises(ModelError, match=r"missing keys fc2\.weight; unexpected keys fc9\.weight") as err:
        load_weights(_model(1), path)
    assert str(path) in str(err.value)


def test_many_missing_keys_are_abbreviated(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save(create("resnet20").state_dict(), path)
    pattern = r"missing keys fc1\.weight, .*unexpected keys conv1\.weight, .*\(and \d+ more\)"
    with pytest.raises(ModelError, match=pattern):
        load_weights(_model(0), path)


def test_wrong_shape_is_named(tmp_path: Path) -> None:
    path = tmp_path / "shape.pt"
    torch.save(create("mlp_digits", num_classes=5).state_dict(), path)
    target = _model(1)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(ModelError, match=r"'fc3\.weight' has shape \(5, 64\), expected \(10, 64\)"):
        load_weights(target, path)
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())  # untouched
    with pytest.raises(ModelError, match="fc3.weight"):
        load_weights(target, path, strict=False)  # shapes must agree even when not strict


def test_not_strict_loads_the_common_keys(saved: tuple[nn.Module, Path], tmp_path: Path) -> None:
    source, _ = saved
    state = {k: v for k, v in source.state_dict().items() if k.startswith("fc1.")}
    state["extra.weight"] = torch.zeros(3)
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    target = _model(1)
    fc2 = target.fc2.weight.detach().clone()
    load_weights(target, path, strict=False)
    assert torch.equal(target.fc1.weight, source.fc1.weight)
    assert torch.equal(target.fc2.weight, fc2)


def test_mask_buffers_get_a_hint(saved: tuple[nn.Module, Path], tmp_path: Path) -> None:
    source, _ = saved
    state = source.state_dict()
    state["fc1.weight_mask"] = torch.ones_like(state["fc1.weight"])
    path = tmp_path / "pruned.pt"
    torch.save(state, path)
    with pytest.raises(ModelError, match="fc1.weight_mask.*pruning masks"):
        load_weights(_model(1), path)


def test_corrupt_and_missing_files(saved: tuple[nn.Module, Path], tmp_path: Path) -> None:
    _, path = saved
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint" * 10)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    for bad in (truncated, garbage, empty):
        with pytest.raises(CheckpointError, match=f"cannot read weights file {bad}"):
            load_weights(_model(1), bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_weights(_model(1), tmp_path / "absent.pt")


def test_unsafe_pickles_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "module.pt"
    torch.save(nn.Linear(2, 2), path)  # a pickled module, not a state_dict: needs arbitrary code
    with pytest.raises(CheckpointError, match=f"{path}: it holds objects other than tensors") as err:
        load_weights(_model(0), path)
    assert "torch.nn.modules.linear.Linear" in str(err.value)


def test_non_state_dicts_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "meta.pt"
    torch.save({"epoch": 3, "lr": 0.1}, path)
    with pytest.raises(CheckpointError, match="entry 'epoch' is not a tensor"):
        load_weights(_model(0), path)
    torch.save([torch.zeros(2)], path)
    with pytest.raises(CheckpointError, match="holds no state_dict"):
        load_weights(_model(0), path)


def test_local_checksum(saved: tuple[nn.Module, Path]) -> None:
    _, path = saved
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(CheckpointError, match="expected 0{64}"):
        load_weights(_model(1), path, sha256="0" * 64)
    with pytest.raises(ConfigError, match="64 hexadecimal"):
        load_weights(_model(1), path, sha256="abc")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_url_with_checksum(saved: tuple[nn.Module, Path], server: str) -> None:
    source, path = saved
    url = f"{server}/{path.name}"
    target = load_weights(_model(1), url, sha256=file_sha256(path).upper())
    assert _same(source, target)
    wrong = "f" * 64
    with pytest.raises(DownloadError, match=f"checksum mismatch for {url}: expected sha256 {wrong}, got {file_sha256(path)}"):
        load_weights(_model(1), url, sha256=wrong)
    with pytest.raises(ConfigError, match="needs sha256"):
        load_weights(_model(1), url)
    with pytest.raises(DownloadError, match="404"):
        load_weights(_model(1), f"{server}/absent.pt", sha256=wrong)
