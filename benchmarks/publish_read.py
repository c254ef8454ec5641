"""Publishing 1M users' lists and reading them back the way the site does.

    python benchmarks/publish_read.py                     # 1M users x 20 items
    python benchmarks/publish_read.py --users 100000 --seconds 10

1. Publish: the lists as JSON lines, built column-wise (``tasks/publish.py:to_lines``) against
   the per-user loop it replaced, side by side on the same ``--compare-users`` users; then
   every shard and index of the whole run written to a local root.
2. Read: the run uploaded to SeaweedFS (``weed mini`` on 127.0.0.1, stopped by its pid),
   ``nightrecs serve`` on it, and ``--clients`` concurrent HTTP clients for ``--seconds``:
   lookups/s, p50/p99 latency, S3 requests and bytes per lookup (counted in the server);
   against the old protocol (download the user's whole shard and scan it) with the same
   clients for a few lookups. Prints Markdown tables; a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from nightrecs.tasks import layout
from nightrecs.tasks.publish import USERS_PER_SHARD, shard_of, to_lines, write_shard
from nightrecs.tasks.storage import open_root

log = logging.getLogger("publish_read")


def lists(users: int, top_n: int, items: int, seed: int = 0) -> pd.DataFrame:
    """A staged run's long frame: ``top_n`` items per user with scores and reasons."""
    rng = np.random.default_rng(seed)
    n = users * top_n
    titles = np.array([f"similar to Product {k} Deluxe Edition" for k in range(5000)]
                      + [f"popular in Category {k}" for k in range(200)], dtype=object)
    return pd.DataFrame({
        "user_id": np.repeat(np.array([f"u{u:07d}" for u in range(users)], dtype=object), top_n),
        "rank": np.tile(np.arange(1, top_n + 1, dtype=np.int32), users),
        "item_id": np.array([f"i{i:06d}" for i in range(items)], dtype=object)[rng.integers(0, items, n)],
        "score": np.sort(rng.random((users, top_n)).astype(np.float32), axis=1)[:, ::-1].ravel(),
        "reason": titles[rng.integers(0, len(titles), n)],
    })


def to_lines_loop(recs: pd.DataFrame) -> dict[str, str]:
    """The per-user loop publish used before (kept here only to compare)."""
    recs = recs.sort_values(["user_id", "rank"])
    out = {}
    for user, grp in recs.groupby("user_id", sort=True):
        items = [{"item_id": i, "score": round(float(s), 6), "reason": r}
                 for i, s, r in zip(grp["item_id"], grp["score"], grp["reason"])]
        out[user] = json.dumps({"user_id": user, "items": items}, ensure_ascii=False)
    return out


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def publish_run(root, run_id: str, recs: pd.DataFrame) -> dict:
    users, lines = to_lines(recs)
    num_shards = max(1, -(-len(users) // USERS_PER_SHARD))
    shard = shard_of(users, num_shards)
    shards = [write_shard(root, run_id, s, users[m], lines.take(m))
              for s in range(num_shards) for m in [np.flatnonzero(shard == s)]]
    root.write_text(layout.recs_fallback(run_id), '{"items":[]}')
    manifest = {"run_id": run_id, "run_date": "2026-12-01", "users": len(users), "num_shards": num_shards,
                "shards": shards, "model_version": "bench", "created_at": "2026-12-01T00:00:00+00:00",
                "fallback": {"key": "fallback.json"}}
    root.write_text(layout.recs_manifest(run_id), json.dumps(manifest))
    root.write_text(layout.RECS_LATEST, json.dumps({"run_id": run_id, "run_date": "2026-12-01",
                                                    "manifest": layout.under_recs(layout.recs_manifest(run_id))}))
    return manifest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)  # polling for readiness, not timing anything


async def load(url: str, users: list[str], clients: int, seconds: float, limit: int | None = None) -> list[float]:
    """``clients`` concurrent clients, each looping lookups; latencies in seconds."""
    import httpx

    latencies: list[float] = []
    stop = time.perf_counter() + seconds
    rng = random.Random(1)

    async def client(http: httpx.AsyncClient) -> None:
        while time.perf_counter() < stop and (limit is None or len(latencies) < limit):
            start = time.perf_counter()
            r = await http.get(f"{url}/v1/users/{rng.choice(users)}")
            r.raise_for_status()
            latencies.append(time.perf_counter() - start)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    return latencies


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--top-n", type=int, default=20)
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--compare-users", type=int, default=100_000, help="users for the side-by-side publish")
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--old-lookups", type=int, default=40, help="lookups measured with the old protocol")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="nightrecs-publish-"))

    small = lists(a.compare_users, a.top_n, a.items)
    _, t_old = timed(to_lines_loop, small)  # the old publish read the staged lists into pandas
    _, t_new = timed(to_lines, pa.Table.from_pandas(small, preserve_index=False))  # the new one: Arrow
    recs, t_gen = timed(lambda: pa.Table.from_pandas(lists(a.users, a.top_n, a.items), preserve_index=False))
    log.info("generated %d rows in %.1f s", recs.num_rows, t_gen)
    root = open_root(work / "root")
    run_id = "2026-12-01_20261201T000000Z_bench"
    (_, t_lines) = timed(to_lines, recs)
    manifest, t_pub = timed(publish_run, root, run_id, recs)
    size = sum(s["bytes"] for s in manifest["shards"])
    index = sum(s["index_bytes"] for s in manifest["shards"])
    print(f"\n### Publish ({a.users:,} users x {a.top_n} items, {manifest['num_shards']} shards)\n")
    print("| step | users | s | users/s |\n| --- | ---: | ---: | ---: |")
    print(f"| JSON lines, per-user loop (before) | {a.compare_users:,} | {t_old:.1f} | {a.compare_users / t_old:,.0f} |")
    print(f"| JSON lines, column-wise (now) | {a.compare_users:,} | {t_new:.1f} | {a.compare_users / t_new:,.0f} |")
    print(f"| JSON lines, column-wise (now) | {a.users:,} | {t_lines:.1f} | {a.users / t_lines:,.0f} |")
    print(f"| lines + shards + indexes written (local disk) | {a.users:,} | {t_pub:.1f} | {a.users / t_pub:,.0f} |")
    print(f"\nside by side on {a.compare_users:,} users: {t_old / t_new:.1f}x faster; "
          f"shards {size / 2**20:,.0f} MiB, indexes {index / 2**20:,.1f} MiB")
    del recs

    weed = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
    s3_port, http_port = free_port(), free_port()
    creds = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret"}
    env = {**os.environ, **creds, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}", "AWS_DEFAULT_REGION": "us-east-1"}
    procs = []
    try:
        procs.append(subprocess.Popen([weed, "mini", f"-dir={work / 'weed'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                                       f"-s3.port={s3_port}", "-s3.port.iceberg=0", "-s3.port.lance=0"],
                                      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True))
        (work / "weed").mkdir(exist_ok=True)
        os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
        from nightrecs.tasks.storage import s3_client

        client = s3_client()
        deadline = time.monotonic() + 120
        while True:
            try:
                client.create_bucket(Bucket="bench-recs")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)  # polling for readiness, not timing anything
        s3 = open_root("s3://bench-recs/shop")
        _, t_up = timed(s3.upload_dir, work / "root" / "recs", "recs")
        log.info("uploaded the run to SeaweedFS in %.1f s", t_up)
        server = subprocess.Popen([sys.executable, "-c", SERVER, "s3://bench-recs/shop", str(http_port)],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        procs.append(server)
        url = f"http://127.0.0.1:{http_port}"
        wait_http(f"{url}/healthz", server)
        users = [f"u{u:07d}" for u in range(a.users)]
        asyncio.run(load(url, users, 8, 60, limit=manifest["num_shards"] * 4))  # warm: every shard's index
        import httpx

        httpx.post(f"{url}/stats/reset")
        lat = np.array(asyncio.run(load(url, users, a.clients, a.seconds)))
        new = httpx.get(f"{url}/stats").json()
        httpx.post(f"{url}/stats/reset")
        old_lat = np.array(asyncio.run(load(url + "/old", users, min(a.clients, 8), 600, limit=a.old_lookups)))
        old = httpx.get(f"{url}/stats").json()
    finally:
        for proc in reversed(procs):
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n### Read ({a.users:,} users on SeaweedFS, `nightrecs serve`, {a.clients} concurrent clients "
          f"for {a.seconds:.0f} s)\n")
    print("| protocol | clients | lookups | lookups/s | p50 ms | p99 ms | S3 requests / lookup | S3 bytes / lookup |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, clients, lt, st, secs in (("ranged GET via the index (now)", a.clients, lat, new, a.seconds),
                                        ("whole shard, scanned (before)", min(a.clients, 8), old_lat, old, None)):
        rate = len(lt) / (secs or st["seconds"])
        print(f"| {name} | {clients} | {len(lt):,} | {rate:,.0f} | {np.percentile(lt, 50) * 1e3:,.1f} | "
              f"{np.percentile(lt, 99) * 1e3:,.1f} | {st['requests'] / max(st['lookups'], 1):.2f} | "
              f"{st['bytes'] / max(st['lookups'], 1):,.0f} |")


# The read service with request counting: nightrecs' app, plus the old full-shard protocol
# and counters, in the server process (what S3 sees per lookup).
SERVER = r"""
import json, sys, threading, time
import uvicorn
from fastapi import FastAPI
from nightrecs.tasks import layout
from nightrecs.tasks.publish import shard_of
from nightrecs.tasks.recs import Reader
from nightrecs.tasks.serve import app
from nightrecs.tasks.storage import open_root

root = open_root(sys.argv[1])
stats = {"requests": 0, "bytes": 0, "lookups": 0, "since": time.perf_counter()}
lock = threading.Lock()
def count(**kw):
    with lock:
        stats["requests"] += 1
def size(response_dict=None, **kw):
    with lock:
        stats["bytes"] += int(response_dict["headers"].get("content-length", 0) or 0)
root.client.meta.events.register("before-send.s3", count)
root.client.meta.events.register("before-parse.s3", size)
reader = Reader(root, refresh_seconds=3600)
api = app(reader)

@api.middleware("http")
async def lookups(request, call_next):
    if "/users/" in request.url.path:
        with lock:
            stats["lookups"] += 1
    return await call_next(request)

@api.get("/old/v1/users/{user_id}")
def old(user_id: str):
    m = reader.run()
    shard = m["shards"][int(shard_of([user_id], m["num_shards"])[0])]
    for line in root.read_text(layout.recs_shard(m["run_id"], shard["key"])).split("\n"):
        if line.startswith('{"user_id":' + json.dumps(user_id) + ","):
            return json.loads(line)
    return {}

@api.get("/stats")
def get_stats():
    with lock:
        return {**stats, "seconds": time.perf_counter() - stats["since"]}

@api.post("/stats/reset")
def reset():
    with lock:
        stats.update(requests=0, bytes=0, lookups=0, since=time.perf_counter())
    return {}

uvicorn.run(api, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""

if __name__ == "__main__":
    main()
