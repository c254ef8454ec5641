"""Reading the published lists the way the web site does (``nightrecs recs``)."""

from __future__ import annotations

import json
from typing import IO, Iterator

from nightrecs.tasks import layout
from nightrecs.tasks.artifacts import current_manifest
from nightrecs.tasks.publish import shard_of
from nightrecs.tasks.storage import Root


def get_user(root: Root, user_id: str) -> dict | None:
    """The user's current list, or None if the user is not in the published run."""
    manifest = current_manifest(root)
    shard = manifest["shards"][shard_of(user_id, manifest["num_shards"])]
    body = root.read_text(layout.recs_shard(manifest['run_id'], shard['key']))
    for line in body.splitlines():
        row = json.loads(line)
        if row["user_id"] == user_id:
            return row
    return None


def iter_lines(root: Root) -> Iterator[str]:
    manifest = current_manifest(root)
    for shard in manifest["shards"]:
        yield from root.read_text(layout.recs_shard(manifest['run_id'], shard['key'])).splitlines()


def export(root: Root, out: IO[str]) -> int:
    """Every user's current list as JSON lines; returns the number of users."""
    n = 0
    for line in iter_lines(root):
        out.write(line + "\n")
        n += 1
    return n
