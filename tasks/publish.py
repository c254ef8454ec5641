"""Step 7: publish the lists atomically: write the run, verify it, switch ``LATEST`` last.

Layout under ``<root>/recs/``::

    runs/<run_id>/part-00000.jsonl ...   one JSON line per user, sharded by user id
    runs/<run_id>/manifest.json          run metadata, shard list with sizes and sha256
    runs/<run_id>/model/                 the model that made the run (the next runs' champion)
    LATEST                               {"run_id": ..., "manifest": "runs/<run_id>/manifest.json"}

A reader reads ``LATEST``, then the manifest, then the one shard holding its user
(``crc32(utf-8 user_id) % num_shards``). Until ``LATEST`` is replaced, readers keep seeing
the previous run in full; a run that fails half-way is never pointed to.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import uuid
import zlib

import pandas as pd

from nightrecs.tasks import layout
from nightrecs.tasks.artifacts import copy_model, model_meta
from nightrecs.tasks.layout import RunConfig
from nightrecs.tasks.storage import Root, open_root

log = logging.getLogger(__name__)

USERS_PER_SHARD = 50_000
KEEP_RUNS = 7


def shard_of(user_id: str, num_shards: int) -> int:
    return zlib.crc32(user_id.encode("utf-8")) % num_shards


def to_lines(recs: pd.DataFrame) -> dict[str, str]:
    """user_id -> its JSON line, items best first."""
    recs = recs.sort_values(["user_id", "rank"])
    lines = {}
    for user, grp in recs.groupby("user_id", sort=True):
        items = [{"item_id": i, "score": round(float(s), 6), "reason": r}
                 for i, s, r in zip(grp["item_id"], grp["score"], grp["reason"])]
        lines[user] = json.dumps({"user_id": user, "items": items}, ensure_ascii=False)
    return lines


def publish(cfg: RunConfig) -> dict:
    root = open_root(cfg.root)
    recs = root.read_parquet(layout.staging(cfg.date))
    embeddings_meta = json.loads(root.read_text(layout.embeddings(cfg.date, "meta.json")))
    meta = model_meta(root, layout.model_dir(cfg.date))
    if meta["version"] != embeddings_meta["model_version"]:
        raise RuntimeError(f"the embeddings of {cfg.date} were made by model {embeddings_meta['model_version']}, "
                           f"but {root.full(layout.model_dir(cfg.date))} holds {meta['version']}: rerun embed")
    lines = to_lines(recs)
    num_shards = max(1, math.ceil(len(lines) / USERS_PER_SHARD))
    now = dt.datetime.now(dt.UTC)
    run_id = f"{cfg.date}_{now:%Y%m%dT%H%M%SZ}_{uuid.uuid4().hex[:6]}"
    prefix = layout.recs_run(run_id)
    buckets: list[list[str]] = [[] for _ in range(num_shards)]
    for user, line in lines.items():
        buckets[shard_of(user, num_shards)].append(line)
    shards = []
    for s, bucket in enumerate(buckets):
        body = ("\n".join(bucket) + "\n" if bucket else "").encode("utf-8")
        key = f"part-{s:05d}.jsonl"
        root.write_bytes(layout.recs_shard(run_id, key), body)
        shards.append({"key": key, "users": len(bucket), "bytes": len(body),
                       "sha256": hashlib.sha256(body).hexdigest()})
    manifest = {
        "run_id": run_id, "run_date": cfg.date, "created_at": now.isoformat(),
        "model_version": embeddings_meta["model_version"], "top_n": cfg.top_n,
        "users": len(lines), "rows": len(recs), "format": "jsonl",
        "num_shards": num_shards, "shard_key": "crc32(utf-8 user_id) % num_shards",
        "shards": shards, "model": layout.under_recs(layout.run_model(run_id)),
    }
    copy_model(root, layout.model_dir(cfg.date), layout.run_model(run_id))
    root.write_text(layout.recs_manifest(run_id), json.dumps(manifest, indent=2))
    verify_run(root, manifest)
    pointer = {"run_id": run_id, "manifest": layout.under_recs(layout.recs_manifest(run_id)),
               "published_at": dt.datetime.now(dt.UTC).isoformat()}
    root.write_text(layout.RECS_LATEST, json.dumps(pointer))  # the switch: one small object
    removed = prune_runs(root, keep=KEEP_RUNS, current=run_id)
    log.info("published %d users in %d shard(s) as %s", len(lines), num_shards, root.full(prefix))
    return {"run_id": run_id, "manifest": root.full(layout.recs_manifest(run_id)),
            "users": len(lines), "shards": num_shards, "pruned": removed}


def verify_run(root: Root, manifest: dict) -> None:
    """Read every shard back and compare with the manifest before switching ``LATEST``."""
    for shard in manifest["shards"]:
        key = layout.recs_shard(manifest["run_id"], shard["key"])
        if hashlib.sha256(root.read_bytes(key)).hexdigest() != shard["sha256"]:
            raise RuntimeError(f"shard {root.full(key)} does not match its manifest")


def prune_runs(root: Root, keep: int, current: str) -> list[str]:
    """Delete all but the newest ``keep`` runs (never the current one)."""
    runs = sorted({k.split("/")[2] for k in root.list(layout.RECS_RUNS)})
    old = [r for r in runs[:-keep] if r != current] if len(runs) > keep else []
    for r in old:
        root.delete_prefix(layout.recs_run(r))
    return old
