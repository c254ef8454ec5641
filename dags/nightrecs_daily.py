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

from airflow.sdk import Param, chain, dag, task
from airflow.sdk.exceptions import AirflowFailException

from tasks.layout import RunConfig
from tasks.pipeline import STEPS, DataQualityError, run_step

DEFAULTS = RunConfig(root=".", date="2000-01-01")


@dag(
    dag_id="nightrecs_daily",
    schedule="@daily",
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": dt.timedelta(minutes=5)},
    tags=["nightrecs"],
    doc_md=__doc__,
    params={
        "root": Param(os.environ.get("NIGHTRECS_ROOT", "/var/lib/nightrecs"), type="string",
                      description="Data root: a local folder or s3://bucket/prefix."),
        "run_date": Param(None, type=["null", "string"], format="date",
                          description="Override the run date (YYYY-MM-DD); default: logical date."),
        "top_n": Param(DEFAULTS.top_n, type="integer", minimum=1, maximum=1000,
                       description="Items per user list."),
        "max_per_category": Param(DEFAULTS.max_per_category, type="integer", minimum=0,
                                  description="At most this many items of one category per list (0 = no cap)."),
        "new_item_quota": Param(DEFAULTS.new_item_quota, type="integer", minimum=0,
                                description="List slots reserved for new items (exploration)."),
        "segment_columns": Param(",".join(DEFAULTS.segment_columns), type="string",
                                 description="Users-table columns for segment popularity (cold start), "
                                             "comma-separated, first preferred; empty = global only."),
        "train_epochs": Param(DEFAULTS.train_epochs, type="integer", minimum=1,
                              description="Training epochs at most; early stopping usually ends sooner."),
        "train_mode": Param(DEFAULTS.train_mode, type="string", enum=["light", "full"],
                            description="light: frozen text encoder, cached vectors (CPU); "
                                        "full: fine-tune the encoder too (GPU)."),
        "full_retrain": Param(DEFAULTS.full_retrain, type="boolean",
                              description="Train from scratch instead of warm-starting from the last model."),
        "holdout_days": Param(DEFAULTS.holdout_days, type="integer", minimum=1,
                              description="Evaluate on the last N days before the run date (<= 7: unseen in training)."),
        "gate_tolerance": Param(DEFAULTS.gate_tolerance, type="number", minimum=0, maximum=1,
                                description="Block publishing when warm-user NDCG@10 falls below the champion's "
                                            "times (1 - this)."),
        "force_publish": Param(DEFAULTS.force_publish, type="boolean",
                               description="Publish even when the evaluation gate blocks (the report says so)."),
        "skip_training": Param(DEFAULTS.skip_training, type="boolean",
                               description="Reuse the newest earlier model instead of training."),
    },
)
def nightrecs_daily():
    @task
    def resolve_config(**context) -> dict:
        """Turn Params and the logical date into one small RunConfig dict for every step."""
        p = context["params"]
        when = context.get("logical_date") or context["dag_run"].run_after
        cfg = RunConfig(root=p["root"], date=p["run_date"] or when.date().isoformat(),
                        top_n=p["top_n"], max_per_category=p["max_per_category"],
                        new_item_quota=p["new_item_quota"], segment_columns=p["segment_columns"],
                        train_epochs=p["train_epochs"], train_mode=p["train_mode"],
                        full_retrain=p["full_retrain"], holdout_days=p["holdout_days"],
                        gate_tolerance=p["gate_tolerance"], force_publish=p["force_publish"],
                        skip_training=p["skip_training"],
                        base_model=os.environ.get("NIGHTRECS_BASE_MODEL") or None)
        return cfg.to_dict()

    def step_task(name: str):
        @task(task_id=name)
        def run(cfg: dict) -> dict:
            try:
                return run_step(name, RunConfig(**cfg))
            except DataQualityError as e:  # bad data does not get better on retry
                raise AirflowFailException(str(e)) from e

        return run

    cfg = resolve_config()
    chain(*[step_task(name)(cfg) for name in STEPS])


nightrecs_daily()
