"""What reaches a task log: an Airflow task log files stderr at error level, so progress
bars and Spark's startup lines must not go there."""

from __future__ import annotations

import logging
import subprocess
import sys

from tests.conftest import REPO


def test_progress_bars_become_info_log_lines_off_a_terminal(caplog, capsys):
    from nightrecs.models.progress import progress

    with caplog.at_level(logging.INFO, logger="nightrecs.progress"):  # disable=False: the suite sets TQDM_DISABLE
        assert sum(progress(range(5), desc="embed item texts", unit="batch", disable=False)) == 10
    lines = [r for r in caplog.records if r.name == "nightrecs.progress"]
    assert lines and all(r.levelno == logging.INFO for r in lines)
    assert "embed item texts: 100%" in lines[-1].getMessage() and "\r" not in lines[-1].getMessage()
    assert "embed item texts" not in capsys.readouterr().err


def test_spark_session_keeps_its_banner_off_stderr():
    code = ("from nightrecs.spark_jobs.session import get_spark; s = get_spark('t', master='local[1]'); "
            "print('rows', s.range(3).count()); s.stop()")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "rows 3" in out.stdout, out.stderr[-2000:]
    assert "log4j" not in out.stderr and "NativeCodeLoader" not in out.stderr + out.stdout, out.stderr
