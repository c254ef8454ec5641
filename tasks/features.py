"""Step 2: the Spark feature build for one run date."""

from __future__ import annotations

import logging

from spark_jobs import features as job
from spark_jobs.session import get_spark, s3a_enabled
from tasks import layout
from tasks.layout import RunConfig
from tasks.storage import S3Root, local_copy, local_output, open_root

log = logging.getLogger(__name__)


def build_features(cfg: RunConfig) -> dict:
    """Run the feature job on ``dt < date`` events; outputs under ``features/<date>/``.

    Spark reads only what the raw gate let through (``validated/``). It reads and writes
    local folders, or ``s3a://`` directly when the hadoop-aws jars are configured
    (``NIGHTRECS_SPARK_JARS``); otherwise an ``s3://`` root's inputs are staged to a temp
    dir and the outputs uploaded after the job succeeded. Events whose item left the catalog are quarantined
    under ``quarantine/<date>/events_unknown_item/``.
    """
    root = open_root(cfg.root)
    events, catalog = layout.validated_events(), layout.validated(cfg.date, "catalog")
    out, quarantine = layout.features(cfg.date), layout.quarantine(cfg.date, "events_unknown_item")
    spark = get_spark("nightrecs-features")
    try:
        if isinstance(root, S3Root) and s3a_enabled():  # Spark reads and writes S3 itself
            counts = job.run(spark, root.s3a(events), root.s3a(catalog), root.s3a(out), cfg.date,
                             root.s3a(quarantine))
        else:
            with local_copy(root, "validated") as validated, local_output(root, out) as out_dir, \
                    local_output(root, quarantine) as q_dir:
                counts = job.run(spark, str(validated / "events"),
                                 str(validated / cfg.date / "catalog.parquet"),
                                 str(out_dir), cfg.date, str(q_dir))
    finally:
        spark.stop()
    return {"features": root.full(out), "counts": counts}
