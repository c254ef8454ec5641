"""Publishing is atomic: readers see the old run or the new one, never a mix."""

from __future__ import annotations

import io
import json

import pytest

from nightrecs.tasks import layout
from nightrecs.tasks.layout import RunConfig
from nightrecs.tasks.publish import prune_runs, publish, shard_of
from nightrecs.tasks.artifacts import NoPublishedRun, current_manifest
from nightrecs.tasks.recs import export, get_user
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
    assert get_user(root, rows[5]["user_id"]) == rows[5]
    assert get_user(root, "nobody") is None


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
    root = open_root(tmp_path)
    for i in range(5):
        root.write_text(f"recs/runs/2026-01-0{i + 1}_x/part-00000.jsonl", "")
    removed = prune_runs(root, keep=2, current="2026-01-05_x")
    assert removed == ["2026-01-01_x", "2026-01-02_x", "2026-01-03_x"]
    assert sorted({k.split("/")[2] for k in root.list("recs/runs")}) == ["2026-01-04_x", "2026-01-05_x"]
    assert shard_of("u1", 7) == shard_of("u1", 7) and 0 <= shard_of("u1", 7) < 7


def test_nothing_published_yet(tmp_path):
    with pytest.raises(NoPublishedRun):
        get_user(open_root(tmp_path), "u1")
