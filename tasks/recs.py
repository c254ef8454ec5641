"""Reading the published lists the way the web site does (``nightrecs recs``, ``nightrecs serve``).

:class:`Reader` follows the read protocol of ``tasks/publish.py``: ``LATEST`` (checked at
most every ``refresh_seconds``, by conditional GET), the run's manifest, and each shard's
index once per run; then a lookup is one ranged GET of the user's line. It holds indexes,
never the lists, and is safe to share between threads.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO

from nightrecs.tasks import layout
from nightrecs.tasks.artifacts import NoPublishedRun, current_manifest
from nightrecs.tasks.publish import shard_of
from nightrecs.tasks.storage import Root

log = logging.getLogger(__name__)


@dataclass
class _Run:
    manifest: dict
    fallback: list[dict]
    indexes: dict[int, dict[str, tuple[int, int]]] = field(default_factory=dict)


class Reader:
    """One user's current list in one ranged GET once the run's indexes are cached."""

    def __init__(self, root: Root, refresh_seconds: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.root, self.refresh_seconds, self._clock = root, refresh_seconds, clock
        self._lock = threading.Lock()
        self._run: _Run | None = None
        self._version: str | None = None
        self._checked = -float("inf")

    def run(self) -> dict:
        """The current run's manifest (raises :class:`NoPublishedRun` before the first run)."""
        return self._current().manifest

    def _current(self) -> _Run:
        with self._lock:
            if self._run is None or self._clock() - self._checked >= self.refresh_seconds:
                self._refresh()
            assert self._run is not None
            return self._run

    def _refresh(self) -> None:
        try:
            changed = self.root.read_if_changed(layout.RECS_LATEST, self._version)
        except FileNotFoundError:
            raise NoPublishedRun(f"nothing published yet under {self.root.full(layout.RECS)}") from None
        self._checked = self._clock()
        if changed is None:
            return
        data, version = changed
        manifest = json.loads(self.root.read_text(layout.recs_pointed(json.loads(data)["manifest"])))
        if self._run is None or manifest["run_id"] != self._run.manifest["run_id"]:
            fallback = []
            if "fallback" in manifest:
                key = layout.recs_shard(manifest["run_id"], manifest["fallback"]["key"])
                fallback = json.loads(self.root.read_text(key))["items"]
            self._run = _Run(manifest, fallback)
            log.info("reading run %s (%d users)", manifest["run_id"], manifest["users"])
        self._version = version

    def _index(self, run: _Run, shard: int) -> dict[str, tuple[int, int]]:
        with self._lock:
            if shard not in run.indexes:
                entry = run.manifest["shards"][shard]
                text = self.root.read_text(layout.recs_shard(run.manifest["run_id"], entry["index"]))
                run.indexes[shard] = {u: (o, n) for u, o, n in map(json.loads, text.split("\n")[:-1])}
            return run.indexes[shard]

    def get(self, user_id: str) -> dict:
        """``{"user_id", "run_id", "items", "fallback"}``: the user's list as published, or
        the run's fallback list (``fallback: true``) for a user the run does not know."""
        run = self._current()
        manifest = run.manifest
        shard = int(shard_of([user_id], manifest["num_shards"])[0])
        where = self._index(run, shard).get(user_id)
        if where is None:
            return {"user_id": user_id, "run_id": manifest["run_id"], "items": run.fallback, "fallback": True}
        key = layout.recs_shard(manifest["run_id"], manifest["shards"][shard]["key"])
        row = json.loads(self.root.read_range(key, *where))
        return {"user_id": user_id, "run_id": manifest["run_id"], "items": row["items"], "fallback": False}


def iter_lines(root: Root) -> Iterator[str]:
    """Every user's line of the current run (split on ``\\n`` only: a line is a line)."""
    manifest = current_manifest(root)
    for shard in manifest["shards"]:
        yield from root.read_text(layout.recs_shard(manifest["run_id"], shard["key"])).split("\n")[:-1]


def export(root: Root, out: IO[str], fmt: str = "jsonl") -> int:
    """Every user's current list as JSON lines (``fmt="personalize"``: the AWS Personalize
    batch output format); returns the number of users."""
    n = 0
    for line in iter_lines(root):
        if fmt == "personalize":
            row = json.loads(line)
            line = json.dumps({"input": {"userId": row["user_id"]},
                               "output": {"recommendedItems": [i["item_id"] for i in row["items"]],
                                          "scores": [i["score"] for i in row["items"]]}})
        out.write(line + "\n")
        n += 1
    return n


def export_run(root: Root, fmt: str) -> dict:
    """The current run exported into the root (``exports/<fmt>/<run_id>.jsonl``), for a
    downstream job scheduled on the published Asset."""
    run_id = current_manifest(root)["run_id"]
    out = io.StringIO()
    n = export(root, out, fmt)
    root.write_text(layout.export_file(run_id, fmt), out.getvalue())
    log.info("exported run %s (%d users) as %s to %s", run_id, n, fmt, root.full(layout.export_file(run_id, fmt)))
    return {"run_id": run_id, "users": n, "export": root.full(layout.export_file(run_id, fmt))}


def runs(root: Root) -> list[dict]:
    """The kept runs, oldest published first, the current one marked."""
    try:
        current = current_manifest(root)["run_id"]
    except NoPublishedRun:
        current = None
    out = []
    for key in root.list(layout.RECS_RUNS):
        if key.endswith("/manifest.json") and key.count("/") == 3:
            m = json.loads(root.read_text(key))
            out.append({"run_id": m["run_id"], "run_date": m["run_date"], "users": m["users"],
                        "model_version": m["model_version"], "published_at": m["created_at"],
                        "current": m["run_id"] == current})
    return sorted(out, key=lambda r: r["published_at"])
