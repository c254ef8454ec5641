"""Feature build in two stages: clean each day once, then roll the days up.

1. **Clean** (:func:`clean_days`): each validated ``dt=`` partition is cleaned once into
   ``clean/events`` (conformed, deduplicated, sessionized) plus three small per-day tables:
   ``user_item_day`` (one row per user, item and day with event counts and weights),
   ``co_day`` (undecayed item-pair scores of that day) and ``bots_day``. They are written
   with dynamic partition overwrite, so re-cleaning a day replaces exactly that day.
2. **Features** (:func:`build_features`): every feature table for a run date is rolled up
   from the per-day tables; raw events are not read again. The 1/7/30-day windows and
   decays use each row's day, so the same inputs always give the same tables.

Every transformation is a pure function of DataFrames so it can be unit-tested on tiny
frames; :func:`clean_days` and :func:`build_features` only read, call them and write.

    spark-submit spark_jobs/features.py --validated DIR --clean DIR --catalog FILE \\
        --out DIR --quarantine DIR --date YYYY-MM-DD [--days D1,D2,...] \\
        [--users FILE --segments country,age_band]
"""

from __future__ import annotations

import argparse
import functools
import logging
import time

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

log = logging.getLogger(__name__)

EVENT_WEIGHTS = {"view": 1.0, "click": 2.0, "add_to_cart": 3.0, "purchase": 4.0, "rating": 3.0}
POPULARITY_HALF_LIFE_DAYS = 7.0
SESSION_GAP_MINUTES = 30
BOT_MAX_EVENTS_PER_DAY = 2000
BOT_MAX_ITEMS_PER_HOUR = 300
WINDOWS = (1, 7, 30)
RATE_PRIOR_VIEWS = 20.0  # smoothing strength: rates start at the global rate
CO_HALF_LIFE_DAYS = 30.0
CO_LOOKBACK_DAYS = 120  # four half-lives: older pairs weigh under 1/16
CO_TOP_K = 20
CO_USER_SPAN = 5  # in a user's day, each item pairs with the next 5 (linear, not all pairs)
VALID_DAYS = 7
HISTORY_MAX = 200
SEGMENT_TOP_K = 200
CLEAN_TABLES = ("events", "user_item_day", "co_day", "bots_day")
CLEAN_VERSION = 1  # bump when the clean tables change: every day is cleaned again
OPTIONAL_EVENT_COLUMNS = {"value": T.DoubleType(), "session_id": T.StringType(),
                          "query": T.StringType(), "event_id": T.StringType()}
TYPE_COUNTS = [f"n_{t}" for t in EVENT_WEIGHTS]


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
    """One row per (day, user, item): events per type, first/last time, the session of the
    first touch, the strongest event weight and the sum of weights. Every later aggregate
    is a sum, min or max of these, so days never have to be re-read."""
    counts = [F.sum(F.when(F.col("event_type") == t, 1).otherwise(0)).alias(f"n_{t}") for t in EVENT_WEIGHTS]
    return with_weights(events).groupBy("dt", "user_id", "item_id").agg(
        *counts, F.min("ts").alias("first_ts"), F.max("ts").alias("last_ts"),
        F.min_by("session_id", "ts").alias("first_session"),
        F.max("weight").alias("weight"), F.sum("weight").alias("weight_sum"))


def co_pairs(uid: DataFrame, span: int = CO_USER_SPAN) -> DataFrame:
    """Undecayed item-pair scores of each day from ``user_item_day``: a user's items of the
    day in order of first touch, each paired with the next ``span``; 1 when both were first
    touched in the same session, else 0.5. Pairs grow linearly with a user's items and are
    stored once, as ``item_id < other_id``."""
    ordered = uid.groupBy("dt", "user_id").agg(F.sort_array(F.collect_list(
        F.struct("first_ts", "item_id", "first_session"))).alias("items"))
    exploded = ordered.select("dt", "items", F.posexplode("items").alias("pos", "a"))
    ahead = exploded.select("dt", "a", F.explode(F.slice("items", F.col("pos") + 2, span)).alias("b"))
    score = F.when(F.col("a.first_session") == F.col("b.first_session"), 1.0).otherwise(0.5)
    a, b = F.col("a.item_id"), F.col("b.item_id")
    return (ahead.select("dt", F.least(a, b).alias("item_id"), F.greatest(a, b).alias("other_id"), score.alias("score"))
            .groupBy("dt", "item_id", "other_id").agg(F.sum("score").alias("score")))


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
    """The per-day aggregates of cleaned events. A day's bots stay out of that day's
    item pairs; they are removed from everything else when features are built."""
    bots = flag_bots(cleaned, bot_max_events_per_day, bot_max_items_per_hour).cache()
    uid = user_item_day(cleaned).cache()
    human = uid.join(F.broadcast(bots.select("user_id", "dt")), ["user_id", "dt"], "left_anti")
    return {"user_item_day": uid.drop("first_session"), "co_day": co_pairs(human), "bots_day": bots}


# ------------------------------------------------------- stage 2: features for a run date

def _age_days(run_date: str):
    return F.datediff(F.to_date(F.lit(run_date)), F.col("dt"))


def roll_up(uid: DataFrame) -> DataFrame:
    """Per (user, item) over all days: counts, first/last time, strongest weight, weight sum."""
    return uid.groupBy("user_id", "item_id").agg(
        *[F.sum(c).alias(c) for c in TYPE_COUNTS], F.min("first_ts").alias("first_ts"),
        F.max("last_ts").alias("last_ts"), F.max("weight").alias("weight"),
        F.sum("weight_sum").alias("weight_sum"))


def user_histories(pairs: DataFrame, max_len: int = HISTORY_MAX) -> DataFrame:
    """Per user, distinct items ordered by last interaction (oldest first, newest last)
    with their strongest event weight; capped at the ``max_len`` most recent."""
    ordered = pairs.groupBy("user_id").agg(
        F.sort_array(F.collect_list(F.struct("last_ts", "item_id", "weight"))).alias("h"))
    h = F.slice(F.col("h"), F.greatest(F.size("h") - max_len + 1, F.lit(1)), max_len)
    return ordered.select(
        "user_id",
        h.getField("item_id").alias("item_ids"),
        h.getField("weight").alias("weights"),
        h.getField("last_ts").alias("ts"),
        F.element_at(h.getField("last_ts"), -1).alias("last_ts"),
    )


def _n_events() -> F.Column:
    return sum((F.col(c) for c in TYPE_COUNTS[1:]), F.col(TYPE_COUNTS[0]))


def item_popularity(uid: DataFrame, pairs: DataFrame, run_date: str) -> DataFrame:
    """Event-weighted, time-decayed popularity (half-life 7 days before the run date); the
    distinct users come from the rolled-up pairs, which is one cheap count per item."""
    decay = F.pow(F.lit(0.5), _age_days(run_date) / F.lit(POPULARITY_HALF_LIFE_DAYS))
    per_item = uid.groupBy("item_id").agg(
        F.sum(F.col("weight_sum") * decay).alias("score"), F.sum(_n_events()).cast("long").alias("n_events"))
    users = pairs.groupBy("item_id").agg(F.count(F.lit(1)).alias("n_users"))
    return per_item.join(users, "item_id").select("item_id", "score", "n_users", "n_events")


def segment_popularity(uid: DataFrame, users: DataFrame | None, columns: tuple[str, ...], run_date: str,
                       top_k: int = SEGMENT_TOP_K) -> DataFrame:
    """Per users-table column and value (say country = DE): the ``top_k`` items by the
    same decayed, event-weighted score as :func:`item_popularity`, among that segment's
    users. Long table (segment, value, item_id, score, rank); the cold-start lists of a
    user with that value start here."""
    decay = F.pow(F.lit(0.5), _age_days(run_date) / F.lit(POPULARITY_HALF_LIFE_DAYS))
    weighted = uid.select("user_id", "item_id", (F.col("weight_sum") * decay).alias("w"))
    parts = []
    for column in columns if users is not None else ():
        seg = users.select("user_id", F.col(column).cast("string").alias("value")).where(F.col("value").isNotNull())
        scores = (weighted.join(seg, "user_id").groupBy("value", "item_id").agg(F.sum("w").alias("score")))
        rank = F.row_number().over(Window.partitionBy("value").orderBy(F.desc("score"), "item_id"))
        parts.append(scores.withColumn("rank", rank).where(F.col("rank") <= top_k)
                     .select(F.lit(column).alias("segment"), "value", "item_id", "score", "rank"))
    if not parts:
        return uid.sparkSession.createDataFrame([], "segment string, value string, item_id string, "
                                                    "score double, rank int")
    return functools.reduce(DataFrame.unionByName, parts)


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
    popularity and counts per window (1/7/30 days), smoothed view->click and
    view->purchase rates over 30 days (items without views get the global rate), and the
    7d-vs-30d trend (1 = steady, > 1 = rising)."""
    age = _age_days(run_date)
    aggs = [F.min("first_ts").alias("first_seen"), *[F.sum(c).cast("long").alias(c) for c in TYPE_COUNTS]]
    for d in WINDOWS:
        aggs.append(F.sum(F.when(age <= d, F.col("weight_sum")).otherwise(0.0)).alias(f"pop_{d}d"))
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
        ((F.col("pop_7d") / 7 + 1.0) / (F.col("pop_30d") / 30 + 1.0)).alias("trend"),
    )


def user_affinities(pairs: DataFrame, catalog: DataFrame) -> DataFrame:
    """Long table (user_id, kind, value, share): each user's weighted share of interactions
    per category and per brand, and the user's price band (low / mid / high tercile of the
    catalog's prices, by the weighted mean price of the items they interacted with)."""
    kinds = [c for c in ("category", "brand") if c in catalog.columns]
    has_price = "price" in catalog.columns
    joined = pairs.join(F.broadcast(catalog.select("item_id", *kinds, *(["price"] if has_price else []))),
                        "item_id")
    out = None
    if kinds:
        values = F.explode(F.array(*[F.struct(F.lit(k).alias("kind"), F.col(k).alias("value")) for k in kinds]))
        per = (joined.select("user_id", "weight_sum", values.alias("kv"))
               .where(F.col("kv.value").isNotNull())
               .groupBy("user_id", F.col("kv.kind").alias("kind"), F.col("kv.value").alias("value"))
               .agg(F.sum("weight_sum").alias("w")))
        share = F.col("w") / F.sum("w").over(Window.partitionBy("user_id", "kind"))
        out = per.select("user_id", "kind", "value", share.alias("share"))
    if has_price:
        q = catalog.where(F.col("price").isNotNull()).approxQuantile("price", [1 / 3, 2 / 3], 0.001)
        if len(q) == 2:
            priced = joined.where(F.col("price").isNotNull())
            mean = priced.groupBy("user_id").agg(
                # to the cent, so that the summation order (partitioning) cannot flip a band
                F.round(F.sum(F.col("price") * F.col("weight_sum")) / F.sum("weight_sum"), 2).alias("p"))
            band = F.when(F.col("p") <= q[0], "low").when(F.col("p") <= q[1], "mid").otherwise("high")
            part = mean.select("user_id", F.lit("price_band").alias("kind"), band.alias("value"),
                               F.lit(1.0).alias("share"))
            out = part if out is None else out.unionByName(part)
    return out


def co_occurrence(co_day: DataFrame, run_date: str, top_k: int = CO_TOP_K) -> DataFrame:
    """Item-item scores: per-day pair scores decayed by the day's age (half-life 30 days,
    the last ``CO_LOOKBACK_DAYS`` days), summed, made symmetric, top-K per item."""
    age = _age_days(run_date)
    decay = F.pow(F.lit(0.5), age / F.lit(CO_HALF_LIFE_DAYS))
    once = (co_day.where(age <= CO_LOOKBACK_DAYS).groupBy("item_id", "other_id")
            .agg(F.sum(F.col("score") * decay).alias("score")))
    scores = once.unionByName(once.select(F.col("other_id").alias("item_id"),
                                          F.col("item_id").alias("other_id"), "score"))
    rank = F.row_number().over(Window.partitionBy("item_id").orderBy(F.desc("score"), "other_id"))
    return scores.withColumn("rank", rank).where(F.col("rank") <= top_k)


def exclusions(pairs: DataFrame) -> DataFrame:
    """(user, item) pairs never to recommend again: bought or rated."""
    return pairs.where((F.col("n_purchase") + F.col("n_rating")) > 0).select("user_id", "item_id")


def bots_of(bots_day: DataFrame) -> DataFrame:
    """Users flagged on any day, with every reason and the days."""
    return bots_day.groupBy("user_id").agg(
        F.concat_ws("; ", F.sort_array(F.array_distinct(F.flatten(
            F.collect_list(F.split("reason", "; ")))))).alias("reason"),
        F.sort_array(F.collect_set("dt")).alias("days"))


def training_examples(histories: DataFrame, run_date: str, valid_days: int = VALID_DAYS,
                      history_len: int = 20) -> DataFrame:
    """(previous items -> next item) per position of each history, with a time-based split:
    targets in the last ``valid_days`` before the run date are ``valid``, the rest ``train``."""
    h = histories.select("user_id", F.arrays_zip("item_ids", "weights", "ts").alias("h"))
    pos = h.select("user_id", "h", F.posexplode("h").alias("i", "t")).where(F.col("i") > 0)
    cutoff = F.to_timestamp(F.lit(run_date)) - F.expr(f"INTERVAL {valid_days} DAYS")
    return pos.select(
        "user_id",
        F.slice("h", F.greatest(F.col("i") - history_len + 1, F.lit(1)), F.least(F.col("i"), F.lit(history_len)))
        .getField("item_ids").alias("history"),
        F.col("t.item_ids").alias("target"), F.col("t.weights").alias("weight"), F.col("t.ts").alias("target_ts"),
        F.when(F.col("t.ts") >= cutoff, "valid").otherwise("train").alias("split"),
    )


def features(uid: DataFrame, co_day: DataFrame, bots_day: DataFrame, catalog: DataFrame,
             run_date: str, users: DataFrame | None = None,
             segment_columns: tuple[str, ...] = ()) -> dict[str, DataFrame]:
    """All feature tables for a run date from the per-day tables (days before it), plus
    popularity per segment of ``users`` when ``segment_columns`` name some.

    Events for items not in today's catalog are left out. Bots stay out of training data,
    popularity and co-occurrence; their purchases still count as exclusions, so a flagged
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
    histories = user_histories(human_pairs).cache()
    co = (co_day.where(before).join(ids, "item_id", "left_semi")
          .join(ids.withColumnRenamed("item_id", "other_id"), "other_id", "left_semi"))
    return {
        "histories": histories,
        "training_examples": training_examples(histories, run_date),
        "item_popularity": item_popularity(human, human_pairs, run_date),
        "segment_popularity": segment_popularity(human, users, segment_columns, run_date),
        "user_features": user_features(pairs, uid, run_date),
        "user_affinities": user_affinities(human_pairs, catalog),
        "item_features": item_features(human, catalog, run_date),
        "co_occurrence": co_occurrence(co, run_date),
        "exclusions": exclusions(pairs),
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
                   run_date: str, users_path: str | None = None,
                   segment_columns: tuple[str, ...] = ()) -> dict[str, int]:
    """Feature tables for ``run_date`` from the cleaned per-day tables; returns row counts."""
    read = lambda name: spark.read.parquet(f"{clean_dir}/{name}")  # noqa: E731
    users = spark.read.parquet(users_path) if users_path and segment_columns else None
    tables = features(read("user_item_day"), read("co_day"), _bots_day(spark, clean_dir),
                      spark.read.parquet(catalog_path), run_date, users, segment_columns)
    counts = {name: _write_table(df, f"{out_dir}/{name}") for name, df in tables.items()}
    if counts["bots"]:
        log.warning("flagged %d bot-like users (kept out of training and popularity): %s",
                    counts["bots"], f"{out_dir}/bots")
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


def main(argv: list[str] | None = None) -> None:
    from spark_jobs.session import get_spark

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--validated", required=True, help="validated events folder (dt= partitions)")
    p.add_argument("--clean", required=True, help="cleaned per-day tables folder")
    p.add_argument("--catalog", required=True, help="validated catalog Parquet")
    p.add_argument("--out", required=True)
    p.add_argument("--quarantine", required=True)
    p.add_argument("--date", required=True)
    p.add_argument("--days", default="", help="comma-separated days to (re)clean first")
    p.add_argument("--users", help="validated users Parquet (for --segments)")
    p.add_argument("--segments", default="", help="comma-separated users columns: popularity per segment")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    spark = get_spark("nightrecs-features")
    try:
        if a.days:
            clean_days(spark, a.validated, a.clean, a.days.split(","), a.catalog, a.quarantine)
        build_features(spark, a.clean, a.catalog, a.out, a.date, a.users,
                       tuple(c for c in a.segments.split(",") if c))
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
