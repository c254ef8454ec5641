"""The CLI against a real S3 server: demo data, a full run, reading lists back."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from nightrecs.tasks.storage import open_root
from tests.conftest import REPO, SHOP_DATE


def nightrecs(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nightrecs.tasks.cli", *args], cwd=REPO,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=900)


def test_run_and_read_on_s3(s3_env, tiny_model, tmp_path):
    root = f"s3://{s3_env['bucket']}/shop"
    env = {k: v for k, v in s3_env.items() if k != "bucket"}
    made = nightrecs("demo-data", "--root", root, "--users", "80", "--items", "40", "--days", "6",
                     "--end-date", SHOP_DATE, env=env)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["users"] == 80

    run = nightrecs("run", "--root", root, "--date", SHOP_DATE, "--top-n", "7",
                    "--train-epochs", "2", "--base-model", tiny_model, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout.splitlines()[-1])["users"] == 80

    got = nightrecs("recs", "get", "--root", root, "u000003", env=env)
    assert got.returncode == 0, got.stderr
    row = json.loads(got.stdout)
    assert row["user_id"] == "u000003" and len(row["items"]) == 7 and row["fallback"] is False

    out = tmp_path / "all.jsonl"
    exported = nightrecs("recs", "export", "--root", root, "--out", str(out), env=env)
    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 80 and {"user_id": "u000003", "items": row["items"]} in lines

    # everything lives in the bucket: features, model, lists, reports
    s3 = open_root(root)
    for prefix in ("features", "models", "embeddings", "recs/runs", "reports"):
        assert s3.list(prefix), prefix
    assert s3.exists("recs/LATEST")


def test_unknown_user_gets_the_fallback_and_bad_arguments_exit_non_zero(published_shop, tmp_path):
    got = nightrecs("recs", "get", "--root", str(published_shop), "nobody", env={})
    assert got.returncode == 0, got.stderr
    row = json.loads(got.stdout)
    assert row["fallback"] is True and len(row["items"]) == 10 and "not in run" in got.stderr
    bad = nightrecs("run", "--root", str(published_shop), "--date", "22/11/2026", env={})
    assert bad.returncode == 1 and "YYYY-MM-DD" in bad.stderr
    missing = tmp_path / "no-such-root"
    for args in (["run", "--root", str(missing), "--date", SHOP_DATE], ["recs", "runs", "--root", str(missing)]):
        res = nightrecs(*args, env={})
        assert res.returncode == 64 and "does not exist" in res.stderr, res.stderr
    assert not missing.exists()  # a usage error creates nothing


def test_bad_input_exits_2_with_the_reason(shop):
    import pandas as pd

    path = shop / "raw/catalog/part-00000.parquet"
    pd.read_parquet(path).drop(columns=["title"]).to_parquet(path)
    res = nightrecs("run", "--root", str(shop), "--date", SHOP_DATE, env={})
    assert res.returncode == 2
    assert "raw/catalog/part-00000.parquet: missing required column 'title'" in res.stderr


@pytest.mark.skipif(not os.environ.get("NIGHTRECS_TEST_S3A_JARS"),
                    reason="needs the hadoop-aws jars (make test fetches them)")
def test_spark_reads_and_writes_s3a(s3_env, tiny_model, shop):
    """With NIGHTRECS_SPARK_JARS set, the feature job runs on s3a:// paths (no staging) and
    computes what it computes on a local root."""
    from nightrecs.tasks.layout import RunConfig
    from nightrecs.tasks.pipeline import run_step

    root = f"s3://{s3_env['bucket']}/shop"
    s3 = open_root(root)
    for path in sorted(p for p in shop.joinpath("raw").rglob("*.parquet")):
        s3.write_bytes(path.relative_to(shop).as_posix(), path.read_bytes())
    env = {k: v for k, v in s3_env.items() if k != "bucket"}
    env["NIGHTRECS_SPARK_JARS"] = os.environ["NIGHTRECS_TEST_S3A_JARS"]
    run = nightrecs("run", "--root", root, "--date", SHOP_DATE, "--top-n", "5", "--train-epochs", "1",
                    "--base-model", tiny_model, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    # Spark's own committer wrote these (the staging upload skips _ files)
    assert s3.exists(f"features/{SHOP_DATE}/histories/_SUCCESS")

    cfg = RunConfig(root=str(shop), date=SHOP_DATE)
    run_step("validate_raw", cfg)
    run_step("build_features", cfg)
    for table in ("histories", "item_features", "exclusions"):
        a = s3.read_parquet(f"features/{SHOP_DATE}/{table}")
        b = open_root(shop).read_parquet(f"features/{SHOP_DATE}/{table}")
        key = [c for c in ("user_id", "item_id", "other_id") if c in a.columns]
        pd.testing.assert_frame_equal(a.sort_values(key, ignore_index=True),
                                      b.sort_values(key, ignore_index=True), check_exact=False)


def test_unreachable_object_storage_is_one_clear_line(tmp_path):
    """After the client's bounded retries, an S3 outage ends in one line, not a traceback."""
    from tests.conftest import free_port

    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}", "AWS_ACCESS_KEY_ID": "k",
           "AWS_SECRET_ACCESS_KEY": "s", "AWS_DEFAULT_REGION": "us-east-1"}
    res = nightrecs("recs", "runs", "--root", "s3://down/shop", env=env)
    assert res.returncode == 1
    errors = [line for line in res.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "object storage error" in errors[0] and "127.0.0.1" in errors[0], res.stderr
    assert "Traceback" not in res.stderr
