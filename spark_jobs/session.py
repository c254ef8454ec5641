"""SparkSession setup shared by the jobs: loopback-only, quiet, sized for the machine."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pyspark.sql import SparkSession


def s3a_enabled() -> bool:
    """Spark can reach ``s3a://`` when the hadoop-aws and AWS SDK jars are configured."""
    return bool(os.environ.get("NIGHTRECS_SPARK_JARS"))


def s3a_settings() -> dict[str, str]:
    """S3A settings from the standard AWS variables. Durations are plain numbers because
    hadoop-aws 3.3 cannot parse the '60s'-style defaults of Spark's Hadoop 3.5 client."""
    settings = {
        "fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        "fs.s3a.access.key": os.environ.get("AWS_ACCESS_KEY_ID", ""),
        "fs.s3a.secret.key": os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
        "fs.s3a.connection.establish.timeout": "5000", "fs.s3a.connection.timeout": "200000",
        "fs.s3a.connection.ttl": "300000", "fs.s3a.threads.keepalivetime": "60",
        "fs.s3a.multipart.purge.age": "86400", "fs.s3a.retry.interval": "500",
        "fs.s3a.retry.throttle.interval": "100", "fs.s3a.assumed.role.session.duration": "1800",
    }
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        settings.update({"fs.s3a.endpoint": endpoint, "fs.s3a.path.style.access": "true",
                         "fs.s3a.connection.ssl.enabled": str(endpoint.startswith("https")).lower()})
    return settings


AWS_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL",
                 "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "AWS_REGION")
LOG4J = Path(__file__).with_name("log4j2.properties")  # warnings on stdout, not Spark's stderr banner


def get_spark(app: str, master: str | None = None) -> SparkSession:
    """A session on ``master`` (default ``$NIGHTRECS_SPARK_MASTER`` or ``local[*]``).

    The driver binds to 127.0.0.1 and the UI is off unless ``NIGHTRECS_SPARK_UI=1``:
    a nightly batch job should not open ports on the network. Where executors run on other
    hosts (a container network, a cluster) ``NIGHTRECS_SPARK_DRIVER_HOST`` is the address
    they reach the driver at, and the driver binds every interface.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    master = master or os.environ.get("NIGHTRECS_SPARK_MASTER", "local[*]")
    driver_host = os.environ.get("NIGHTRECS_SPARK_DRIVER_HOST", "127.0.0.1")
    builder = (
        SparkSession.builder.appName(app)
        .master(master)
        .config("spark.driver.host", driver_host)
        .config("spark.driver.bindAddress", "127.0.0.1" if driver_host == "127.0.0.1" else "0.0.0.0")
        .config("spark.ui.enabled", os.environ.get("NIGHTRECS_SPARK_UI", "0") == "1")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", os.environ.get("NIGHTRECS_SHUFFLE_PARTITIONS", "8"))
        .config("spark.driver.memory", os.environ.get("NIGHTRECS_DRIVER_MEMORY", "4g"))
        .config("spark.sql.parquet.mergeSchema", "true")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile=file:{LOG4J}")
    )
    for name in AWS_VARIABLES:  # Python work on the executors (boto3) reaches S3 as the driver does
        if os.environ.get(name):
            builder = builder.config(f"spark.executorEnv.{name}", os.environ[name])
    jars = os.environ.get("NIGHTRECS_SPARK_JARS")
    if jars:
        builder = builder.config("spark.jars", jars)
        for key, value in s3a_settings().items():
            builder = builder.config(f"spark.hadoop.{key}", value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
