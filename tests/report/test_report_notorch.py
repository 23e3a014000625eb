"""The report layer and its CLI module import neither torch nor pyplot."""

from __future__ import annotations

import subprocess
import sys


def test_report_imports_no_torch_and_no_pyplot():
    code = (
        "import sys\n"
        "import shrinkbench.report.report, shrinkbench.report.litout, shrinkbench.cli.report_cmd\n"
        "import shrinkbench.report.schedules, shrinkbench.report.schedule_plots\n"
        "bad = [m for m in ('torch', 'matplotlib.pyplot') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_report_module_defers_matplotlib_and_scipy_stats():
    # the report command's start-up: matplotlib comes with the first figure, scipy.stats never
    code = (
        "import sys\n"
        "import shrinkbench.report.report, shrinkbench.report.schedules\n"
        "bad = [m for m in ('matplotlib', 'scipy.stats') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
