"""
### nightrecs_daily

Every night: gate the raw data, build Spark features, train the two-tower model,
embed the catalog, retrieve and rank with FAISS, gate the lists, evaluate them against
baselines and the champion (the model behind `recs/LATEST`), publish them atomically.

The run date is the run's logical date (events with `dt < date` are used); set the
`run_date` Param to rerun another day by hand. A failed data-quality gate fails its task
without retries, and nothing is published: the site keeps yesterday's lists. So does an
evaluation that scores the run's model worse than the champion beyond `gate_tolerance`,
unless `force_publish` is set; `reports/<date>/evaluation.html` shows the numbers.
"""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import Asset, Param, chain, dag, task
from airflow.sdk.exceptions import AirflowFailException

from nightrecs.airflow_glue import retry_delay, use_aws_connection
from nightrecs.tasks import layout
from nightrecs.tasks.layout import RunConfig, param_schemas
from nightrecs.tasks.pipeline import STEPS, DataQualityError, record_failure, run_step

# Downstream DAGs schedule on this (``schedule=[PUBLISHED]``); each event's extra names the
# run: run_id, run_date, users, root, current (false for a backfill that left LATEST).
PUBLISHED = Asset(name=layout.PUBLISHED_ASSET, uri=layout.published_uri(param_schemas()["root"]["default"]))
# Steps that use a GPU when the worker has one: a Celery/Kubernetes deployment routes them
# to GPU workers with a queue and a pool (e.g. NIGHTRECS_GPU_QUEUE=gpu, a one-slot pool "gpu").
GPU_STEPS = ("train_model", "embed_catalog", "retrieve")  # retrieve: FAISS on the GPU when the build has one
GPU_QUEUE = os.environ.get("NIGHTRECS_GPU_QUEUE", "default")
GPU_POOL = os.environ.get("NIGHTRECS_GPU_POOL", "default_pool")


def report_failure(context) -> None:
    """One line where an operator looks first: the task log and reports/<date>/failures.log."""
    cfg = context["ti"].xcom_pull(task_ids="resolve_config")
    if cfg:
        use_aws_connection()
        record_failure(RunConfig(**cfg), context["ti"].task_id, context.get("exception") or "unknown error")


@dag(
    dag_id="nightrecs_daily",
    schedule="@daily",
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": retry_delay(), "retry_exponential_backoff": True,
                  "max_retry_delay": dt.timedelta(hours=1), "on_failure_callback": report_failure},
    tags=["nightrecs"],
    doc_md=__doc__,
    params={name: Param(**spec) for name, spec in param_schemas().items()},  # one per RunConfig field
)
def nightrecs_daily():
    @task
    def resolve_config(**context) -> dict:
        """Turn Params and the logical date into one small RunConfig dict for every step;
        an invalid combination fails the run at once, without retries."""
        when = context.get("logical_date") or context["dag_run"].run_after
        try:
            return RunConfig.from_params(context["params"], when.date().isoformat()).to_dict()
        except ValueError as e:
            raise AirflowFailException(str(e)) from e

    def step_task(name: str):
        gpu = {"queue": GPU_QUEUE, "pool": GPU_POOL} if name in GPU_STEPS else {}
        @task(task_id=name, outlets=[PUBLISHED] if name == "publish" else [], **gpu)
        def run(cfg: dict, *, outlet_events=None) -> dict:
            use_aws_connection()
            try:
                result = run_step(name, RunConfig(**cfg))
            except DataQualityError as e:  # bad data does not get better on retry
                raise AirflowFailException(str(e)) from e
            if name == "publish":
                outlet_events[PUBLISHED].extra = {k: result[k] for k in ("run_id", "run_date", "users", "current")} | {
                    "root": cfg["root"]}
            return result

        return run

    cfg = resolve_config()
    chain(*[step_task(name)(cfg) for name in STEPS])


nightrecs_daily()
