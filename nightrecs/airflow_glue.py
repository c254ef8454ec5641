"""What both nightrecs DAGs take from Airflow itself; only dags/ imports this module."""

from __future__ import annotations

import datetime as dt
import os


def use_aws_connection() -> None:
    """Point this task process's S3 clients (boto3 and Spark's s3a) at the Airflow connection
    named by ``NIGHTRECS_AWS_CONN_ID`` (an ``aws`` connection: key, secret, optional session
    token, region and ``endpoint_url`` extra), through the amazon provider's hook. Without
    the variable, the standard AWS variables and credential chain apply, as for the CLI."""
    conn_id = os.environ.get("NIGHTRECS_AWS_CONN_ID")
    if not conn_id:
        return
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    hook = AwsBaseHook(aws_conn_id=conn_id, client_type="s3")
    creds = hook.get_credentials()
    os.environ.update({"AWS_ACCESS_KEY_ID": creds.access_key, "AWS_SECRET_ACCESS_KEY": creds.secret_key})
    if creds.token:
        os.environ["AWS_SESSION_TOKEN"] = creds.token
    if hook.conn_config.endpoint_url:
        os.environ["AWS_ENDPOINT_URL"] = hook.conn_config.endpoint_url
    if hook.conn_region_name:
        os.environ["AWS_DEFAULT_REGION"] = hook.conn_region_name


def retry_delay() -> dt.timedelta:
    """The first retry's delay (it doubles per retry): ``NIGHTRECS_RETRY_DELAY_SECONDS``, default 5 minutes."""
    return dt.timedelta(seconds=float(os.environ.get("NIGHTRECS_RETRY_DELAY_SECONDS", 300)))
