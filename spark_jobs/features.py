"""Feature build: clean events, per-user histories, popularity, user/item features.

Every transformation is a pure function of DataFrames so it can be unit-tested on tiny
frames; :func:`run` only reads, calls them and writes.

    spark-submit spark_jobs/features.py --events DIR --catalog FILE --out DIR --quarantine DIR --date YYYY-MM-DD
"""

from __future__ import annotations

import argparse
import logging

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

log = logging.getLogger(__name__)

EVENT_WEIGHTS = {"view": 1.0, "click": 2.0, "add_to_cart": 3.0, "purchase": 4.0, "rating": 3.0}
POPULARITY_HALF_LIFE_DAYS = 7.0
SESSION_GAP_MINUTES = 30
BOT_MAX_EVENTS_PER_DAY = 2000
BOT_MAX_ITEMS_PER_HOUR = 300
HISTORY_MAX = 200
OPTIONAL_EVENT_COLUMNS = {"value": T.DoubleType(), "session_id": T.StringType(),
                          "query": T.StringType(), "event_id": T.StringType()}


def conform_events(events: DataFrame) -> DataFrame:
    """Contract columns only, optional ones added as typed nulls (extra columns ignored)."""
    for name, typ in OPTIONAL_EVENT_COLUMNS.items():
        if name not in events.columns:
            events = events.withColumn(name, F.lit(None).cast(typ))
    return events.select(
        F.col("user_id").cast("string"), F.col("item_id").cast("string"),
        F.col("event_type").cast("string"), F.col("ts").cast("timestamp"),
        F.col("value").cast("double"), F.col("session_id").cast("string"),
        F.col("query").cast("string"), F.col("event_id").cast("string"),
    )


def deduplicate(events: DataFrame) -> DataFrame:
    """One row per ``event_id``; events without an id are keyed by user/item/type/ts."""
    key = F.coalesce(
        F.concat(F.lit("id:"), F.col("event_id")),
        F.concat_ws("|", "user_id", "item_id", "event_type", F.col("ts").cast("string")),
    )
    return events.withColumn("_key", key).dropDuplicates(["_key"]).drop("_key")


def split_known_items(events: DataFrame, catalog: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(events whose item is in the catalog, the rest with a ``reason`` column)."""
    ids = catalog.select("item_id").distinct()
    known = events.join(ids, "item_id", "left_semi")
    unknown = events.join(ids, "item_id", "left_anti").withColumn(
        "reason", F.lit("item_id not in catalog"))
    return known, unknown


def sessionize(events: DataFrame, gap_minutes: int = SESSION_GAP_MINUTES) -> DataFrame:
    """Fill missing ``session_id``: a user's session ends after ``gap_minutes`` of inactivity."""
    w = Window.partitionBy("user_id").orderBy("ts")
    prev = F.lag("ts").over(w)
    starts = (prev.isNull() | (F.col("ts").cast("long") - prev.cast("long") > gap_minutes * 60)).cast("int")
    number = F.sum("_start").over(w.rowsBetween(Window.unboundedPreceding, Window.currentRow))
    return (events.withColumn("_start", starts)
            .withColumn("session_id", F.coalesce(
                "session_id", F.concat_ws("-", F.lit("auto"), "user_id", number.cast("string"))))
            .drop("_start"))


def flag_bots(events: DataFrame, max_events_per_day: int = BOT_MAX_EVENTS_PER_DAY,
              max_items_per_hour: int = BOT_MAX_ITEMS_PER_HOUR) -> DataFrame:
    """Users behaving like crawlers: too many events in a day or too many distinct items in
    an hour. One row per flagged user with the reason(s)."""
    per_day = (events.groupBy("user_id", F.to_date("ts").alias("day")).count()
               .where(F.col("count") > max_events_per_day)
               .select("user_id", F.lit(f"more than {max_events_per_day} events in a day").alias("reason")))
    per_hour = (events.groupBy("user_id", F.date_trunc("hour", "ts").alias("hour"))
                .agg(F.countDistinct("item_id").alias("items"))
                .where(F.col("items") > max_items_per_hour)
                .select("user_id", F.lit(f"more than {max_items_per_hour} items in an hour").alias("reason")))
    return (per_day.unionByName(per_hour).groupBy("user_id")
            .agg(F.concat_ws("; ", F.sort_array(F.collect_set("reason"))).alias("reason")))


def with_weights(events: DataFrame) -> DataFrame:
    w = F.lit(1.0)
    for name, weight in EVENT_WEIGHTS.items():
        w = F.when(F.col("event_type") == name, F.lit(weight)).otherwise(w)
    return events.withColumn("weight", w)


def user_histories(events: DataFrame, max_len: int = HISTORY_MAX) -> DataFrame:
    """Per user, distinct items ordered by last interaction (oldest first, newest last)
    with their strongest event weight; capped at the ``max_len`` most recent."""
    per_item = with_weights(events).groupBy("user_id", "item_id").agg(
        F.max("ts").alias("last_ts"), F.max("weight").alias("weight"))
    ordered = per_item.groupBy("user_id").agg(
        F.sort_array(F.collect_list(F.struct("last_ts", "item_id", "weight"))).alias("h"))
    h = F.slice(F.col("h"), F.greatest(F.size("h") - max_len + 1, F.lit(1)), max_len)
    return ordered.select(
        "user_id",
        h.getField("item_id").alias("item_ids"),
        h.getField("weight").alias("weights"),
        F.element_at(h.getField("last_ts"), -1).alias("last_ts"),
    )


def item_popularity(events: DataFrame, run_date: str) -> DataFrame:
    """Event-weighted, time-decayed popularity (half-life 7 days before the run date)."""
    age_days = F.datediff(F.to_date(F.lit(run_date)), F.to_date("ts"))
    decay = F.pow(F.lit(0.5), age_days / F.lit(POPULARITY_HALF_LIFE_DAYS))
    return (
        with_weights(events)
        .groupBy("item_id")
        .agg(F.sum(F.col("weight") * decay).alias("score"),
             F.countDistinct("user_id").alias("n_users"),
             F.count(F.lit(1)).alias("n_events"))
    )


def _type_counts() -> list:
    """One ``n_<event_type>`` count column per event type, for a groupBy().agg()."""
    return [F.sum(F.when(F.col("event_type") == t, 1).otherwise(0)).alias(f"n_{t}")
            for t in EVENT_WEIGHTS]


def user_features(events: DataFrame) -> DataFrame:
    return events.groupBy("user_id").agg(
        F.count(F.lit(1)).alias("n_events"), F.countDistinct("item_id").alias("n_items"),
        F.min("ts").alias("first_ts"), F.max("ts").alias("last_ts"), *_type_counts())


def item_features(events: DataFrame, catalog: DataFrame) -> DataFrame:
    """Catalog items with interaction counts (zero for items nobody touched)."""
    stats = events.groupBy("item_id").agg(F.min("ts").alias("first_seen"), *_type_counts())
    base = catalog.select("item_id")
    return base.join(stats, "item_id", "left").fillna(0, subset=[f"n_{t}" for t in EVENT_WEIGHTS])


def exclusions(events: DataFrame) -> DataFrame:
    """(user, item) pairs never to recommend again: bought or rated."""
    return (events.where(F.col("event_type").isin("purchase", "rating"))
            .select("user_id", "item_id").distinct())


def build(events: DataFrame, catalog: DataFrame, run_date: str,
          bot_max_events_per_day: int = BOT_MAX_EVENTS_PER_DAY,
          bot_max_items_per_hour: int = BOT_MAX_ITEMS_PER_HOUR) -> dict[str, DataFrame]:
    """All feature tables from validated events (already restricted to ``dt < run_date``).

    Bots stay out of training histories and popularity; their purchases still count as
    exclusions, so a bot-flagged person is never shown what they bought.
    """
    clean = sessionize(deduplicate(conform_events(events)))
    known, unknown = split_known_items(clean, catalog)
    known = known.cache()
    bots = flag_bots(known, bot_max_events_per_day, bot_max_items_per_hour).cache()
    human = known.join(bots.select("user_id"), "user_id", "left_anti")
    return {
        "histories": user_histories(human),
        "item_popularity": item_popularity(human, run_date),
        "user_features": user_features(known),
        "item_features": item_features(human, catalog),
        "exclusions": exclusions(known),
        "bots": bots,
        "quarantine_events": unknown,
    }


def read_events(spark: SparkSession, events_dir: str, run_date: str) -> DataFrame:
    """Every ``dt=`` partition strictly before the run date."""
    return (spark.read.option("basePath", events_dir).parquet(events_dir)
            .where(F.col("dt") < F.lit(run_date).cast("date")).drop("dt"))


def run(spark: SparkSession, events_dir: str, catalog_path: str, out_dir: str, run_date: str,
        quarantine_dir: str) -> dict[str, int]:
    """Read the gate-passed tables, build features, write Parquet; returns row counts."""
    catalog = spark.read.parquet(catalog_path)
    events = read_events(spark, events_dir, run_date)
    tables = build(events, catalog, run_date)
    counts: dict[str, int] = {}
    for name, df in tables.items():
        path = quarantine_dir if name == "quarantine_events" else f"{out_dir}/{name}"
        df.write.mode("overwrite").parquet(path)
        counts[name] = spark.read.parquet(path).count()
    if counts["bots"]:
        log.warning("flagged %d bot-like users (kept out of training and popularity): %s",
                    counts["bots"], f"{out_dir}/bots")
    if counts["quarantine_events"]:
        log.warning("quarantined %d events for items not in the catalog: %s",
                    counts["quarantine_events"], quarantine_dir)
    log.info("features for %s: %s", run_date, counts)
    return counts


def main(argv: list[str] | None = None) -> None:
    from spark_jobs.session import get_spark

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", required=True, help="validated events folder (dt= partitions)")
    p.add_argument("--catalog", required=True, help="validated catalog Parquet")
    p.add_argument("--out", required=True)
    p.add_argument("--quarantine", required=True)
    p.add_argument("--date", required=True)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    spark = get_spark("nightrecs-features")
    try:
        run(spark, a.events, a.catalog, a.out, a.date, a.quarantine)
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
