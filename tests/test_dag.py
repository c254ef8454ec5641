"""The DAG file imports cleanly, has the expected graph, and runs end to end with dag.test()."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from nightrecs.tasks.layout import param_schemas
from nightrecs.tasks.pipeline import STEPS
from tests.conftest import REPO, SHOP_DATE


@pytest.fixture(scope="module")
def airflow_db():
    from airflow.utils import db

    db.resetdb()


@pytest.fixture(scope="module")
def dag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    return bag.get_dag("nightrecs_daily")


def test_graph_and_settings(dag):
    assert dag.task_ids == ["resolve_config", *STEPS]
    order = ["resolve_config", *STEPS]
    for up, down in zip(order, order[1:]):
        assert dag.get_task(down).upstream_task_ids >= {up}
    assert dag.catchup is False and dag.max_active_runs == 1
    assert dag.get_task("build_features").retries == 2
    assert set(dag.params) == set(param_schemas())  # one Param per RunConfig field


def test_every_param_default_passes_its_own_schema(dag):
    """The web UI's trigger form validates Params with JSON Schema in the browser: a
    default that fails its schema greys out Trigger."""
    import jsonschema

    for name, param in dag.params.items():
        schema = {k: v for k, v in param.schema.items() if k != "description"}
        jsonschema.validate(param.value, schema)  # raises, naming the Param's value
        assert param.schema.get("type"), name


def test_gpu_steps_carry_the_configured_queue_and_pool(dag):
    import os
    import subprocess
    import sys

    assert dag.get_task("train_model").pool == "default_pool" and dag.get_task("build_features").queue == "default"
    assert dag.default_args["retry_exponential_backoff"] and dag.default_args["on_failure_callback"]
    code = ("from airflow.dag_processing.dagbag import DagBag; d = DagBag(dag_folder='dags').dags['nightrecs_daily']; "
            "print([(t.task_id, t.queue, t.pool) for t in d.tasks if t.queue == 'gpu'])")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                         env={**os.environ, "NIGHTRECS_GPU_QUEUE": "gpu", "NIGHTRECS_GPU_POOL": "gpu"})
    assert out.stdout.strip().splitlines()[-1] == str([("train_model", "gpu", "gpu"), ("embed_catalog", "gpu", "gpu"),
                                                                 ("retrieve", "gpu", "gpu")])


def test_dag_file_does_not_import_heavy_modules():
    import subprocess
    import sys

    code = ("import sys, runpy; runpy.run_path('dags/nightrecs_daily.py'); "
            "print(','.join(m for m in ('torch', 'pyspark', 'great_expectations', 'faiss') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1:] in ([], [""])


def test_dag_test_runs_the_whole_pipeline(dag, shop, tiny_model):
    run = dag.test(logical_date=dt.datetime.fromisoformat(SHOP_DATE).replace(tzinfo=dt.UTC),
                   run_conf={"root": str(shop), "top_n": 5, "train_epochs": 2, "segment_columns": "country",
                             "base_model": tiny_model})
    assert run.state == "success"
    latest = json.loads((shop / "recs/LATEST").read_text())
    manifest = json.loads((shop / "recs" / latest["manifest"]).read_text())
    assert manifest["run_date"] == SHOP_DATE and manifest["users"] == 120 and manifest["top_n"] == 5
    shard = (shop / "recs" / latest["manifest"]).parent / manifest["shards"][0]["key"]
    reasons = [i["reason"] for line in shard.read_text().splitlines() for i in json.loads(line)["items"]]
    assert all(reasons) and any(r.startswith("popular with country ") for r in reasons)

    # the publish emitted an asset event naming the run; the example consumer reads it and exports
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        events = (session.query(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                  .filter(AssetModel.name == "nightrecs_published").all())
        extras = [e.extra for e in events]
    assert {"run_id": latest["run_id"], "run_date": SHOP_DATE, "users": 120, "current": True,
            "root": str(shop)} in extras
    consumer = DagBag(dag_folder=str(REPO / "dags")).dags["nightrecs_personalize_export"]
    assert [a.name for a in consumer.timetable.asset_condition.objects] == ["nightrecs_published"]
    assert consumer.test().state == "success"
    exported = (shop / "exports/personalize" / f"{latest['run_id']}.jsonl").read_text().splitlines()
    row = json.loads(exported[0])
    assert len(exported) == 120 and set(row) == {"input", "output"} and len(row["output"]["recommendedItems"]) == 5


def test_failed_gate_fails_the_run_without_retries(dag, shop):
    import pandas as pd

    path = shop / "raw/users/part-00000.parquet"
    pd.read_parquet(path).assign(user_id=None).to_parquet(path)
    run = dag.test(logical_date=dt.datetime.fromisoformat(SHOP_DATE).replace(tzinfo=dt.UTC),
                   run_conf={"root": str(shop)})
    assert run.state == "failed"
    states = {ti.task_id: (ti.state, ti.try_number) for ti in run.get_task_instances()}
    assert states["validate_raw"] == ("failed", 1)
    assert not (shop / "recs").exists()
    failures = (shop / f"reports/{SHOP_DATE}/failures.log").read_text().splitlines()
    assert len(failures) == 1 and "step validate_raw of run date" in failures[0]
    assert "users: 102 of 102 rows quarantined" in failures[0] and f"reports/{SHOP_DATE}/" in failures[0]


def test_an_invalid_combination_fails_at_once(dag, shop):
    run = dag.test(logical_date=dt.datetime.fromisoformat(SHOP_DATE).replace(tzinfo=dt.UTC),
                   run_conf={"root": str(shop), "skip_training": True, "full_retrain": True})
    states = {ti.task_id: (ti.state, ti.try_number) for ti in run.get_task_instances()}
    assert run.state == "failed" and states["resolve_config"] == ("failed", 1)
    assert not (shop / "validated").exists()
