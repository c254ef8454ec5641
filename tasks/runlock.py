"""One run at a time per data root: a lock object in the root, kept alive by a heartbeat.

Two runs on one root (a CLI run next to the DAG, a second scheduler) would interleave
their writes. The lock is created by compare-and-swap (:meth:`Root.put_if`), so exactly
one holder wins, on a local folder and on S3 alike. A holder that dies stops beating; its
lock goes stale after ``STALE_SECONDS`` and the next run takes it over, saying so. A holder
on this host whose process is gone (a task killed with SIGKILL, then retried by the
scheduler) is taken over at once.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from nightrecs.tasks import layout
from nightrecs.tasks.storage import Root

log = logging.getLogger(__name__)

STALE_SECONDS = 600.0
BEAT_SECONDS = 60.0


class RootBusy(RuntimeError):
    """Another live run holds the root's lock."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@contextmanager
def run_lock(root: Root, holder: str, stale_seconds: float = STALE_SECONDS,
             beat_seconds: float = BEAT_SECONDS) -> Iterator[None]:
    """Hold the root's run lock for the block; raises :class:`RootBusy` naming the holder."""
    token = uuid.uuid4().hex
    mine = {"holder": holder, "token": token, "pid": os.getpid(), "host": socket.gethostname(),
            "since": _now().isoformat()}
    key = layout.RUN_LOCK

    def body() -> bytes:
        return json.dumps({**mine, "heartbeat": _now().isoformat()}).encode("utf-8")

    version = _acquire(root, key, body, stale_seconds)
    log.info("holding the run lock %s as %r", root.full(key), holder)
    stop = threading.Event()

    def beat() -> None:
        nonlocal version
        while not stop.wait(beat_seconds):
            version = root.put_if(key, body(), version)
            if version is None:
                log.error("the run lock %s was taken over by another run", root.full(key))
                return

    thread = threading.Thread(target=beat, name="run-lock-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        try:
            current = json.loads(root.read_versioned(key)[0])
        except FileNotFoundError:
            current = {}
        if current.get("token") == token:
            root.delete_prefix(key)
            log.info("released the run lock %s", root.full(key))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        pass
    return True


def _acquire(root: Root, key: str, body, stale_seconds: float) -> str:
    for _ in range(5):
        if (created := root.put_if(key, body(), None)) is not None:
            return created
        try:
            data, version = root.read_versioned(key)
        except FileNotFoundError:
            continue  # released meanwhile: try again
        held = json.loads(data)
        age = (_now() - dt.datetime.fromisoformat(held["heartbeat"])).total_seconds()
        dead = held["host"] == socket.gethostname() and not _alive(int(held["pid"]))
        if age <= stale_seconds and not dead:
            raise RootBusy(f"{root.full(key)}: the root is in use by {held['holder']!r} (pid {held['pid']} on "
                           f"{held['host']}, since {held['since']}, last heartbeat {age:.0f} s ago); wait for it, "
                           f"or delete the lock if that process is gone (it goes stale after "
                           f"{stale_seconds:.0f} s without a heartbeat)")
        if (taken := root.put_if(key, body(), version)) is not None:
            log.warning("took over the run lock of %r (pid %s on %s, %s, last heartbeat %.0f s ago)",
                        held["holder"], held["pid"], held["host"], "process gone" if dead else "stale", age)
            return taken
    raise RootBusy(f"{root.full(key)} kept changing while acquiring the run lock")
