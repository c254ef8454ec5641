"""Step 7: publish the lists atomically: write the run, verify it, switch ``LATEST`` last.

Layout under ``<root>/recs/`` (the read protocol, for a site in any language, is in the README)::

    runs/<run_id>/part-00000.jsonl        one JSON line per user, sorted by user id
    runs/<run_id>/part-00000.index.jsonl  one line per user: [user_id, offset, length]
    runs/<run_id>/fallback.json           the list for a user the run does not know
    runs/<run_id>/manifest.json           run metadata; every object's size and sha256
    runs/<run_id>/model/                  the model that made the run (the next runs' champion)
    LATEST                                {"run_id", "run_date", "manifest", "published_at"}

A user's shard is ``crc32(utf-8 user_id) % num_shards``; its line is bytes ``[offset,
offset + length)`` of the shard: one ranged GET. ``LATEST`` is replaced by
compare-and-swap (:meth:`Root.put_if`), never to an older run date unless asked
(``promote``), so a backfill, a rollback or a second publisher cannot undo a newer switch;
until it is replaced, readers keep seeing the previous run in full.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import uuid
import zlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from nightrecs.tasks import layout
from nightrecs.tasks.artifacts import copy_model, model_meta, read_pointer
from nightrecs.tasks.layout import RunConfig
from nightrecs.tasks.storage import Root, open_root

log = logging.getLogger(__name__)

USERS_PER_SHARD = 50_000
MAX_REASON = 200  # characters: a 10 KB title must not make a 10 KB reason
STALE_RUN = dt.timedelta(hours=6)  # a run folder without a manifest this old is a dead publish
FORMAT = "jsonl+index/v1"
# JSON allows these raw inside strings, but many line readers (Python's splitlines, some
# JavaScript) split on them: escape them so a line is a line everywhere.
_LINE_BREAKS = {"\u0085": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_PLAIN = r'^[^"\\\x00-\x1f\x{85}\x{2028}\x{2029}]*$'  # RE2: strings JSON-quoted as they are


class SwitchConflict(RuntimeError):
    """``LATEST`` kept changing under us: other publishers are racing."""


def shard_of(user_ids: np.ndarray | list[str], num_shards: int) -> np.ndarray:
    """The shard of each user: ``crc32(utf-8 user_id) % num_shards``."""
    crc = np.fromiter((zlib.crc32(u.encode("utf-8")) for u in user_ids), np.int64, len(user_ids))
    return crc % num_shards


def json_string(value: str | None, cap: int | None = None) -> str:
    """A JSON string literal; line breaks other than ``\\n`` escaped, at most ``cap`` characters."""
    text = "" if value is None else str(value)
    if cap is not None and len(text) > cap:
        text = text[:cap - 1] + "\u2026"
    text = json.dumps(text, ensure_ascii=False)
    for raw, escaped in _LINE_BREAKS.items():
        text = text.replace(raw, escaped)
    return text


def _json_strings(values: pa.Array | pa.ChunkedArray, cap: int | None = None) -> pa.Array:
    """Each value as a JSON string literal, encoding each distinct value once."""
    codes = pc.dictionary_encode(pc.fill_null(pc.cast(values, pa.string()), ""))
    if isinstance(codes, pa.ChunkedArray):
        codes = codes.combine_chunks()
    distinct = codes.dictionary
    plain = pc.match_substring_regex(distinct, _PLAIN)  # nothing to escape: just quote it
    if cap is not None:
        plain = pc.and_(plain, pc.less_equal(pc.utf8_length(distinct), cap))
    special = np.full(len(distinct), None, dtype=object)
    for k in np.flatnonzero(~plain.to_numpy(zero_copy_only=False)):
        special[k] = json_string(distinct[k].as_py(), cap)
    encoded = pc.if_else(plain, pc.binary_join_element_wise('"', distinct, '"', ""), pa.array(special, pa.string()))
    return encoded.take(codes.indices)


def _decimals(x: np.ndarray) -> pa.Array:
    """Scores as JSON numbers with 6 decimals, formatted in bulk."""
    x = np.asarray(x, np.float64)
    if not np.isfinite(x).all():
        raise ValueError(f"{int((~np.isfinite(x)).sum())} list scores are not finite numbers")
    micro = np.rint(x * 1e6).astype(np.int64)
    digits = pc.utf8_lpad(pc.cast(pa.array(np.abs(micro)), pa.string()), 7, "0")
    sign = pa.array(np.where(micro < 0, "-", ""), pa.string())
    return pc.binary_join_element_wise(sign, pc.utf8_slice_codeunits(digits, 0, -6), ".",
                                       pc.utf8_slice_codeunits(digits, -6), "")


def _table(rows: pd.DataFrame | pa.Table) -> pa.Table:
    return rows if isinstance(rows, pa.Table) else pa.Table.from_pandas(rows, preserve_index=False)


def _item_json(rows: pa.Table) -> pa.Array:
    """One ``{"item_id", "score", "reason"}`` object per list row."""
    return pc.binary_join_element_wise(
        '{"item_id":', _json_strings(rows["item_id"]), ',"score":',
        _decimals(rows["score"].to_numpy()), ',"reason":', _json_strings(rows["reason"], MAX_REASON), "}", "")


def _sorted(t: pa.Table) -> bool:
    """Rows ordered by (user_id, rank)?"""
    if t.num_rows < 2:
        return True
    user, rank = t["user_id"], t["rank"]
    head = lambda col: col.slice(0, t.num_rows - 1)  # noqa: E731
    tail = lambda col: col.slice(1)  # noqa: E731
    same = pc.equal(tail(user), head(user))
    ordered = pc.or_(pc.greater(tail(user), head(user)), pc.and_(same, pc.greater(tail(rank), head(rank))))
    return bool(pc.all(ordered).as_py())


def to_lines(recs: pd.DataFrame | pa.Table) -> tuple[np.ndarray, pa.Array]:
    """(user ids sorted, each user's JSON line ``{"user_id", "items": [...]}``, items best
    first), built column-wise in Arrow: no per-user Python loop."""
    t = _table(recs)
    if not _sorted(t):  # retrieve stages the lists sorted already: no 20M-row take then
        t = t.take(pc.sort_indices(t, [("user_id", "ascending"), ("rank", "ascending")]))
    codes = pc.dictionary_encode(t["user_id"].combine_chunks())  # sorted: codes rise with the rows
    idx = codes.indices.to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(np.diff(idx, prepend=-1)) if len(idx) else np.empty(0, np.int64)
    users = np.array(codes.dictionary.to_pylist(), dtype=object)
    offsets = pa.array(np.append(starts, len(idx)).astype(np.int32))
    items = pc.binary_join(pa.ListArray.from_arrays(offsets, _item_json(t)), ",")
    lines = pc.binary_join_element_wise('{"user_id":', _json_strings(codes.dictionary), ',"items":[', items,
                                        "]}", "")
    return users, lines


def fallback_json(rows: pd.DataFrame | pa.Table) -> str:
    """The run's list for users it does not know: ``{"items": [...]}``."""
    t = _table(rows)
    items = ",".join(_item_json(t.take(pc.sort_indices(t, [("rank", "ascending")]))).to_pylist())
    return '{"items":[' + items + "]}"


def write_shard(root: Root, run_id: str, shard: int, users: np.ndarray, lines: pa.Array) -> dict:
    """One shard and its index; returns its manifest entry."""
    lengths = pc.binary_length(lines).to_numpy(zero_copy_only=False).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]]).astype(np.int64)
    body = ("\n".join(lines.to_pylist()) + "\n" if len(lines) else "").encode("utf-8")
    index_lines = pc.binary_join_element_wise(
        "[", _json_strings(pa.array(users, pa.string())), ",", pc.cast(pa.array(starts), pa.string()), ",",
        pc.cast(pa.array(lengths), pa.string()), "]", "")
    index = ("\n".join(index_lines.to_pylist()) + "\n" if len(users) else "").encode("utf-8")
    key, index_key = layout.shard_names(shard)
    root.write_bytes(layout.recs_shard(run_id, key), body)
    root.write_bytes(layout.recs_shard(run_id, index_key), index)
    return {"key": key, "users": len(users), "bytes": len(body), "sha256": hashlib.sha256(body).hexdigest(),
            "index": index_key, "index_bytes": len(index), "index_sha256": hashlib.sha256(index).hexdigest()}


def publish(cfg: RunConfig) -> dict:
    root = open_root(cfg.root)
    recs = root.read_arrow(layout.staging(cfg.date))
    embeddings_meta = json.loads(root.read_text(layout.embeddings(cfg.date, "meta.json")))
    meta = model_meta(root, layout.model_dir(cfg.date))
    if meta["version"] != embeddings_meta["model_version"]:
        raise RuntimeError(f"the embeddings of {cfg.date} were made by model {embeddings_meta['model_version']}, "
                           f"but {root.full(layout.model_dir(cfg.date))} holds {meta['version']}: rerun embed")
    users, lines = to_lines(recs)
    num_shards = max(1, math.ceil(len(users) / USERS_PER_SHARD))
    now = dt.datetime.now(dt.UTC)
    run_id = f"{cfg.date}_{now:%Y%m%dT%H%M%SZ}_{uuid.uuid4().hex[:6]}"
    shard = shard_of(users, num_shards)
    shards = []
    for s in range(num_shards):
        mine = np.flatnonzero(shard == s)
        shards.append(write_shard(root, run_id, s, users[mine], lines.take(pa.array(mine))))
    fallback = fallback_json(root.read_arrow(layout.staging_fallback(cfg.date))).encode("utf-8")
    root.write_bytes(layout.recs_fallback(run_id), fallback)
    manifest = {
        "run_id": run_id, "run_date": cfg.date, "created_at": now.isoformat(),
        "model_version": embeddings_meta["model_version"], "top_n": cfg.top_n,
        "users": len(users), "rows": recs.num_rows, "format": FORMAT,
        "num_shards": num_shards, "shard_key": "crc32(utf-8 user_id) % num_shards",
        "shards": shards, "model": layout.under_recs(layout.run_model(run_id)),
        "fallback": {"key": "fallback.json", "bytes": len(fallback), "sha256": hashlib.sha256(fallback).hexdigest()},
    }
    copy_model(root, layout.model_dir(cfg.date), layout.run_model(run_id))
    root.write_text(layout.recs_manifest(run_id), json.dumps(manifest, indent=2))
    verify_run(root, manifest)
    switched, why = switch_latest(root, manifest, promote=cfg.promote)
    removed = prune_runs(root, keep=cfg.keep_runs)
    log.info("published %d users in %d shard(s) as %s; %s", len(users), num_shards,
             root.full(layout.recs_run(run_id)), why)
    return {"run_id": run_id, "run_date": cfg.date, "manifest": root.full(layout.recs_manifest(run_id)),
            "users": len(users), "shards": num_shards, "current": switched, "pruned": removed}


def _objects(manifest: dict) -> list[tuple[str, str]]:
    """(name in the run, sha256) of every object the manifest lists."""
    objects = [(s["key"], s["sha256"]) for s in manifest["shards"]]
    objects += [(s["index"], s["index_sha256"]) for s in manifest["shards"] if "index" in s]
    if "fallback" in manifest:
        objects.append((manifest["fallback"]["key"], manifest["fallback"]["sha256"]))
    return objects


def verify_run(root: Root, manifest: dict) -> None:
    """Read every object of the run back and compare it with the manifest."""
    for name, sha in _objects(manifest):
        key = layout.recs_shard(manifest["run_id"], name)
        try:
            ok = hashlib.sha256(root.read_bytes(key)).hexdigest() == sha
        except FileNotFoundError:
            raise RuntimeError(f"{root.full(key)} is missing: run {manifest['run_id']} is incomplete") from None
        if not ok:
            raise RuntimeError(f"{root.full(key)} does not match the manifest of run {manifest['run_id']}")


def switch_latest(root: Root, manifest: dict, promote: bool, attempts: int = 20) -> tuple[bool, str]:
    """Point ``LATEST`` at the run by compare-and-swap, unless the current run has a later
    run date and ``promote`` is not set. Returns (switched, what happened, for the log)."""
    pointer = {"run_id": manifest["run_id"], "run_date": manifest["run_date"],
               "manifest": layout.under_recs(layout.recs_manifest(manifest["run_id"]))}
    for _ in range(attempts):
        current, version = read_pointer(root)
        if current and current["run_date"] > manifest["run_date"] and not promote:
            return False, (f"LATEST stays at {current['run_id']} (run date {current['run_date']}, later than "
                           f"{manifest['run_date']}): a backfill; set promote to point LATEST at it")
        body = json.dumps({**pointer, "published_at": dt.datetime.now(dt.UTC).isoformat()}).encode("utf-8")
        if root.put_if(layout.RECS_LATEST, body, version) is not None:
            before = f" (was {current['run_id']})" if current else ""
            return True, f"LATEST -> {manifest['run_id']}{before}"
        log.info("LATEST changed while switching (another publisher): reading it again")
    raise SwitchConflict(f"{root.full(layout.RECS_LATEST)} changed {attempts} times while switching to "
                         f"{manifest['run_id']}; the run is published but not current")


def rollback(root: Root, run_id: str) -> dict:
    """Point ``LATEST`` back at a kept run, after checking every object against its manifest."""
    try:
        manifest = json.loads(root.read_text(layout.recs_manifest(run_id)))
    except FileNotFoundError:
        raise LookupError(f"run {run_id} has no manifest under {root.full(layout.RECS_RUNS)}: "
                          f"pruned, never finished, or mistyped (see `nightrecs recs runs`)") from None
    verify_run(root, manifest)
    switched, why = switch_latest(root, manifest, promote=True)
    log.info("rollback: %s", why)
    return {"run_id": run_id, "run_date": manifest["run_date"], "current": switched}


def _published_at(run_id: str) -> dt.datetime | None:
    """The publish time in a run id (``<date>_<YYYYmmddTHHMMSSZ>_<hex>``)."""
    try:
        return dt.datetime.strptime(run_id.split("_")[1], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except (IndexError, ValueError):
        return None


def prune_runs(root: Root, keep: int, now: dt.datetime | None = None) -> list[str]:
    """Delete all but the ``keep`` most recently published complete runs, and run folders
    without a manifest older than ``STALE_RUN`` (a publish that died); never the current run."""
    current = read_pointer(root)[0]
    current_id = current["run_id"] if current else None
    keys = root.list(layout.RECS_RUNS)
    runs = sorted({k.split("/")[2] for k in keys}, key=lambda r: (_published_at(r) or dt.datetime.min.replace(
        tzinfo=dt.UTC), r))
    complete = {k.split("/")[2] for k in keys if k.endswith("/manifest.json")}
    now = now or dt.datetime.now(dt.UTC)
    done = [r for r in runs if r in complete]
    old = [r for r in done[:-keep] if r != current_id]
    dead = [r for r in runs if r not in complete and r != current_id
            and (_published_at(r) is None or now - _published_at(r) > STALE_RUN)]
    for r in old + dead:
        root.delete_prefix(layout.recs_run(r))
    if dead:
        log.warning("deleted %d run folder(s) without a manifest (publishes that died): %s", len(dead), dead)
    return sorted(old + dead)
