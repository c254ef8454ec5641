"""The site's read path and the publishing protocol: ranged reads, compare-and-swap on
``LATEST``, backfills, rollback, the read service."""

from __future__ import annotations

import io
import json
import shutil
import threading
from pathlib import Path

import pandas as pd
import pytest

from nightrecs.tasks import layout
from nightrecs.tasks.layout import RunConfig
from nightrecs.tasks.publish import MAX_REASON, publish, rollback, switch_latest, to_lines, verify_run
from nightrecs.tasks.recs import Reader, export, runs
from nightrecs.tasks.storage import Root, open_root
from tests.conftest import SHOP_DATE


@pytest.fixture
def shop_copy(published_shop, tmp_path) -> Path:
    dest = tmp_path / "shop"
    shutil.copytree(published_shop, dest)
    return dest


def _upload(local: Path, root: Root) -> None:
    root.upload_dir(local / "recs", "recs")


def test_lines_escape_line_breaks_and_cap_reasons():
    recs = pd.DataFrame({"user_id": ["b", "a", "a"], "rank": [1, 2, 1], "item_id": ["i\u2028x", "j", "k"],
                         "score": [0.5, -0.25, 1.0], "reason": ["x" * 10_000, "line\u2028sep\u0085next", None]})
    users, lines = to_lines(recs)
    assert users.tolist() == ["a", "b"]
    text = "\n".join(lines.to_pylist())
    assert len(text.splitlines()) == 2  # no raw U+2028 / U+0085 left to split on
    a, b = (json.loads(line) for line in lines.to_pylist())
    assert [i["item_id"] for i in a["items"]] == ["k", "j"] and a["items"][1]["reason"] == "line\u2028sep\u0085next"
    assert [i["score"] for i in a["items"]] == [1.0, -0.25] and a["items"][0]["reason"] == ""
    assert b["items"][0]["item_id"] == "i\u2028x" and len(b["items"][0]["reason"]) == MAX_REASON


def test_index_points_at_each_users_line_and_export_matches(shop_copy):
    root = open_root(shop_copy)
    manifest = Reader(root).run()
    out = io.StringIO()
    assert export(root, out) == manifest["users"] == 120
    rows = {r["user_id"]: r for r in map(json.loads, out.getvalue().splitlines())}
    reader = Reader(root)
    for user, row in rows.items():
        got = reader.get(user)
        assert got["items"] == row["items"] and not got["fallback"] and got["run_id"] == manifest["run_id"]
    unknown = reader.get("nobody")
    assert unknown["fallback"] and len(unknown["items"]) == 10
    assert [i["score"] for i in unknown["items"]] == sorted((i["score"] for i in unknown["items"]), reverse=True)


def test_one_ranged_get_per_warm_lookup_on_s3(shop_copy, s3_env):
    root = open_root(f"s3://{s3_env['bucket']}/shop")
    _upload(shop_copy, root)
    requests: list[str] = []
    root.client.meta.events.register("before-send.s3", lambda request, **kw: requests.append(
        f"{request.method} {request.url.split('?')[0].rsplit('/', 1)[-1]} {request.headers.get('Range', b'')}"))
    reader = Reader(root, refresh_seconds=3600)
    shard = next((shop_copy / "recs/runs").iterdir()) / "part-00000.jsonl"
    users = [json.loads(line)["user_id"] for line in shard.read_text().split("\n")[:-1]]
    reader.get(users[0])  # LATEST, manifest, fallback, the shard's index, the line
    assert len(requests) == 5, requests
    requests.clear()
    for user in users[1:21]:
        assert reader.get(user)["user_id"] == user
    assert len(requests) == 20 and all(r.startswith("GET part-00000.jsonl") and "bytes=" in r for r in requests)


def test_reader_follows_latest_by_conditional_get(shop_copy):
    root = open_root(shop_copy)
    now = [0.0]
    reader = Reader(root, refresh_seconds=10, clock=lambda: now[0])
    first = reader.run()["run_id"]
    second = publish(RunConfig(root=str(shop_copy), date=SHOP_DATE, top_n=10))["run_id"]
    assert reader.run()["run_id"] == first  # not checked again before refresh_seconds
    now[0] = 11.0
    assert reader.run()["run_id"] == second


def test_backfill_leaves_latest_unless_promoted_and_rollback(shop_copy, caplog):
    root = open_root(shop_copy)
    today = Reader(root).run()
    later = {**today, "run_id": "2026-03-20_20260320T000000Z_later", "run_date": "2026-03-20"}
    root.write_text(layout.recs_manifest(later["run_id"]), json.dumps(later))
    for shard in today["shards"]:  # the same objects under the later run, so it verifies
        for name in (shard["key"], shard["index"]):
            root.write_bytes(layout.recs_shard(later["run_id"], name),
                             root.read_bytes(layout.recs_shard(today["run_id"], name)))
    root.write_bytes(layout.recs_fallback(later["run_id"]), root.read_bytes(layout.recs_fallback(today["run_id"])))
    assert rollback(root, later["run_id"])["current"]  # a later run date: now current

    backfill = publish(RunConfig(root=str(shop_copy), date=SHOP_DATE, top_n=10))
    assert not backfill["current"] and "a backfill" in caplog.text
    assert Reader(root).run()["run_id"] == later["run_id"]
    listed = runs(root)
    assert {r["run_id"]: r["current"] for r in listed}[later["run_id"]] is True
    assert {"run_id", "run_date", "users", "model_version", "published_at", "current"} == set(listed[0])

    promoted = publish(RunConfig(root=str(shop_copy), date=SHOP_DATE, top_n=10, promote=True))
    assert promoted["current"] and Reader(root).run()["run_id"] == promoted["run_id"]

    assert rollback(root, backfill["run_id"])["current"]
    assert Reader(root).run()["run_id"] == backfill["run_id"]
    shard = layout.recs_shard(promoted["run_id"], "part-00000.jsonl")
    root.write_bytes(shard, root.read_bytes(shard).replace(b'"score":', b'"score": ', 1))
    with pytest.raises(RuntimeError, match="does not match the manifest"):
        rollback(root, promoted["run_id"])
    with pytest.raises(LookupError, match="pruned"):
        rollback(root, "2020-01-01_20200101T000000Z_gone")
    assert Reader(root).run()["run_id"] == backfill["run_id"]  # refused rollbacks change nothing


def _race(root: Root, template: dict, n: int = 8) -> list[bool]:
    """n publishers switch at once, each to a run of its own date."""
    barrier = threading.Barrier(n)
    won: list[bool] = [False] * n

    def one(k: int) -> None:
        manifest = {**template, **_run(f"2026-04-{k + 1:02d}")}
        barrier.wait()
        won[k] = switch_latest(root, manifest, promote=False)[0]

    threads = [threading.Thread(target=one, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return won


@pytest.fixture(params=["local", "s3"])
def any_root(request, tmp_path) -> Root:
    if request.param == "local":
        return open_root(tmp_path / "root")
    return open_root(f"s3://{request.getfixturevalue('s3_env')['bucket']}/race")


def _run(date: str) -> dict:
    return {"run_id": f"{date}_x", "run_date": date}


def test_a_publisher_that_loses_the_swap_re_reads_and_re_decides(any_root):
    root = any_root
    assert switch_latest(root, _run("2026-04-01"), promote=False)[0]
    real = root.put_if

    def newer_publisher_first(key: str, data: bytes, version: str | None) -> bool:
        root.put_if = real  # once: between our read of LATEST and our write, another run switches
        assert switch_latest(root, _run("2026-04-09"), promote=False)[0]
        return real(key, data, version)

    root.put_if = newer_publisher_first
    switched, why = switch_latest(root, _run("2026-04-05"), promote=False)
    assert not switched and "a backfill" in why  # refused (412), read again, saw the newer date
    assert json.loads(root.read_text(layout.RECS_LATEST))["run_date"] == "2026-04-09"


def test_racing_publishers_never_move_latest_back(any_root):
    root = any_root
    template = {"shards": []}
    for _ in range(10):
        _race(root, template)
        pointer = json.loads(root.read_text(layout.RECS_LATEST))
        # without compare-and-swap a publisher that read an older pointer overwrites a newer one
        assert pointer["run_date"] == "2026-04-08", pointer
        root.delete_prefix(layout.RECS_LATEST)


def test_verify_refuses_a_missing_object(shop_copy):
    root = open_root(shop_copy)
    manifest = Reader(root).run()
    root.delete_prefix(layout.recs_shard(manifest["run_id"], manifest["shards"][0]["index"]))
    with pytest.raises(RuntimeError, match="is missing"):
        verify_run(root, manifest)


def test_read_service_endpoints(shop_copy, tmp_path):
    from fastapi.testclient import TestClient

    from nightrecs.tasks.serve import app

    root = open_root(shop_copy)
    first = next(iter(export_rows(root)))
    with TestClient(app(Reader(root))) as client:
        assert client.get("/healthz").json() == {"run_id": Reader(root).run()["run_id"]}
        got = client.get(f"/v1/users/{first['user_id']}").json()
        assert got["items"] == first["items"] and got["fallback"] is False
        unknown = client.get("/v1/users/nobody").json()
        assert unknown["fallback"] is True and len(unknown["items"]) == 10
        assert "/v1/users/{user_id}" in client.get("/openapi.json").json()["paths"]
    with TestClient(app(Reader(open_root(tmp_path / "empty")))) as client:
        assert client.get("/healthz").status_code == 503
        assert client.get("/v1/users/u1").status_code == 503


def export_rows(root: Root) -> list[dict]:
    out = io.StringIO()
    export(root, out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_serve_process_on_s3_keeps_credentials_out_of_its_logs(shop_copy, s3_env, tmp_path):
    """``nightrecs -v serve`` as a real process on 127.0.0.1, stopped by its pid."""
    import os
    import subprocess
    import sys
    import time

    import httpx

    from tests.conftest import REPO, free_port, stop_process_group

    root = open_root(f"s3://{s3_env['bucket']}/shop")
    _upload(shop_copy, root)
    port = free_port()
    log_file = tmp_path / "serve.log"
    with open(log_file, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "nightrecs.tasks.cli", "-v", "serve", "--root", root.uri,
                                 "--port", str(port)], cwd=REPO, env={**os.environ}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                    break
                except httpx.HTTPError:
                    assert proc.poll() is None and time.monotonic() < deadline, log_file.read_text()[-2000:]
                    time.sleep(0.2)  # polling for readiness, not timing anything
            assert health.status_code == 200
            user = export_rows(open_root(shop_copy))[3]
            got = httpx.get(f"http://127.0.0.1:{port}/v1/users/{user['user_id']}").json()
            assert got["items"] == user["items"]
        finally:
            stop_process_group(proc)
    text = log_file.read_text()
    assert "GET /v1/users/" in text  # the access log
    assert s3_env["AWS_ACCESS_KEY_ID"] not in text and s3_env["AWS_SECRET_ACCESS_KEY"] not in text
