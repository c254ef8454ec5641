"""Reading the published lists the way the web site does (``nightrecs recs``)."""

from __future__ import annotations

import json
from typing import IO, Iterator

from tasks import layout
from tasks.publish import shard_of
from tasks.storage import Root


class NoPublishedRun(LookupError):
    pass


def current_manifest(root: Root) -> dict:
    if not root.exists(layout.RECS_LATEST):
        raise NoPublishedRun(f"nothing published yet under {root.full(layout.RECS)}")
    pointer = json.loads(root.read_text(layout.RECS_LATEST))
    return json.loads(root.read_text(f"{layout.RECS}/{pointer['manifest']}"))


def get_user(root: Root, user_id: str) -> dict | None:
    """The user's current list, or None if the user is not in the published run."""
    manifest = current_manifest(root)
    shard = manifest["shards"][shard_of(user_id, manifest["num_shards"])]
    body = root.read_text(f"{layout.recs_run(manifest['run_id'])}/{shard['key']}")
    for line in body.splitlines():
        row = json.loads(line)
        if row["user_id"] == user_id:
            return row
    return None


def iter_lines(root: Root) -> Iterator[str]:
    manifest = current_manifest(root)
    for shard in manifest["shards"]:
        yield from root.read_text(f"{layout.recs_run(manifest['run_id'])}/{shard['key']}").splitlines()


def export(root: Root, out: IO[str]) -> int:
    """Every user's current list as JSON lines; returns the number of users."""
    n = 0
    for line in iter_lines(root):
        out.write(line + "\n")
        n += 1
    return n
