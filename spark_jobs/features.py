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
WINDOWS = (1, 7, 30)
RATE_PRIOR_VIEWS = 20.0  # smoothing strength: rates start at the global rate
CO_HALF_LIFE_DAYS = 30.0
CO_TOP_K = 20
CO_USER_RECENT = 50  # items per user considered for user-level co-occurrence ...
CO_USER_SPAN = 5     # ... pairing each with the next 5 in the user's sequence (not all pairs)
VALID_DAYS = 7
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
        h.getField("last_ts").alias("ts"),
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


def _age_days(run_date: str):
    return F.datediff(F.to_date(F.lit(run_date)), F.to_date("ts"))


def item_windows(events: DataFrame, catalog: DataFrame, run_date: str) -> DataFrame:
    """Per catalog item: events per type and popularity per window (1/7/30 days), smoothed
    view->click and view->purchase rates (items without views get the global rate), and
    the 7d-vs-30d trend (1 = steady, > 1 = rising)."""
    age = _age_days(run_date)
    w = with_weights(events)
    aggs = []
    for d in WINDOWS:
        inside = age <= d
        aggs.append(F.sum(F.when(inside, F.col("weight")).otherwise(0.0)).alias(f"pop_{d}d"))
        for t in ("view", "click", "purchase"):
            aggs.append(F.sum(F.when(inside & (F.col("event_type") == t), 1).otherwise(0)).alias(f"n_{t}_{d}d"))
    counted = w.groupBy("item_id").agg(*aggs)
    per_item = catalog.select("item_id").join(counted, "item_id", "left").fillna(0)
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


def user_windows(events: DataFrame, run_date: str) -> DataFrame:
    """Per user: events per type per window and days since the last event."""
    age = _age_days(run_date)
    aggs = [F.min(age).alias("recency_days")]
    for d in WINDOWS[1:]:
        aggs += [F.sum(F.when((age <= d) & (F.col("event_type") == t), 1).otherwise(0)).alias(f"n_{t}_{d}d")
                 for t in EVENT_WEIGHTS]
    return events.groupBy("user_id").agg(*aggs)


def user_affinities(events: DataFrame, catalog: DataFrame) -> DataFrame:
    """Long table (user_id, kind, value, share): each user's weighted share of interactions
    per category and per brand, and the user's price band (low / mid / high tercile of the
    catalog's prices, by the median price of what they interacted with)."""
    cols = [c for c in ("category", "brand", "price") if c in catalog.columns]
    joined = with_weights(events).join(catalog.select("item_id", *cols), "item_id")
    out = None
    for kind in ("category", "brand"):
        if kind not in cols:
            continue
        per = joined.where(F.col(kind).isNotNull()).groupBy("user_id", kind).agg(F.sum("weight").alias("w"))
        share = F.col("w") / F.sum("w").over(Window.partitionBy("user_id"))
        part = per.select("user_id", F.lit(kind).alias("kind"), F.col(kind).alias("value"), share.alias("share"))
        out = part if out is None else out.unionByName(part)
    if "price" in cols:
        q = catalog.where(F.col("price").isNotNull()).approxQuantile("price", [1 / 3, 2 / 3], 0.001)
        if len(q) == 2:
            med = joined.groupBy("user_id").agg(F.percentile_approx("price", 0.5).alias("p"))
            band = F.when(F.col("p") <= q[0], "low").when(F.col("p") <= q[1], "mid").otherwise("high")
            part = med.where(F.col("p").isNotNull()).select(
                "user_id", F.lit("price_band").alias("kind"), band.alias("value"), F.lit(1.0).alias("share"))
            out = part if out is None else out.unionByName(part)
    return out


def co_occurrence(events: DataFrame, run_date: str, top_k: int = CO_TOP_K) -> DataFrame:
    """Item-item scores from items seen together in a session (weight 1) or close together
    (within ``CO_USER_SPAN`` positions) in a user's 50 most recent items (weight 0.5),
    decayed with the age of the older event; top-K per item. Pairs per user stay linear in
    history length, so cost grows with events, not with their square."""
    decay = F.pow(F.lit(0.5), _age_days(run_date) / F.lit(CO_HALF_LIFE_DAYS))
    touched = events.select("user_id", "session_id", "item_id", "ts", decay.alias("d"))
    s_items = touched.groupBy("session_id", "item_id").agg(F.max("d").alias("d"))
    sessions = (s_items.alias("a").join(s_items.alias("b"), "session_id")
                .where(F.col("a.item_id") != F.col("b.item_id"))
                .select(F.col("a.item_id").alias("item_id"), F.col("b.item_id").alias("other_id"),
                        F.least("a.d", "b.d").alias("score")))
    recent = (touched.groupBy("user_id", "item_id").agg(F.max("ts").alias("ts"), F.max("d").alias("d"))
              .withColumn("r", F.row_number().over(Window.partitionBy("user_id").orderBy(F.desc("ts"))))
              .where(F.col("r") <= CO_USER_RECENT))
    ahead = recent.select("user_id", F.explode(F.sequence(F.col("r") + 1, F.col("r") + CO_USER_SPAN)).alias("r"),
                          F.col("item_id").alias("other_id"), F.col("d").alias("d2"))
    near = recent.join(ahead, ["user_id", "r"]).select(
        "item_id", "other_id", (F.least("d", "d2") * 0.5).alias("score"))
    users = near.unionByName(near.select(F.col("other_id").alias("item_id"),
                                         F.col("item_id").alias("other_id"), "score"))
    scores = sessions.unionByName(users).groupBy("item_id", "other_id").agg(F.sum("score").alias("score"))
    rank = F.row_number().over(Window.partitionBy("item_id").orderBy(F.desc("score"), "other_id"))
    return scores.withColumn("rank", rank).where(F.col("rank") <= top_k)


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


def build(events: DataFrame, catalog: DataFrame, run_date: str,
          bot_max_events_per_day: int = BOT_MAX_EVENTS_PER_DAY,
          bot_max_items_per_hour: int = BOT_MAX_ITEMS_PER_HOUR) -> dict[str, DataFrame]:
    """All feature tables from validated events (already restricted to ``dt < run_date``).

    Bots stay out of training data, popularity and co-occurrence; their purchases still
    count as exclusions, so a flagged person is never shown what they bought.
    """
    clean = sessionize(deduplicate(conform_events(events)))
    known, unknown = split_known_items(clean, catalog)
    known = known.cache()
    bots = flag_bots(known, bot_max_events_per_day, bot_max_items_per_hour).cache()
    human = known.join(bots.select("user_id"), "user_id", "left_anti").cache()
    recent = human.where(_age_days(run_date) <= max(WINDOWS))
    histories = user_histories(human).cache()
    return {
        "histories": histories,
        "training_examples": training_examples(histories, run_date),
        "item_popularity": item_popularity(human, run_date),
        "user_features": user_features(known).join(user_windows(known, run_date), "user_id", "left"),
        "user_affinities": user_affinities(human, catalog),
        "item_features": item_features(human, catalog).join(item_windows(recent, catalog, run_date), "item_id"),
        "co_occurrence": co_occurrence(human, run_date),
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
