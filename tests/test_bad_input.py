"""The bad-input catalogue: every case has one expected outcome.

| case                                   | outcome                                                    |
| -------------------------------------- | ---------------------------------------------------------- |
| missing required column                | fail: file + column named                                  |
| wrong column type                      | fail: file + column + types named                          |
| corrupt Parquet file                   | fail: file named                                           |
| empty newest day                       | fail: volume check (warn in a sparse shop, see below)      |
| no events at all                       | fail                                                       |
| bad rows above max_bad_fraction        | fail: share named                                          |
| unknown-item events above the fraction | fail (feature job): column item_id and share named         |
| null keys                              | quarantine (reason), good rows kept                        |
| duplicate item_id, conflicting rows    | quarantine every copy                                      |
| identical duplicate rows               | warn, collapsed to one                                     |
| unknown event_type                     | quarantine                                                 |
| future timestamps                      | quarantine                                                 |
| negative or infinite price             | quarantine                                                 |
| partition folder not dt=<real date>    | fail: the files named (dt=garbage, dt=2026-13-45)          |
| event ts outside its dt= day           | warn, kept (a late arrival), counted                       |
| non-UTF-8 title                        | quarantine                                                 |
| rating out of range                    | quarantine                                                 |
| events for unknown items               | quarantine (feature job, events_unknown_item)              |
| events for unknown users               | warn, kept                                                 |
| emoji-heavy titles                     | pass, text intact                                          |
| partition with an extra column         | pass, column ignored                                       |
| bot user with 10^5 events              | flagged, kept out of training and popularity; volume warns |

A failing case must stop with a message (no bare stack trace) and leave ``recs/`` exactly as
it was; no case may lose good rows.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nightrecs.contract import EVENT_TYPES
from nightrecs.expectations.errors import DataQualityError
from nightrecs.tasks.layout import RunConfig
from nightrecs.tasks.pipeline import run_pipeline, run_step
from nightrecs.tasks.validate_raw import validate_raw
from tests.conftest import SHOP_DATE

EVENTS_FILE = "raw/events/dt=2026-03-05/part-00000.parquet"
NEWEST_FILE = "raw/events/dt=2026-03-09/part-00000.parquet"
CATALOG_FILE = "raw/catalog/part-00000.parquet"


def rewrite(path, change) -> None:
    df = pd.read_parquet(path)
    change(df).to_parquet(path, index=False)


def set_rows(column: str, rows: list[int], value):
    def change(df):
        df[column] = df[column].astype(object)
        df.loc[rows, column] = value
        return df
    return change


def n_rows(path) -> int:
    return pq.read_metadata(path).num_rows


# ---------------------------------------------------------------- failing cases

@pytest.fixture
def broken_shop(published_shop, tmp_path, tiny_model):
    """A published shop; after the test, recs/ must be byte-for-byte unchanged."""
    root = tmp_path / "shop"
    shutil.copytree(published_shop, root)
    snapshot = {p.relative_to(root): p.read_bytes() for p in (root / "recs").rglob("*") if p.is_file()}
    yield root, RunConfig(root=str(root), date=SHOP_DATE, top_n=10, train_epochs=1, base_model=tiny_model)
    after = {p.relative_to(root): p.read_bytes() for p in (root / "recs").rglob("*") if p.is_file()}
    assert after == snapshot, "a failed run changed recs/"


def fail_message(cfg) -> str:
    with pytest.raises(DataQualityError) as err:
        run_pipeline(cfg)
    return str(err.value)


def test_missing_required_column(broken_shop):
    root, cfg = broken_shop
    rewrite(root / EVENTS_FILE, lambda df: df.drop(columns=["event_type"]))
    msg = fail_message(cfg)
    assert f"{EVENTS_FILE}: missing required column 'event_type'" in msg


def test_wrong_column_type(broken_shop):
    root, cfg = broken_shop
    rewrite(root / EVENTS_FILE, lambda df: df.assign(user_id=range(len(df))))
    assert f"{EVENTS_FILE}: column 'user_id' has type int64, expected string" in fail_message(cfg)


def test_corrupt_parquet_file(broken_shop):
    root, cfg = broken_shop
    (root / EVENTS_FILE).write_bytes(b"PAR1 this is not parquet")
    msg = fail_message(cfg)
    assert EVENTS_FILE in msg and "not a readable Parquet file" in msg


def test_empty_newest_day(broken_shop):
    root, cfg = broken_shop
    rewrite(root / NEWEST_FILE, lambda df: df.iloc[:0])
    msg = fail_message(cfg)
    assert "expect_column_values_to_be_between on volume.events" in msg and "events=0" in msg


def test_empty_newest_day_of_a_sparse_shop_warns(broken_shop):
    """A shop with days without events (MovieLens: most days) is not stopped by one more."""
    root, cfg = broken_shop
    rewrite(root / NEWEST_FILE, lambda df: df.iloc[:0])
    shutil.rmtree(root / "raw/events/dt=2026-03-05")  # an empty day among the trailing ones
    result = validate_raw(cfg)
    summary = json.loads((root / f"reports/{SHOP_DATE}/summary.json").read_text())
    volume = next(t for t in summary["raw"]["tables"] if t["table"] == "volume")
    assert result["newest_day"] and "expect_column_values_to_be_between(events)" in volume["warn"]


def test_no_events_at_all(broken_shop):
    root, cfg = broken_shop
    shutil.rmtree(root / "raw/events")
    assert "events: no Parquet files under" in fail_message(cfg)


def test_unknown_items_above_threshold(broken_shop):
    root, cfg = broken_shop
    rewrite(root / NEWEST_FILE, lambda df: df.assign(item_id=np.where(np.arange(len(df)) % 10 == 0,
                                                                      "ghost", df["item_id"])))
    msg = fail_message(cfg)
    assert "column item_id" in msg and "not in the catalog" in msg and "max_bad_fraction=1.00%" in msg
    assert f"quarantine/{SHOP_DATE}/events_unknown_item" in msg
    assert not (root / "clean/_days/2026-03-09.json").exists()  # redone by the next run


def test_bad_rows_above_threshold(broken_shop):
    root, cfg = broken_shop
    n = n_rows(root / NEWEST_FILE)
    rewrite(root / NEWEST_FILE, set_rows("event_type", list(range(n // 2)), "wishlist"))
    msg = fail_message(cfg)
    assert "events:" in msg and "above max_bad_fraction 1.0%" in msg


# ---------------------------------------------------------------- quarantine, warn, pass

def ingest(shop, **kw) -> dict:
    return validate_raw(RunConfig(root=str(shop), date=SHOP_DATE, **kw))


def quarantine(shop, table: str) -> pd.DataFrame:
    return pd.read_parquet(shop / f"quarantine/{SHOP_DATE}/{table}")


def raw_count(shop, prefix="raw/events") -> int:
    return sum(n_rows(p) for p in (shop / prefix).rglob("*.parquet"))


def event_warnings(shop) -> dict:
    """The raw gate's warned expectations on events, with their row counts."""
    summary = json.loads((shop / f"reports/{SHOP_DATE}/summary.json").read_text())
    return next(t for t in summary["raw"]["tables"] if t["table"] == "events")["warn"]


def assert_kept_good_rows(shop, result, bad: int, table="events") -> None:
    raw = raw_count(shop, f"raw/{table}")
    assert result["rows"][table] == raw - bad
    assert result["quarantined"][table] == bad


@pytest.mark.parametrize("column,rows,value,reason", [
    ("user_id", [2, 9], None, "expect_column_values_to_not_be_null(user_id)"),
    ("event_type", [3, 7], "wishlist", "expect_column_values_to_be_in_set(event_type)"),
    ("ts", [0], pd.Timestamp("2031-01-01", tz="UTC"), "expect_column_values_to_be_between(ts)"),
])
def test_row_problems_are_quarantined(shop, column, rows, value, reason):
    rewrite(shop / EVENTS_FILE, set_rows(column, rows, value))
    result = ingest(shop)
    assert_kept_good_rows(shop, result, bad=len(rows))
    q = quarantine(shop, "events")
    assert sorted(q["_row"].astype(int)) == rows and set(q["_file"]) == {EVENTS_FILE}
    assert set(q["reason"]) == {reason}


def test_rating_out_of_range(shop):
    def ratings(df):
        df.loc[[1, 2], "event_type"] = "rating"
        df.loc[[1, 2], "value"] = [9.0, 4.0]  # 9 is out of [0.5, 5]
        return df
    rewrite(shop / EVENTS_FILE, ratings)
    result = ingest(shop)
    assert_kept_good_rows(shop, result, bad=1)
    assert list(quarantine(shop, "events")["_row"].astype(int)) == [1]


def test_conflicting_duplicate_items_quarantine_every_copy(shop):
    def dup(df):
        df.loc[4, "item_id"] = df.loc[5, "item_id"]  # same id, different title/price
        return df
    rewrite(shop / CATALOG_FILE, dup)
    result = ingest(shop, max_bad_fraction=0.05)
    assert_kept_good_rows(shop, result, bad=2, table="catalog")
    assert sorted(quarantine(shop, "catalog")["_row"].astype(int)) == [4, 5]


def test_identical_duplicate_rows_collapse(shop, caplog):
    rewrite(shop / CATALOG_FILE, lambda df: pd.concat([df, df.iloc[[3]]], ignore_index=True))
    result = ingest(shop)
    assert result["rows"]["catalog"] == 60 and result["quarantined"]["catalog"] == 0
    assert "1 exact duplicate rows collapsed" in caplog.text


def test_negative_price(shop):
    rewrite(shop / CATALOG_FILE, set_rows("price", [7], -3.0))
    result = ingest(shop, max_bad_fraction=0.05)
    assert_kept_good_rows(shop, result, bad=1, table="catalog")
    assert quarantine(shop, "catalog")["reason"].tolist() == ["expect_column_values_to_be_between(price)"]


def test_infinite_price(shop):
    rewrite(shop / CATALOG_FILE, set_rows("price", [4], float("inf")))
    result = ingest(shop, max_bad_fraction=0.05)
    assert_kept_good_rows(shop, result, bad=1, table="catalog")
    assert quarantine(shop, "catalog")["reason"].tolist() == ["expect_column_values_to_be_between(price)"]


@pytest.mark.parametrize("folder", ["dt=garbage", "dt=2026-13-45"])
def test_partition_folder_that_is_not_a_date_fails(shop, folder):
    bad = shop / "raw/events" / folder
    bad.mkdir()
    shutil.copy(shop / EVENTS_FILE, bad / "part-00000.parquet")
    with pytest.raises(DataQualityError, match=rf"not in a dt=YYYY-MM-DD partition.*{folder}/part-00000.parquet"):
        validate_raw(RunConfig(root=str(shop), date=SHOP_DATE))


def test_events_outside_their_partition_day_warn_and_are_kept(shop):
    rewrite(shop / EVENTS_FILE, set_rows("ts", [0, 1, 2], pd.Timestamp("2026-03-03 10:00", tz="UTC")))
    assert_kept_good_rows(shop, ingest(shop), bad=0)
    assert event_warnings(shop) == {"expect_column_values_to_be_in_set(ts_in_day)": 3}


def test_non_utf8_title_quarantined_and_emoji_kept(shop):
    t = pq.read_table(shop / CATALOG_FILE)
    titles = t.column("title").to_pylist()
    titles[1] = "Trail Runner 🏃‍♀️🔥👟 Ünïcødé ✨"
    raw = [v.encode() for v in titles]
    raw[2] = b"Caf\xe9 Chair"  # Latin-1, not UTF-8
    offsets = np.cumsum([0] + [len(v) for v in raw]).astype(np.int32)
    bad = pa.Array.from_buffers(pa.string(), len(raw), [None, pa.py_buffer(offsets.tobytes()),
                                                        pa.py_buffer(b"".join(raw))])
    pq.write_table(t.set_column(t.schema.get_field_index("title"), "title", bad), shop / CATALOG_FILE)
    result = ingest(shop, max_bad_fraction=0.05)
    assert_kept_good_rows(shop, result, bad=1, table="catalog")
    q = quarantine(shop, "catalog")
    assert q["reason"].tolist() == ["invalid UTF-8 in title"] and q["_row"].astype(int).tolist() == [2]
    validated = pd.read_parquet(shop / f"validated/{SHOP_DATE}/catalog.parquet")
    assert titles[1] in set(validated["title"])


def test_unknown_users_warn_and_are_kept(shop):
    rewrite(shop / EVENTS_FILE, set_rows("user_id", [0, 1], "stranger"))
    assert_kept_good_rows(shop, ingest(shop), bad=0)
    assert event_warnings(shop) == {"expect_column_values_to_be_in_set(user_known)": 2}


def test_extra_column_is_ignored(shop):
    path = shop / EVENTS_FILE
    t = pq.read_table(path)
    pq.write_table(t.append_column("campaign", t.column("user_id")), path)
    assert_kept_good_rows(shop, ingest(shop), bad=0)
    assert "campaign" not in pq.read_schema(shop / "validated/events/dt=2026-03-05/part-00000.parquet").names


def test_segment_columns_are_kept_as_strings_and_missing_ones_are_null(shop):
    """Configured segment columns survive the gate as strings (an int column too), the
    other extra columns do not, and a segment column no file has is all null."""
    users = shop / "raw/users/part-00000.parquet"
    t = pq.read_table(users)
    pq.write_table(t.append_column("age", pa.array(range(t.num_rows), pa.int64())), users)
    ingest(shop, segment_columns="country,age,tier")
    kept = pq.read_table(shop / f"validated/{SHOP_DATE}/users.parquet")
    assert kept.schema.names == ["user_id", "signup_at", "country", "age", "tier"]
    assert all(kept.schema.field(c).type == pa.string() for c in ("country", "age", "tier"))
    assert kept.column("age").to_pylist()[:2] == ["0", "1"] and kept.column("tier").null_count == kept.num_rows
    assert ingest(shop)["rows"]["users"] == kept.num_rows
    assert pq.read_schema(shop / f"validated/{SHOP_DATE}/users.parquet").names == ["user_id", "signup_at"]


def test_unknown_items_and_bots_in_the_feature_job(shop):
    """A crawler with 10^5 events is flagged and kept out of training and popularity; events
    for items not in the catalog are quarantined by the feature job."""
    path = shop / NEWEST_FILE
    ev = pd.read_parquet(path)
    items = pd.read_parquet(shop / CATALOG_FILE)["item_id"].to_numpy()
    n = 100_000
    bot = pd.DataFrame({
        "event_id": [f"bot-{k}" for k in range(n)], "user_id": "u000000",
        "item_id": items[np.arange(n) % len(items)], "event_type": "view",
        "ts": pd.Timestamp("2026-03-09", tz="UTC") + pd.to_timedelta(np.arange(n) % 86_000, unit="s"),
        "value": np.nan, "session_id": "bot", "query": None})
    ghost = ev.iloc[:3].assign(item_id="not-in-catalog", event_id=["g1", "g2", "g3"])
    pd.concat([ev, bot, ghost], ignore_index=True).to_parquet(path, index=False)
    cfg = RunConfig(root=str(shop), date=SHOP_DATE)
    run_step("validate_raw", cfg)
    built = run_step("build_features", cfg)
    assert built["counts"]["bots"] == 1 and built["cleaned"]["unknown_item"] == 3
    summary = json.loads((shop / f"reports/{SHOP_DATE}/summary.json").read_text())
    volume = next(t for t in summary["raw"]["tables"] if t["table"] == "volume")
    assert list(volume["warn"]) == ["expect_column_values_to_be_between(events)"]
    bots = pd.read_parquet(shop / f"features/{SHOP_DATE}/bots")
    assert bots["user_id"].tolist() == ["u000000"]
    hist = pd.read_parquet(shop / f"features/{SHOP_DATE}/histories")
    assert "u000000" not in set(hist["user_id"])
    items = pd.read_parquet(shop / f"features/{SHOP_DATE}/item_features")
    assert items[[f"n_{t}" for t in EVENT_TYPES]].to_numpy().sum() < raw_count(shop) - n  # the bot's are out
    ghosts = pd.read_parquet(shop / f"quarantine/{SHOP_DATE}/events_unknown_item")
    assert set(ghosts["reason"]) == {"item_id not in catalog"} and len(ghosts) == 3


def test_feature_gate_stops_on_infinite_or_unknown_values(published_shop, tmp_path):
    root = tmp_path / "shop"
    shutil.copytree(published_shop, root)
    pop_dir = root / f"features/{SHOP_DATE}/item_features"
    pop = pd.read_parquet(pop_dir)
    pop["n_view"] = pop["n_view"].astype(float)
    pop.loc[0, "n_view"] = np.inf
    pop.loc[1, "item_id"] = "ghost"
    shutil.rmtree(pop_dir)
    pop_dir.mkdir()
    pop.to_parquet(pop_dir / "part-0.parquet")
    with pytest.raises(DataQualityError) as err:
        run_step("validate_features", RunConfig(root=str(root), date=SHOP_DATE))
    msg = str(err.value)
    assert "expect_column_values_to_not_be_null on item_features.n_view: 1 of" in msg
    assert "item_features.item_id" in msg and "item_id='ghost'" in msg


def test_batched_ingest_equals_one_batch(shop, tmp_path, monkeypatch):
    """With one day per batch the result is the same; quarantine reports add up."""
    import nightrecs.tasks.validate_raw as vr

    rewrite(shop / EVENTS_FILE, set_rows("event_type", [1], "wishlist"))
    rewrite(shop / NEWEST_FILE, set_rows("event_type", [2], "wishlist"))
    other = tmp_path / "other"
    shutil.copytree(shop, other)
    whole = ingest(shop)
    monkeypatch.setattr(vr, "INGEST_BATCH_BYTES", 1)
    batched = ingest(other)
    assert batched["rows"] == whole["rows"] and batched["quarantined"] == whole["quarantined"]
    assert batched["quarantined"]["events"] == 2
    assert len(list((other / f"quarantine/{SHOP_DATE}/events").glob("*.parquet"))) == 2
    a = pd.read_parquet(shop / "validated/events").sort_values("event_id", ignore_index=True)
    b = pd.read_parquet(other / "validated/events").sort_values("event_id", ignore_index=True)
    pd.testing.assert_frame_equal(a, b)
    assert not (other / "validated/_incoming").exists() or not any((other / "validated/_incoming").iterdir())


def test_second_run_ingests_only_changed_days(shop):
    first = ingest(shop)
    assert len(first["ingested_days"]) == 8
    again = validate_raw(RunConfig(root=str(shop), date=SHOP_DATE))
    assert again["ingested_days"] == []
    rewrite(shop / EVENTS_FILE, lambda df: df.iloc[:-1])
    changed = validate_raw(RunConfig(root=str(shop), date=SHOP_DATE))
    assert changed["ingested_days"] == ["2026-03-05"]


def test_rerun_cleans_only_changed_days_and_repeats_its_features(shop, monkeypatch):
    """Run twice: nothing is cleaned again and the features repeat. Re-deliver one raw day
    with the same rows in another order: it is re-ingested (new file) but not cleaned
    again, and the features are kept. Change that day's rows: only that day is cleaned
    again, other days' files are untouched, and the features equal a build from scratch.
    A new clean format cleans every day again."""
    from nightrecs.spark_jobs import features as job

    cfg = RunConfig(root=str(shop), date=SHOP_DATE)
    run_step("validate_raw", cfg)
    first = run_step("build_features", cfg)
    assert len(first["cleaned_days"]) == 8 and first["cleaned"]["events"] == raw_count(shop)
    tables = {"histories": ["user_id"], "item_features": ["item_id"], "user_features": ["user_id"],
              "exclusions": ["user_id", "item_id"]}

    def snapshot(root: Path = shop):
        return {t: pd.read_parquet(root / f"features/{SHOP_DATE}/{t}").sort_values(k, ignore_index=True)
                for t, k in tables.items()}

    def files():
        return {p: p.stat().st_mtime_ns for p in (shop / "clean").rglob("*.parquet")}

    def features_stamp():
        return (shop / f"features/{SHOP_DATE}/_inputs.json").stat().st_mtime_ns

    before, clean_files, stamp = snapshot(), files(), features_stamp()
    again = run_step("build_features", cfg)
    assert again["cleaned_days"] == [] and again["up_to_date"] and again["counts"] == first["counts"]
    rewrite(shop / EVENTS_FILE, lambda df: df.iloc[::-1])  # same rows, new file
    assert validate_raw(cfg)["ingested_days"] == ["2026-03-05"]
    redelivered = run_step("build_features", cfg)
    assert redelivered["cleaned_days"] == [] and redelivered["up_to_date"]
    assert files() == clean_files and features_stamp() == stamp

    rewrite(shop / EVENTS_FILE, lambda df: df.iloc[:-3])  # rows changed
    assert validate_raw(cfg)["ingested_days"] == ["2026-03-05"]
    changed = run_step("build_features", cfg)
    assert changed["cleaned_days"] == ["2026-03-05"] and not changed["up_to_date"]
    assert changed["cleaned"]["events"] < first["cleaned"]["events"]
    after_files = files()
    untouched = {p: t for p, t in clean_files.items() if "dt=2026-03-05" not in str(p)}
    assert untouched and all(after_files.get(p) == t for p, t in untouched.items())
    assert all(t not in clean_files.values() for p, t in after_files.items() if "dt=2026-03-05" in str(p))
    scratch = shop.parent / "scratch"
    shutil.copytree(shop / "raw", scratch / "raw")
    run_step("validate_raw", RunConfig(root=str(scratch), date=SHOP_DATE))
    run_step("build_features", RunConfig(root=str(scratch), date=SHOP_DATE))
    after, fresh = snapshot(), snapshot(scratch)
    assert not before["user_features"].equals(after["user_features"])
    for t in tables:
        pd.testing.assert_frame_equal(after[t], fresh[t], check_exact=False)
    monkeypatch.setattr(job, "CLEAN_VERSION", job.CLEAN_VERSION + 1)
    assert len(run_step("build_features", cfg)["cleaned_days"]) == 8
