"""The entry point: one-line user errors, and a closed output pipe ends quietly."""

from __future__ import annotations

import subprocess
import sys

from shrinkbench.cli.main import main


def test_a_closed_pipe_ends_quietly_without_a_traceback(tmp_path):
    # `shrinkbench list models | head -1`: the reader closes the pipe after one line.
    reader = subprocess.Popen(["head", "-1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    writer = subprocess.run(
        [sys.executable, "-c",
         "import sys; from shrinkbench.cli.main import main\n"
         "for _ in range(500):\n"
         "    rc = main(['list', 'models'])\n"
         "    if rc: break\n"
         "sys.exit(rc)"],
        stdout=reader.stdin, stderr=subprocess.PIPE, text=True, timeout=120,
    )
    reader.stdin.close()
    first = reader.stdout.read().decode()
    reader.wait()
    assert first.count("\n") == 1 and first.strip()
    assert "Traceback" not in writer.stderr and "BrokenPipeError" not in writer.stderr
    assert writer.returncode == 141


def test_a_user_error_is_one_line_with_exit_2(tmp_path, capsys):
    assert main(["results", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("shrinkbench: error: ") and err.count("\n") == 1
    assert "missing" in err
