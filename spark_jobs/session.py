"""SparkSession setup shared by the jobs: loopback-only, quiet, sized for the machine."""

from __future__ import annotations

import os
import sys

from pyspark.sql import SparkSession


def get_spark(app: str, master: str | None = None) -> SparkSession:
    """A session on ``master`` (default ``$NIGHTRECS_SPARK_MASTER`` or ``local[*]``).

    The driver binds to 127.0.0.1 and the UI is off unless ``NIGHTRECS_SPARK_UI=1``:
    a nightly batch job should not open ports on the network.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    master = master or os.environ.get("NIGHTRECS_SPARK_MASTER", "local[*]")
    builder = (
        SparkSession.builder.appName(app)
        .master(master)
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", os.environ.get("NIGHTRECS_SPARK_UI", "0") == "1")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", os.environ.get("NIGHTRECS_SHUFFLE_PARTITIONS", "8"))
        .config("spark.driver.memory", os.environ.get("NIGHTRECS_DRIVER_MEMORY", "4g"))
        .config("spark.sql.parquet.mergeSchema", "true")
        .config("spark.ui.showConsoleProgress", "false")
    )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
