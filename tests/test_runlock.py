"""One run at a time per root: a second run is refused naming the first; a dead one's lock goes stale."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from nightrecs.tasks import layout
from nightrecs.tasks.layout import RunConfig
from nightrecs.tasks.pipeline import run_step
from nightrecs.tasks.runlock import RootBusy, run_lock
from nightrecs.tasks.storage import open_root


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    if request.param == "local":
        return open_root(tmp_path / "root")
    return open_root(f"s3://{request.getfixturevalue('s3_env')['bucket']}/lock")


def test_second_holder_is_refused_and_the_lock_is_released(root):
    with run_lock(root, "nightrecs run 2026-03-10"):
        with pytest.raises(RootBusy, match=r"in use by 'nightrecs run 2026-03-10' \(pid \d+"):
            with run_lock(root, "step publish of 2026-03-10"):
                pass
    assert not root.exists(layout.RUN_LOCK)
    with run_lock(root, "the next night"):  # free again
        assert json.loads(root.read_text(layout.RUN_LOCK))["holder"] == "the next night"


def test_a_stale_lock_is_taken_over(root, caplog):
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    root.write_text(layout.RUN_LOCK, json.dumps({"holder": "a run that died", "token": "x", "pid": 1,
                                                 "host": "gone", "since": old, "heartbeat": old}))
    with run_lock(root, "tonight", stale_seconds=600):
        assert json.loads(root.read_text(layout.RUN_LOCK))["holder"] == "tonight"
    assert "took over the run lock of 'a run that died' (pid 1 on gone, stale" in caplog.text


def test_a_dead_holder_on_this_host_is_taken_over_at_once(root, caplog):
    """A task killed with SIGKILL leaves a fresh heartbeat; its retry must not wait it out."""
    import socket
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    now = dt.datetime.now(dt.UTC).isoformat()
    root.write_text(layout.RUN_LOCK, json.dumps({"holder": "step train_model of 2026-03-10", "token": "x",
                                                 "pid": int(dead.stdout), "host": socket.gethostname(),
                                                 "since": now, "heartbeat": now}))
    with run_lock(root, "step train_model of 2026-03-10 (retry)"):
        assert json.loads(root.read_text(layout.RUN_LOCK))["holder"].endswith("(retry)")
    assert "process gone" in caplog.text


def test_heartbeat_keeps_a_long_step_alive(root):
    import threading

    beats = threading.Event()
    with run_lock(root, "long step", beat_seconds=0.05):
        first = json.loads(root.read_text(layout.RUN_LOCK))["heartbeat"]
        while json.loads(root.read_text(layout.RUN_LOCK))["heartbeat"] == first:
            beats.wait(0.05)  # polling until the heartbeat thread writes, not timing anything
    assert not root.exists(layout.RUN_LOCK)


def test_a_step_is_refused_while_a_run_holds_the_root(shop):
    root = open_root(shop)
    with run_lock(root, "nightrecs run by hand"):
        with pytest.raises(RootBusy, match="nightrecs run by hand"):
            run_step("validate_raw", RunConfig(root=str(shop), date="2026-03-10"))
    assert not root.exists("validated")  # refused before doing anything
