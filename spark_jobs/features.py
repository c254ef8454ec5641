"""Feature build in two stages: clean each day once, then roll the days up.

1. **Clean** (:func:`clean_days`): each validated ``dt=`` partition is cleaned once into
   ``clean/events`` (conformed, deduplicated, sessionized) plus two small per-day tables:
   ``user_item_day`` (one row per user, item and day with event counts, weights, the
   strongest event type and the latest rating) and ``bots_day``. They are written
   with dynamic partition overwrite, so re-cleaning a day replaces exactly that day.
2. **Features** (:func:`build_features`): every feature table for a run date is rolled up
   from the per-day tables; raw events are not read again. The 7/30-day windows use each
   row's day, so the same inputs always give the same tables. Popularity and
   co-occurrence are not here: the ranker needs them as of each of its past learning
   windows, so ``models/hybrid.py`` computes them from the histories (one definition).

Every transformation is a pure function of DataFrames so it can be unit-tested on tiny
frames; :func:`clean_days` and :func:`build_features` only read, call them and write.
The one entry point is the ``build_features`` step (``nightrecs.tasks.features``), which
keeps the per-day clean markers.
"""

from __future__ import annotations

import logging
import time

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from nightrecs.contract import EVENT_TYPES, EVENT_WEIGHTS, EXCLUDING_TYPES

log = logging.getLogger(__name__)

SESSION_GAP_MINUTES = 30
BOT_MAX_EVENTS_PER_DAY = 2000
BOT_MAX_ITEMS_PER_HOUR = 300
WINDOWS = (1, 7, 30)
RATE_PRIOR_VIEWS = 20.0  # smoothing strength: rates start at the global rate
HISTORY_MAX = 200
CLEAN_TABLES = ("events", "user_item_day", "bots_day")
CLEAN_VERSION = 2  # bump when the clean tables change: every day is cleaned again
OPTIONAL_EVENT_COLUMNS = {"value": T.DoubleType(), "session_id": T.StringType(),
                          "query": T.StringType(), "event_id": T.StringType()}
TYPE_COUNTS = [f"n_{t}" for t in EVENT_TYPES]


# ---------------------------------------------------------------- stage 1: clean one day

def conform_events(events: DataFrame) -> DataFrame:
    """Contract columns only, optional ones added as typed nulls (extra columns ignored),
    plus ``dt``: the partition day, or the event's UTC day when there is no partition."""
    for name, typ in OPTIONAL_EVENT_COLUMNS.items():
        if name not in events.columns:
            events = events.withColumn(name, F.lit(None).cast(typ))
    dt = F.col("dt").cast("date") if "dt" in events.columns else F.to_date("ts")
    return events.select(
        F.col("user_id").cast("string"), F.col("item_id").cast("string"),
        F.col("event_type").cast("string"), F.col("ts").cast("timestamp"),
        F.col("value").cast("double"), F.col("session_id").cast("string"),
        F.col("query").cast("string"), F.col("event_id").cast("string"), dt.alias("dt"),
    )


def deduplicate(events: DataFrame) -> DataFrame:
    """One row per user, day and ``event_id``; events without an id are keyed by
    user/item/type/ts. Keyed within a user's day so a day cleans the same alone or in a
    batch, and so that it shares one shuffle with :func:`sessionize`."""
    key = F.coalesce(
        F.concat(F.lit("id:"), F.col("event_id")),
        F.concat_ws("|", "item_id", "event_type", F.col("ts").cast("string")),
    )
    return events.withColumn("_key", key).dropDuplicates(["user_id", "dt", "_key"]).drop("_key")


def sessionize(events: DataFrame, gap_minutes: int = SESSION_GAP_MINUTES) -> DataFrame:
    """Fill missing ``session_id``: a user's session ends after ``gap_minutes`` of
    inactivity or at the end of the day partition (days are cleaned independently)."""
    w = Window.partitionBy("user_id", "dt").orderBy("ts", "item_id", "event_type")
    prev = F.lag("ts").over(w)
    starts = (prev.isNull() | (F.col("ts").cast("long") - prev.cast("long") > gap_minutes * 60)).cast("int")
    number = F.sum("_start").over(w.rowsBetween(Window.unboundedPreceding, Window.currentRow))
    auto = F.concat_ws("-", F.lit("auto"), "user_id", F.col("dt").cast("string"), number.cast("string"))
    return (events.withColumn("_start", starts)
            .withColumn("session_id", F.coalesce("session_id", auto))
            .drop("_start"))


def flag_bots(events: DataFrame, max_events_per_day: int = BOT_MAX_EVENTS_PER_DAY,
              max_items_per_hour: int = BOT_MAX_ITEMS_PER_HOUR) -> DataFrame:
    """Users behaving like crawlers on a day: too many events that day or too many distinct
    items in an hour. One row per flagged (user, day) with the reason(s)."""
    per_day = (events.groupBy("user_id", "dt").count()
               .where(F.col("count") > max_events_per_day)
               .select("user_id", "dt", F.lit(f"more than {max_events_per_day} events in a day").alias("reason")))
    per_hour = (events.groupBy("user_id", "dt", F.date_trunc("hour", "ts").alias("hour"))
                .agg(F.countDistinct("item_id").alias("items"))
                .where(F.col("items") > max_items_per_hour)
                .select("user_id", "dt", F.lit(f"more than {max_items_per_hour} items in an hour").alias("reason")))
    return (per_day.unionByName(per_hour).groupBy("user_id", "dt")
            .agg(F.concat_ws("; ", F.sort_array(F.collect_set("reason"))).alias("reason")))


def with_weights(events: DataFrame) -> DataFrame:
    w = F.lit(1.0)
    for name, weight in EVENT_WEIGHTS.items():
        w = F.when(F.col("event_type") == name, F.lit(weight)).otherwise(w)
    return events.withColumn("weight", w)


def user_item_day(events: DataFrame) -> DataFrame:
    """One row per (day, user, item): events per type, first/last time, the strongest
    event type (its 0-based rank in ``EVENT_TYPES``), the latest rating and its time, the
    strongest event weight and the sum of weights. Every later aggregate is a sum, min,
    max or latest of these, so days never have to be re-read."""
    counts = [F.sum(F.when(F.col("event_type") == t, 1).otherwise(0)).alias(f"n_{t}") for t in EVENT_TYPES]
    strength = F.lit(None).cast("int")
    for rank, name in enumerate(EVENT_TYPES):
        strength = F.when(F.col("event_type") == name, F.lit(rank)).otherwise(strength)
    rated = F.col("event_type") == "rating"
    return with_weights(events).groupBy("dt", "user_id", "item_id").agg(
        *counts, F.min("ts").alias("first_ts"), F.max("ts").alias("last_ts"),
        F.max(strength).alias("strength"),
        F.max_by(F.when(rated, F.col("value")), F.when(rated, F.col("ts"))).alias("rating"),
        F.max(F.when(rated, F.col("ts"))).alias("rating_ts"),
        F.max("weight").alias("weight"), F.sum("weight").alias("weight_sum"))


def split_known_items(events: DataFrame, catalog: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(rows whose item is in the catalog, the rest with a ``reason`` column)."""
    ids = catalog.select("item_id").distinct()
    known = events.join(ids, "item_id", "left_semi")
    unknown = events.join(ids, "item_id", "left_anti").withColumn(
        "reason", F.lit("item_id not in catalog"))
    return known, unknown


def clean(events: DataFrame) -> DataFrame:
    """Validated events -> cleaned events (conformed, deduplicated, sessionized), hash
    partitioned by (user, day): every per-day aggregate below groups by a superset of
    those keys, so none of them shuffles the events again."""
    return sessionize(deduplicate(conform_events(events).repartition("user_id", "dt")))


def daily_tables(cleaned: DataFrame, bot_max_events_per_day: int = BOT_MAX_EVENTS_PER_DAY,
                 bot_max_items_per_hour: int = BOT_MAX_ITEMS_PER_HOUR) -> dict[str, DataFrame]:
    """The per-day aggregates of cleaned events; a day's bots are removed from everything
    but exclusions when features are built."""
    return {"user_item_day": user_item_day(cleaned),
            "bots_day": flag_bots(cleaned, bot_max_events_per_day, bot_max_items_per_hour)}


# ------------------------------------------------------- stage 2: features for a run date

def _age_days(run_date: str):
    return F.datediff(F.to_date(F.lit(run_date)), F.col("dt"))


def roll_up(uid: DataFrame) -> DataFrame:
    """Per (user, item) over all days: counts, first/last time, strongest event type and
    weight, the latest rating, weight sum."""
    return uid.groupBy("user_id", "item_id").agg(
        *[F.sum(c).alias(c) for c in TYPE_COUNTS], F.min("first_ts").alias("first_ts"),
        F.max("last_ts").alias("last_ts"), F.max("strength").alias("strength"),
        F.max_by("rating", "rating_ts").alias("rating"), F.max("weight").alias("weight"),
        F.sum("weight_sum").alias("weight_sum"))


def user_histories(pairs: DataFrame, max_len: int = HISTORY_MAX) -> DataFrame:
    """Per user, distinct items ordered by last interaction (oldest first, newest last)
    with their strongest event type and weight and their latest rating (null: not rated);
    capped at the ``max_len`` most recent."""
    ordered = pairs.groupBy("user_id").agg(
        F.sort_array(F.collect_list(F.struct("last_ts", "item_id", "weight", "strength", "rating"))).alias("h"))
    h = F.slice(F.col("h"), F.greatest(F.size("h") - max_len + 1, F.lit(1)), max_len)
    names = F.array(*[F.lit(t) for t in EVENT_TYPES])
    return ordered.select(
        "user_id",
        h.getField("item_id").alias("item_ids"),
        F.transform(h.getField("strength"), lambda r: F.element_at(names, r + 1)).alias("event_types"),
        h.getField("rating").alias("ratings"),
        h.getField("weight").alias("weights"),
        h.getField("last_ts").alias("ts"),
        F.element_at(h.getField("last_ts"), -1).alias("last_ts"),
    )


def _n_events() -> F.Column:
    return sum((F.col(c) for c in TYPE_COUNTS[1:]), F.col(TYPE_COUNTS[0]))


def user_features(pairs: DataFrame, uid: DataFrame, run_date: str) -> DataFrame:
    """Per user: counts per event type overall and per 7/30-day window, distinct items,
    first/last event time and days since the last event."""
    overall = pairs.groupBy("user_id").agg(
        F.sum(_n_events()).cast("long").alias("n_events"), F.count(F.lit(1)).alias("n_items"),
        F.min("first_ts").alias("first_ts"), F.max("last_ts").alias("last_ts"),
        *[F.sum(c).cast("long").alias(c) for c in TYPE_COUNTS])
    age = _age_days(run_date)
    aggs = [F.min(age).alias("recency_days")]
    for d in WINDOWS[1:]:
        aggs += [F.sum(F.when(age <= d, F.col(c)).otherwise(0)).cast("long").alias(f"{c}_{d}d")
                 for c in TYPE_COUNTS]
    return overall.join(uid.groupBy("user_id").agg(*aggs), "user_id", "left")


def item_features(uid: DataFrame, catalog: DataFrame, run_date: str) -> DataFrame:
    """Per catalog item (zeros for items nobody touched): counts per type, first seen,
    counts per 7/30-day window and smoothed view->click and view->purchase rates over 30
    days (items without views get the global rate): behaviour statistics for the shop's
    analysts; popularity for ranking is the ranker's own (``models/hybrid.py``)."""
    age = _age_days(run_date)
    aggs = [F.min("first_ts").alias("first_seen"), *[F.sum(c).cast("long").alias(c) for c in TYPE_COUNTS]]
    for d in WINDOWS[1:]:
        aggs += [F.sum(F.when(age <= d, F.col(f"n_{t}")).otherwise(0)).cast("long").alias(f"n_{t}_{d}d")
                 for t in ("view", "click", "purchase")]
    counted = uid.groupBy("item_id").agg(*aggs)
    numeric = [c for c in counted.columns if c not in ("item_id", "first_seen")]
    per_item = catalog.select("item_id").join(counted, "item_id", "left").fillna(0, subset=numeric)
    totals = per_item.agg(*[F.sum(f"n_{t}_30d").alias(t) for t in ("view", "click", "purchase")]).first()
    views = max(float(totals["view"] or 0), 1.0)
    click_rate, buy_rate = float(totals["click"] or 0) / views, float(totals["purchase"] or 0) / views
    a = F.lit(RATE_PRIOR_VIEWS)
    return per_item.select(
        "*",
        ((F.col("n_click_30d") + a * click_rate) / (F.col("n_view_30d") + a)).alias("click_rate"),
        ((F.col("n_purchase_30d") + a * buy_rate) / (F.col("n_view_30d") + a)).alias("purchase_rate"),
    )


def exclusions(uid: DataFrame) -> DataFrame:
    """(user, item, since) never to recommend again from the day ``since`` on: bought or
    rated (a dated table, so a list made as of an earlier day excludes what was known then)."""
    done = sum((F.col(f"n_{t}") for t in EXCLUDING_TYPES[1:]), F.col(f"n_{EXCLUDING_TYPES[0]}"))
    return (uid.where(done > 0).groupBy("user_id", "item_id")
            .agg(F.min("dt").cast("timestamp").alias("since")))


def bots_of(bots_day: DataFrame) -> DataFrame:
    """Users flagged on any day, with every reason and the days."""
    return bots_day.groupBy("user_id").agg(
        F.concat_ws("; ", F.sort_array(F.array_distinct(F.flatten(
            F.collect_list(F.split("reason", "; ")))))).alias("reason"),
        F.sort_array(F.collect_set("dt")).alias("days"))


def features(uid: DataFrame, bots_day: DataFrame, catalog: DataFrame, run_date: str) -> dict[str, DataFrame]:
    """All feature tables for a run date from the per-day tables (days before it).

    Events for items not in today's catalog are left out. Bots stay out of histories and
    the behaviour statistics; their purchases still count as exclusions, so a flagged
    person is never shown what they bought.
    """
    before = F.col("dt") < F.to_date(F.lit(run_date))
    ids = F.broadcast(catalog.select("item_id"))
    bots = bots_of(bots_day.where(before)).cache()
    bot_ids = F.broadcast(bots.select("user_id"))
    # One shuffle by user: the per-user tables below reuse it instead of shuffling again.
    uid = uid.where(before).join(ids, "item_id", "left_semi").repartition("user_id").cache()
    human = uid.join(bot_ids, "user_id", "left_anti")
    pairs = roll_up(uid).cache()
    human_pairs = pairs.join(bot_ids, "user_id", "left_anti")
    return {
        "histories": user_histories(human_pairs),
        "user_features": user_features(pairs, uid, run_date),
        "item_features": item_features(human, catalog, run_date),
        "exclusions": exclusions(uid),
        "bots": bots,
    }


# --------------------------------------------------------------------------------- I/O

def _write_days(df: DataFrame, path: str) -> None:
    """Write ``dt=`` partitions, replacing only the days present in ``df``."""
    start = time.perf_counter()
    df.write.mode("overwrite").option("partitionOverwriteMode", "dynamic").partitionBy("dt").parquet(path)
    log.info("wrote %s in %.1f s", path, time.perf_counter() - start)


def _write_table(df: DataFrame, path: str) -> int:
    """Replace a whole table; returns its row count (from the Parquet footers)."""
    start = time.perf_counter()
    df.write.mode("overwrite").parquet(path)
    n = df.sparkSession.read.parquet(path).count()
    log.info("wrote %s: %d rows in %.1f s", path, n, time.perf_counter() - start)
    return n


def clean_days(spark: SparkSession, validated_dir: str, clean_dir: str, days: list[str],
               catalog_path: str, quarantine_dir: str, bot_max_events_per_day: int = BOT_MAX_EVENTS_PER_DAY,
               bot_max_items_per_hour: int = BOT_MAX_ITEMS_PER_HOUR) -> dict[str, int]:
    """Clean the given validated days into ``clean_dir/<table>/dt=...``, replacing those
    days only; events for items missing from the catalog are quarantined per day under
    ``quarantine_dir/dt=...`` (they stay in the cleaned events, in case the item arrives
    late). Returns the cleaned and unknown-item event counts."""
    wanted = [F.lit(d).cast("date") for d in days]
    raw = (spark.read.option("basePath", validated_dir).parquet(validated_dir)
           .where(F.col("dt").isin(*wanted)))
    cleaned = clean(raw).cache()
    _write_days(cleaned, f"{clean_dir}/events")
    for name, df in daily_tables(cleaned, bot_max_events_per_day, bot_max_items_per_hour).items():
        _write_days(df, f"{clean_dir}/{name}")
    _, unknown = split_known_items(cleaned, spark.read.parquet(catalog_path))
    unknown = unknown.cache()
    _write_days(unknown, quarantine_dir)
    counts = {"events": cleaned.count(), "unknown_item": unknown.count()}
    spark.catalog.clearCache()
    log.info("cleaned %d days: %s", len(days), counts)
    return counts


def build_features(spark: SparkSession, clean_dir: str, catalog_path: str, out_dir: str,
                   run_date: str) -> dict[str, int]:
    """Feature tables for ``run_date`` from the cleaned per-day tables; returns row counts."""
    tables = features(spark.read.parquet(f"{clean_dir}/user_item_day"), _bots_day(spark, clean_dir),
                      spark.read.parquet(catalog_path), run_date)
    counts = {name: _write_table(df, f"{out_dir}/{name}") for name, df in tables.items()}
    if counts["bots"]:
        log.warning("flagged %d bot-like users (kept out of histories): %s", counts["bots"], f"{out_dir}/bots")
    log.info("features for %s: %s", run_date, counts)
    return counts


def _bots_day(spark: SparkSession, clean_dir: str) -> DataFrame:
    """``bots_day``: Spark writes no partition when no day had a bot."""
    schema = "user_id string, reason string, dt date"
    try:
        return spark.read.schema(schema).parquet(f"{clean_dir}/bots_day")
    except Exception as e:  # AnalysisException: path does not exist
        if "PATH_NOT_FOUND" not in str(e) and "does not exist" not in str(e):
            raise
        return spark.createDataFrame([], schema)
