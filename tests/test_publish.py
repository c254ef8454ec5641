"""Publishing is atomic: readers see the old run or the new one, never a mix."""

from __future__ import annotations

import io
import json

import pytest

from nightrecs.tasks import layout
from nightrecs.tasks.layout import RunConfig
from nightrecs.tasks.publish import prune_runs, publish, shard_of
from nightrecs.tasks.artifacts import NoPublishedRun, current_manifest
from nightrecs.tasks.recs import Reader, export
from nightrecs.tasks.storage import LocalRoot, open_root
from tests.conftest import SHOP_DATE


def test_published_lists_are_complete_and_readable(published_shop):
    root = open_root(published_shop)
    manifest = current_manifest(root)
    assert manifest["users"] == 120 and manifest["top_n"] == 10
    assert manifest["model_version"].startswith("m-")
    out = io.StringIO()
    assert export(root, out) == 120
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    catalog = root.read_parquet("raw/catalog")
    in_stock = set(catalog.loc[catalog["in_stock"].fillna(True), "item_id"])
    for row in rows:
        ids = [i["item_id"] for i in row["items"]]
        assert len(ids) == len(set(ids)) and set(ids) <= in_stock
        scores = [i["score"] for i in row["items"]]
        assert scores == sorted(scores, reverse=True)
    assert Reader(root).get(rows[5]["user_id"])["items"] == rows[5]["items"]


def test_bought_items_are_not_recommended(published_shop):
    root = open_root(published_shop)
    excl = root.read_parquet(layout.features(SHOP_DATE, "exclusions"))
    recs = root.read_parquet(layout.staging(SHOP_DATE))
    clash = recs.merge(excl, on=["user_id", "item_id"])
    assert len(excl) > 0 and clash.empty


def test_failed_publish_leaves_latest_alone(published_shop, tmp_path, monkeypatch):
    import shutil

    shutil.copytree(published_shop, tmp_path / "shop")
    root_dir = tmp_path / "shop"
    before = (root_dir / "recs/LATEST").read_text()
    writes = []

    def flaky(self, key, data):
        writes.append(key)
        if key.endswith("manifest.json"):
            raise OSError("disk full")
        original(self, key, data)

    original = LocalRoot.write_bytes
    monkeypatch.setattr(LocalRoot, "write_bytes", flaky)
    with pytest.raises(OSError, match="disk full"):
        publish(RunConfig(root=str(root_dir), date=SHOP_DATE, top_n=10))
    assert any(k.endswith(".jsonl") for k in writes)  # shards were written ...
    assert (root_dir / "recs/LATEST").read_text() == before  # ... but never pointed to


def test_shards_and_pruning(tmp_path):
    import datetime as dt

    root = open_root(tmp_path)
    for i in range(5):  # published on days 1..5; the current one (day 1, a rollback) is kept
        root.write_text(f"recs/runs/2026-01-0{i + 1}_2026010{i + 1}T000000Z_x/manifest.json", "{}")
    current = "2026-01-01_20260101T000000Z_x"
    root.write_text("recs/LATEST", json.dumps({"run_id": current, "run_date": "2026-01-01"}))
    root.write_text("recs/runs/2026-01-06_20260106T000000Z_dead/part-00000.jsonl", "")  # died mid-publish
    root.write_text("recs/runs/2026-01-06_20260106T110000Z_busy/part-00000.jsonl", "")  # publishing now
    removed = prune_runs(root, keep=2, now=dt.datetime(2026, 1, 6, 12, tzinfo=dt.UTC))
    assert removed == ["2026-01-02_20260102T000000Z_x", "2026-01-03_20260103T000000Z_x",
                       "2026-01-06_20260106T000000Z_dead"]
    assert sorted({k.split("/")[2] for k in root.list("recs/runs")}) == [
        current, "2026-01-04_20260104T000000Z_x", "2026-01-05_20260105T000000Z_x",
        "2026-01-06_20260106T110000Z_busy"]
    shards = shard_of(["u1", "u1", "u2"], 7)
    assert shards[0] == shards[1] and ((0 <= shards) & (shards < 7)).all()


def test_nothing_published_yet(tmp_path):
    with pytest.raises(NoPublishedRun):
        Reader(open_root(tmp_path)).get("u1")
