"""The feature job on a real standalone Spark cluster gives the same tables as local mode."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import SHOP_DATE, free_port, stop_process_group


def _spark_class(*args: str, log: Path) -> subprocess.Popen:
    import pyspark

    home = Path(pyspark.__file__).parent
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1",
           "PYSPARK_PYTHON": sys.executable}
    return subprocess.Popen([str(home / "bin" / "spark-class"), *args], env=env,
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Master and one worker on 127.0.0.1; yields the master URL; stopped by pid."""
    tmp = tmp_path_factory.mktemp("spark-cluster")
    port, ui, worker_ui = free_port(), free_port(), free_port()
    master = _spark_class("org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                          "--port", str(port), "--webui-port", str(ui), log=tmp / "master.log")
    worker = _spark_class("org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                          "--cores", "1", "--memory", "1g", "--webui-port", str(worker_ui),
                          "--work-dir", str(tmp / "work"), f"spark://127.0.0.1:{port}",
                          log=tmp / "worker.log")
    try:
        deadline = time.monotonic() + 90
        while True:  # poll the master's status page until the worker has registered
            for p, name in ((master, "master"), (worker, "worker")):
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited:\n{(tmp / f'{name}.log').read_text()[-2000:]}")
            try:
                status = urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=2).read()
                if b'"aliveworkers" : 1' in status or b'"aliveworkers":1' in status:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("Spark worker did not register with the master")
            time.sleep(0.5)
        yield f"spark://127.0.0.1:{port}"
    finally:
        stop_process_group(worker)
        stop_process_group(master)


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
