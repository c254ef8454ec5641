"""Step 2: the Spark feature build for one run date, incremental by day."""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nightrecs.expectations.errors import DataQualityError
from nightrecs.spark_jobs import features as job
from nightrecs.spark_jobs.session import get_spark, s3a_enabled
from nightrecs.tasks import layout
from nightrecs.tasks.layout import RunConfig
from nightrecs.tasks.storage import LocalRoot, Root, S3Root, open_root

log = logging.getLogger(__name__)


def days_to_clean(root: Root, run_date: str) -> tuple[dict[str, str], list[str]]:
    """(clean marker due for every validated day before the run date, the days whose
    marker differs: never cleaned, re-ingested with other rows since, or cleaned by an
    older clean format). A marker names the day's content (its rows' digest), not its
    files, so a day re-delivered with the same rows is not cleaned again."""
    records = {}
    for key in root.list(layout.validated_events()):
        day = layout.event_partition_date(key)
        if day and day < run_date and key == layout.ingest_record(day):
            ingest = json.loads(root.read_text(key))
            records[day] = json.dumps({"rows": ingest["rows"], "sha256": ingest.get("sha256"),
                                       "clean_version": job.CLEAN_VERSION}, sort_keys=True)
    todo = []
    for day, record in sorted(records.items()):
        try:
            done = root.read_text(layout.clean_marker(day))
        except FileNotFoundError:
            done = None
        if done != record:
            todo.append(day)
    return records, todo


def build_features(cfg: RunConfig) -> dict:
    """Clean the validated days not cleaned yet, then roll the per-day tables up into the
    feature tables under ``features/<date>/``.

    A day counts as cleaned only once its marker is written, after the job succeeded and
    the unknown-item share passed, so a failed or interrupted run is redone next time.
    Events whose item is not in the catalog are quarantined per day under
    ``quarantine/<date>/events_unknown_item/``; the run fails when they exceed
    ``max_bad_fraction`` of the days cleaned. When nothing needs cleaning and the features
    of this date were built from the same days, catalog and job code (``_inputs.json``),
    they are kept as they are: clearing a DAG run does not redo the roll-up.
    """
    root = open_root(cfg.root)
    records, todo = days_to_clean(root, cfg.date)
    inputs = _inputs(root, cfg.date, records)
    stamp = layout.features_stamp(cfg.date)
    if not todo:
        try:
            built = json.loads(root.read_text(stamp))
        except FileNotFoundError:
            built = {}
        if built.get("inputs") == inputs:
            log.info("features for %s are up to date with their inputs: %s", cfg.date, root.full(stamp))
            return {"features": root.full(layout.features(cfg.date)), "cleaned_days": [],
                    "cleaned": {"events": 0, "unknown_item": 0}, "counts": built["counts"], "up_to_date": True}
    root.delete_prefix(stamp)
    quarantine = layout.quarantine(cfg.date, "events_unknown_item")
    for day in todo:  # a day's old outputs go first: dynamic overwrite keeps days it writes nothing for
        root.delete_prefix(layout.clean_marker(day))
        for table in job.CLEAN_TABLES:
            root.delete_prefix(layout.clean_partition(table, day))
        root.delete_prefix(f"{quarantine}/dt={day}")
    log.info("%d validated days, %d to clean: %s", len(records), len(todo), ", ".join(todo) or "none")
    spark = get_spark("nightrecs-features")
    try:
        with spark_paths(root, cfg.date, todo) as p:
            bots = {k: v for k, v in (("bot_max_events_per_day", cfg.bot_max_events_per_day),
                                      ("bot_max_items_per_hour", cfg.bot_max_items_per_hour)) if v is not None}
            cleaned = (job.clean_days(spark, p["validated"], p["clean"], todo, p["catalog"], p["quarantine"], **bots)
                       if todo else {"events": 0, "unknown_item": 0})
            _check_unknown_items(root, quarantine, cleaned, cfg.max_bad_fraction)
            counts = job.build_features(spark, p["clean"], p["catalog"], p["out"], cfg.date)
    finally:
        spark.stop()
    for day in todo:
        root.write_text(layout.clean_marker(day), records[day])
    root.write_text(stamp, json.dumps({"inputs": inputs, "counts": counts}, sort_keys=True))
    return {"features": root.full(layout.features(cfg.date)), "cleaned_days": todo,
            "cleaned": cleaned, "counts": counts, "up_to_date": False}


def _inputs(root: Root, date: str, records: dict[str, str]) -> dict:
    """What the features of a date are built from: the cleaned days' ingest records, the
    catalog's content and the job's code."""
    sha = lambda data: hashlib.sha256(data).hexdigest()  # noqa: E731
    return {"days": records, "catalog": sha(root.read_bytes(layout.validated(date, "catalog"))),
            "job": sha(Path(job.__file__).read_bytes())}


def _check_unknown_items(root: Root, quarantine: str, cleaned: dict[str, int], limit: float) -> None:
    unknown, total = cleaned["unknown_item"], cleaned["events"]
    if not unknown:
        return
    share = unknown / max(total, 1)
    where = root.full(quarantine)
    if share > limit:
        raise DataQualityError(
            f"events: column item_id: {unknown} of {total} cleaned events ({share:.2%}) name items "
            f"not in the catalog, above max_bad_fraction={limit:.2%}; the rows are in {where}")
    log.warning("quarantined %d events (%.2f%%) for items not in the catalog: %s", unknown, 100 * share, where)


@contextmanager
def spark_paths(root: Root, date: str, todo: list[str]) -> Iterator[dict[str, str]]:
    """Where Spark reads and writes: the root itself (a local folder, or ``s3a://`` when
    the hadoop-aws jars are configured), else a local staging folder for an ``s3://``
    root, downloaded before and uploaded after the job (only the days it cleaned)."""
    keys = {"validated": layout.validated_events(), "clean": layout.clean(),
            "catalog": layout.validated(date, "catalog"), "out": layout.features(date),
            "quarantine": layout.quarantine(date, "events_unknown_item")}
    if isinstance(root, LocalRoot):
        yield {name: str(root.local_path(key)) for name, key in keys.items()}
        return
    if isinstance(root, S3Root) and s3a_enabled():
        yield {name: root.s3a(key) for name, key in keys.items()}
        return
    with tempfile.TemporaryDirectory(prefix="nightrecs-") as tmp:
        local = {name: Path(tmp) / key for name, key in keys.items()}
        for day in todo:
            root.download_dir(layout.validated_events(day), local["validated"] / f"dt={day}")
        root.download_dir(keys["clean"], local["clean"])
        local["catalog"].parent.mkdir(parents=True, exist_ok=True)
        local["catalog"].write_bytes(root.read_bytes(keys["catalog"]))
        yield {name: str(path) for name, path in local.items()}
        for day in todo:
            for table in job.CLEAN_TABLES:
                if (part := local["clean"] / table / f"dt={day}").is_dir():
                    root.upload_dir(part, layout.clean_partition(table, day))
            if (part := local["quarantine"] / f"dt={day}").is_dir():
                root.upload_dir(part, f"{keys['quarantine']}/dt={day}")
        root.upload_dir(local["out"], keys["out"])
