"""
### nightrecs_personalize_export

An example downstream consumer: scheduled on the `nightrecs_published` Asset, so it runs
after every publish, and writes the current run in the AWS Personalize batch output format
(`{"input": {"userId": ...}, "output": {"recommendedItems": [...], "scores": [...]}}`) to
`<root>/exports/personalize/<run_id>.jsonl`, the root named by the asset event.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Asset, dag, task

from nightrecs.airflow_glue import use_aws_connection
from nightrecs.tasks import layout
from nightrecs.tasks.layout import param_schemas

PUBLISHED = Asset(name=layout.PUBLISHED_ASSET, uri=layout.published_uri(param_schemas()["root"]["default"]))


@dag(dag_id="nightrecs_personalize_export", schedule=[PUBLISHED], start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
     catchup=False, tags=["nightrecs", "consumer"], doc_md=__doc__)
def nightrecs_personalize_export():
    @task(inlets=[PUBLISHED])
    def export(*, inlet_events=None) -> dict:
        from nightrecs.tasks.recs import export_run
        from nightrecs.tasks.storage import open_root

        use_aws_connection()
        event = inlet_events[PUBLISHED][-1]
        return export_run(open_root(event.extra["root"]), "personalize")

    export()


nightrecs_personalize_export()
