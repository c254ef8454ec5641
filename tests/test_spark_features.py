"""The feature transformations on tiny hand-made frames, and the incremental job on the test shop."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from nightrecs.spark_jobs import features as F
from tests.conftest import SHOP_DATE


@pytest.fixture(scope="module")
def spark():
    from nightrecs.spark_jobs.session import get_spark

    s = get_spark("nightrecs-tests", master="local[2]")
    yield s
    s.stop()


def ts(day: int, hour: int = 12) -> dt.datetime:
    return dt.datetime(2026, 3, day, hour)


@pytest.fixture
def events(spark):
    rows = [
        # user, item, type, ts, event_id
        ("u1", "a", "view", ts(1), "e1"),
        ("u1", "a", "view", ts(1), "e1"),          # exact duplicate id
        ("u1", "b", "view", ts(2), None),
        ("u1", "b", "view", ts(2), None),          # duplicate without id
        ("u1", "a", "purchase", ts(3), "e3"),
        ("u1", "c", "click", ts(4), "e4"),
        ("u2", "b", "rating", ts(5), "e5"),
        ("u2", "zz", "view", ts(5), "e6"),         # item not in catalog
    ]
    rows = [(*r, 4.5 if r[2] == "rating" else None) for r in rows]
    return spark.createDataFrame(rows, "user_id string, item_id string, event_type string, ts timestamp, "
                                       "event_id string, value double")


@pytest.fixture
def catalog(spark):
    return spark.createDataFrame([("a",), ("b",), ("c",), ("d",)], "item_id string")


def uid_of(events):
    return F.user_item_day(F.clean(events))


def pairs_of(events):
    return F.roll_up(uid_of(events))


def frame(spark, rows, schema="user_id string, item_id string, event_type string, ts timestamp"):
    return spark.createDataFrame(rows, schema)


def test_conform_adds_optional_columns_and_the_day(events):
    out = F.conform_events(events)
    assert out.columns == ["user_id", "item_id", "event_type", "ts", "value", "session_id", "query",
                           "event_id", "dt"]
    assert out.first().dt == dt.date(2026, 3, 1)


def test_deduplicate_by_id_then_by_content(events):
    assert F.deduplicate(F.conform_events(events)).count() == 6


def test_unknown_items_are_quarantined_not_lost(events, catalog):
    known, unknown = F.split_known_items(F.conform_events(events), catalog)
    assert known.count() + unknown.count() == events.count()
    bad = unknown.collect()
    assert [(r.item_id, r.reason) for r in bad] == [("zz", "item_id not in catalog")]


def test_histories_ordered_by_last_interaction_and_capped(events):
    pairs = pairs_of(events)
    h = {r.user_id: r for r in F.user_histories(pairs).collect()}
    # u1: b (day 2), a (last touched day 3 by the purchase), c (day 4)
    assert h["u1"].item_ids == ["b", "a", "c"]
    assert h["u1"].weights == [1.0, 4.0, 2.0]
    # the strongest event type survives as itself, and a rating keeps its stars
    assert h["u1"].event_types == ["view", "purchase", "click"] and h["u1"].ratings == [None, None, None]
    assert h["u2"].event_types == ["rating", "view"] and h["u2"].ratings == [4.5, None]  # b, then zz
    capped = {r.user_id: r.item_ids for r in F.user_histories(pairs, max_len=2).collect()}
    assert capped["u1"] == ["a", "c"]


def test_the_latest_rating_wins(spark):
    rows = [("u1", "a", "rating", ts(1), 5.0), ("u1", "a", "rating", ts(3), 1.0), ("u1", "a", "view", ts(4), None)]
    h = F.user_histories(pairs_of(frame(spark, rows, "user_id string, item_id string, event_type string, "
                                                    "ts timestamp, value double"))).first()
    assert (h.event_types, h.ratings) == (["rating"], [1.0])


def test_user_item_day_sums_back_to_the_events(events):
    uid = uid_of(events).collect()
    assert sum(r.n_view + r.n_click + r.n_purchase + r.n_rating + r.n_add_to_cart for r in uid) == 6
    a = next(r for r in uid if r.user_id == "u1" and r.item_id == "a")
    assert (a.n_view, a.weight, a.weight_sum, a.dt) == (1, 1.0, 1.0, dt.date(2026, 3, 1))


def test_exclusions_are_bought_or_rated_from_that_day_on(events):
    got = sorted((r.user_id, r.item_id, r.since.date()) for r in F.exclusions(uid_of(events)).collect())
    assert got == [("u1", "a", dt.date(2026, 3, 3)), ("u2", "b", dt.date(2026, 3, 5))]


def test_item_features_cover_whole_catalog(events, catalog):
    rows = {r.item_id: r for r in F.item_features(uid_of(events), catalog, "2026-03-10").collect()}
    assert set(rows) == {"a", "b", "c", "d"}
    assert rows["d"].n_view == 0 and rows["a"].n_purchase == 1 and rows["d"].first_seen is None


def test_sessions_rebuilt_after_30_minutes_of_inactivity_or_at_midnight(spark):
    rows = [("u1", "a", "view", dt.datetime(2026, 3, 1, 10, 0), None),
            ("u1", "b", "view", dt.datetime(2026, 3, 1, 10, 29), None),
            ("u1", "c", "view", dt.datetime(2026, 3, 1, 11, 0), None),   # 31 min gap: new session
            ("u1", "d", "view", dt.datetime(2026, 3, 1, 11, 5), "given"),  # kept as given
            ("u2", "a", "view", dt.datetime(2026, 3, 1, 23, 55), None),
            ("u2", "b", "view", dt.datetime(2026, 3, 2, 0, 5), None)]     # next day partition
    ev = F.conform_events(frame(spark, rows, "user_id string, item_id string, event_type string, "
                                             "ts timestamp, session_id string"))
    got = {r.item_id + r.user_id: r.session_id for r in F.sessionize(ev).collect()}
    assert got["au1"] == got["bu1"] != got["cu1"]
    assert got["du1"] == "given" and got["au2"] not in (got["au1"], got["cu1"])
    assert got["au2"] != got["bu2"]


def test_bots_flagged_and_kept_out_of_training_and_popularity(spark):
    base = dt.datetime(2026, 3, 1, 10, 0)
    rows = [("bot", f"i{k % 50}", "view", base + dt.timedelta(seconds=k)) for k in range(120)]
    rows += [("human", "i1", "view", base), ("human", "i2", "purchase", base),
             ("bot", "i3", "purchase", base + dt.timedelta(days=1))]  # a normal day for the bot
    ev = F.clean(frame(spark, rows))
    catalog = spark.createDataFrame([(f"i{k}",) for k in range(50)], "item_id string")
    bots = F.flag_bots(ev, max_events_per_day=100, max_items_per_hour=40).collect()
    assert [(b.user_id, str(b.dt), b.reason) for b in bots] == [
        ("bot", "2026-03-01", "more than 100 events in a day; more than 40 items in an hour")]
    assert F.flag_bots(ev).count() == 0  # default thresholds: 120 events is a person
    daily = F.daily_tables(ev, bot_max_events_per_day=100, bot_max_items_per_hour=40)
    out = F.features(daily["user_item_day"], daily["bots_day"], catalog, "2026-03-03")
    assert [r.user_id for r in out["histories"].collect()] == ["human"]
    assert {r.item_id: r.n_view for r in out["item_features"].collect() if r.n_view} == {"i1": 1}
    assert [(r.user_id, [str(d) for d in r.days]) for r in out["bots"].collect()] == [("bot", ["2026-03-01"])]
    assert ("bot", "i3") in {(r.user_id, r.item_id) for r in out["exclusions"].collect()}


def test_item_windows_and_rates(spark):
    rows = [("u1", "a", "view", ts(9)), ("u1", "a", "click", ts(9)), ("u2", "a", "view", ts(2)),
            ("u3", "b", "view", ts(1, 1))]
    cat = spark.createDataFrame([("a",), ("b",), ("c",)], "item_id string")
    got = {r.item_id: r for r in F.item_features(uid_of(frame(spark, rows)), cat, "2026-03-10").collect()}
    assert got["a"].n_view_7d == 1 and got["a"].n_view_30d == 2
    global_rate = 1 / 3  # 1 click over 3 views
    assert got["c"].click_rate == pytest.approx(global_rate)  # no views: the prior
    assert got["a"].click_rate == pytest.approx((1 + 20 * global_rate) / (2 + 20))


def test_user_windows_and_recency(spark):
    rows = [("u1", "a", "view", ts(1)), ("u1", "b", "click", ts(8)), ("u1", "b", "view", ts(8))]
    u = F.user_features(pairs_of(frame(spark, rows)), uid_of(frame(spark, rows)), "2026-03-10").first()
    assert (u.n_events, u.n_items, u.recency_days) == (3, 2, 2)
    assert (u.n_view_7d, u.n_view_30d, u.n_click_7d) == (1, 2, 1)


def _days(shop):
    return sorted(p.name[3:] for p in (shop / "validated/events").glob("dt=*"))


def _table(path, key):
    return pd.read_parquet(path).sort_values(key, ignore_index=True)


def test_cleaning_day_by_day_equals_cleaning_all_at_once(spark, shop, tmp_path):
    """The nightly pattern (history once, then one new day) gives the same per-day tables
    and features as one batch, and features only see days before their run date."""
    from nightrecs.tasks.layout import RunConfig
    from nightrecs.tasks.validate_raw import validate_raw

    validate_raw(RunConfig(root=str(shop), date=SHOP_DATE))
    days, events = _days(shop), str(shop / "validated/events")
    catalog = str(shop / f"validated/{SHOP_DATE}/catalog.parquet")
    for name, batches in (("once", [days]), ("nightly", [days[:-1], days[-1:]])):
        for batch in batches:
            F.clean_days(spark, events, str(tmp_path / name / "clean"), batch, catalog, str(tmp_path / name / "q"))
        F.build_features(spark, str(tmp_path / name / "clean"), catalog, str(tmp_path / name / "features"), SHOP_DATE)
    for table, key in (("clean/events", ["user_id", "ts", "item_id", "event_type"]),
                       ("clean/user_item_day", ["dt", "user_id", "item_id"]),
                       ("features/histories", ["user_id"]), ("features/item_features", ["item_id"]),
                       ("features/exclusions", ["user_id", "item_id"])):
        a, b = _table(tmp_path / "once" / table, key), _table(tmp_path / "nightly" / table, key)
        assert len(a) > 0
        pd.testing.assert_frame_equal(a, b, check_exact=False, check_categorical=False)
    early = "2026-03-05"
    F.build_features(spark, str(tmp_path / "once/clean"), catalog, str(tmp_path / "early"), early)
    last = pd.read_parquet(tmp_path / "early/user_features")["last_ts"].max()
    assert last < pd.Timestamp(early) <= pd.read_parquet(tmp_path / "once/features/user_features")["last_ts"].max()
