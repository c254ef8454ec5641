"""On a real standalone Spark cluster (two workers) the feature job gives the same tables as
local mode, and retrieve's per-user work the same lists as in process."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from tests.conftest import SHOP_DATE


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Master and two one-core workers on 127.0.0.1; yields the master URL; stopped by pid."""
    from nightrecs.spark_jobs.standalone import standalone_cluster

    with standalone_cluster(tmp_path_factory.mktemp("spark-cluster"), workers=2) as url:
        yield url


def test_cluster_output_equals_local(cluster, shop, tmp_path):
    from nightrecs.spark_jobs import features as job
    from nightrecs.spark_jobs.session import get_spark
    from nightrecs.tasks.layout import RunConfig
    from nightrecs.tasks.validate_raw import validate_raw

    days = validate_raw(RunConfig(root=str(shop), date=SHOP_DATE))["ingested_days"]
    events, catalog = str(shop / "validated/events"), str(shop / f"validated/{SHOP_DATE}/catalog.parquet")
    outputs = {}
    for name, master in (("local", "local[2]"), ("cluster", cluster)):
        spark = get_spark(f"nightrecs-{name}", master=master)
        assert spark.sparkContext.master == master
        try:
            out = tmp_path / name
            cleaned = job.clean_days(spark, events, str(out / "clean"), days, catalog, str(out / "q"))
            outputs[name] = cleaned, job.build_features(spark, str(out / "clean"), catalog, str(out / "features"),
                                                        SHOP_DATE)
        finally:
            spark.stop()
    assert outputs["local"] == outputs["cluster"] and outputs["local"][1]["histories"] > 0
    for table in ("clean/user_item_day", "features/histories", "features/user_features", "features/item_features",
                  "features/exclusions", "features/bots"):
        a, b = (pd.read_parquet(tmp_path / n / table) for n in ("local", "cluster"))
        key = [c for c in ("dt", "user_id", "item_id", "other_id") if c in a.columns]
        a, b = (x.sort_values(key).reset_index(drop=True) for x in (a, b))
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9)


def test_lists_on_the_cluster_equal_the_lists_in_process(cluster, published_shop, tiny_model, tmp_path, monkeypatch):
    from nightrecs.tasks import layout
    from nightrecs.tasks.layout import RunConfig
    from nightrecs.tasks.retrieve import retrieve
    from nightrecs.tasks.storage import open_root

    shutil.copytree(published_shop, tmp_path / "shop")
    cfg = RunConfig(root=str(tmp_path / "shop"), date=SHOP_DATE, top_n=10, base_model=tiny_model, list_workers=1)
    root = open_root(cfg.root)
    monkeypatch.setenv("NIGHTRECS_LIST_CHUNK_USERS", "16")  # 120 users: 8 chunks, 8 Spark tasks
    staged, results = {}, {}
    for name, master in (("in process", None), ("cluster", cluster)):
        if master:
            monkeypatch.setenv("NIGHTRECS_SPARK_MASTER", master)
        else:
            monkeypatch.delenv("NIGHTRECS_SPARK_MASTER", raising=False)
        results[name] = retrieve(cfg)
        staged[name] = (root.read_parquet(layout.staging(cfg.date)),
                        root.read_parquet(layout.staging_fallback(cfg.date)))
        parts = [k for k in root.list(layout.staging(cfg.date)) if k.endswith(".parquet")]
        assert len(parts) == results[name]["chunks"] >= 8
    assert results["cluster"]["where"] == "on Spark" and results["in process"]["where"] == "in this process"
    assert not root.exists(layout.staging_lists_state(cfg.date))  # the shared state is cleaned up
    (a, fa), (b, fb) = staged["in process"], staged["cluster"]
    assert a["user_id"].nunique() == results["cluster"]["users"] > 100
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    pd.testing.assert_frame_equal(fa, fb, check_exact=True)
    assert {k: v for k, v in results["cluster"].items() if k not in ("where", "lists_seconds")} == {
        k: v for k, v in results["in process"].items() if k not in ("where", "lists_seconds")}
