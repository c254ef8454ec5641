"""Step 2: the Spark feature build for one run date."""

from __future__ import annotations

import logging

from spark_jobs import features as job
from spark_jobs.session import get_spark
from tasks import layout
from tasks.layout import RunConfig
from tasks.storage import local_copy, local_output, open_root

log = logging.getLogger(__name__)


def build_features(cfg: RunConfig) -> dict:
    """Run the feature job on ``dt < date`` events; outputs under ``features/<date>/``.

    Spark reads only what the raw gate let through (``validated/``). It reads and writes
    local folders; for an ``s3://`` root the inputs are staged to a temp dir and the outputs
    uploaded after the job succeeded. Events whose item left the catalog are quarantined
    under ``quarantine/<date>/events_unknown_item/``.
    """
    root = open_root(cfg.root)
    with local_copy(root, "validated") as validated, \
            local_output(root, layout.features(cfg.date)) as out, \
            local_output(root, layout.quarantine(cfg.date, "events_unknown_item")) as quarantine:
        spark = get_spark("nightrecs-features")
        try:
            counts = job.run(spark, str(validated / "events"),
                             str(validated / cfg.date / "catalog.parquet"),
                             str(out), cfg.date, str(quarantine))
        finally:
            spark.stop()
    return {"features": root.full(layout.features(cfg.date)), "counts": counts}
