"""Bad raw input stops the run with a message naming file, column and rows; recs/ untouched."""

from __future__ import annotations

import shutil

import pandas as pd
import pyarrow.parquet as pq
import pytest

from expectations.errors import DataQualityError
from tasks.layout import RunConfig
from tasks.pipeline import run_pipeline
from tests.conftest import SHOP_DATE

EVENTS_FILE = "raw/events/dt=2026-03-05/part-00000.parquet"


@pytest.fixture
def broken_shop(published_shop, tmp_path, tiny_model):
    root = tmp_path / "shop"
    shutil.copytree(published_shop, root)
    snapshot = {p.relative_to(root): p.read_bytes() for p in (root / "recs").rglob("*") if p.is_file()}
    cfg = RunConfig(root=str(root), date=SHOP_DATE, top_n=10, train_steps=1, base_model=tiny_model)
    yield root, cfg
    after = {p.relative_to(root): p.read_bytes() for p in (root / "recs").rglob("*") if p.is_file()}
    assert after == snapshot, "a failed run changed recs/"


def rewrite(path, change) -> None:
    df = pd.read_parquet(path)
    change(df).to_parquet(path, index=False)


def fail_message(cfg) -> str:
    with pytest.raises(DataQualityError) as err:
        run_pipeline(cfg)
    return str(err.value)


def test_missing_required_column(broken_shop):
    root, cfg = broken_shop
    rewrite(root / EVENTS_FILE, lambda df: df.drop(columns=["event_type"]))
    msg = fail_message(cfg)
    assert EVENTS_FILE in msg and "missing required column 'event_type'" in msg


def test_unknown_event_type(broken_shop):
    root, cfg = broken_shop

    def poison(df):
        df.loc[[3, 7], "event_type"] = "wishlist"
        return df

    rewrite(root / EVENTS_FILE, poison)
    msg = fail_message(cfg)
    assert "expect_column_values_to_be_in_set on events.event_type: 2 of" in msg
    assert f"{EVENTS_FILE} row 3: event_type='wishlist'" in msg
    assert f"{EVENTS_FILE} row 7" in msg


def test_wrong_column_type(broken_shop):
    root, cfg = broken_shop
    rewrite(root / EVENTS_FILE, lambda df: df.assign(user_id=range(len(df))))
    msg = fail_message(cfg)
    assert EVENTS_FILE in msg and "column 'user_id' has type int64, expected string" in msg


def test_null_keys_and_duplicate_items(broken_shop):
    root, cfg = broken_shop
    path = root / "raw/catalog/part-00000.parquet"

    def dup(df):
        df.loc[4, "item_id"] = df.loc[5, "item_id"]
        df.loc[6, "title"] = None
        return df

    rewrite(path, dup)
    msg = fail_message(cfg)
    assert "expect_column_values_to_be_unique on catalog.item_id" in msg
    assert "raw/catalog/part-00000.parquet row 4" in msg
    assert "expect_column_values_to_not_be_null on catalog.title" in msg


def test_future_timestamps(broken_shop):
    root, cfg = broken_shop

    def future(df):
        df.loc[0, "ts"] = pd.Timestamp("2031-01-01", tz="UTC")
        return df

    rewrite(root / EVENTS_FILE, future)
    msg = fail_message(cfg)
    assert "events.ts" in msg and f"{EVENTS_FILE} row 0" in msg


def test_corrupt_parquet_file(broken_shop):
    root, cfg = broken_shop
    (root / EVENTS_FILE).write_bytes(b"PAR1 this is not parquet")
    msg = fail_message(cfg)
    assert EVENTS_FILE in msg and "not a readable Parquet file" in msg


def test_no_events_before_the_run_date(broken_shop):
    root, cfg = broken_shop
    shutil.rmtree(root / "raw/events")
    assert "events: no Parquet files under" in fail_message(cfg)


def test_extra_columns_are_ignored(shop):
    """Not bad input: the contract allows extra columns."""
    from tasks.validate_raw import validate_raw

    path = shop / EVENTS_FILE
    t = pq.read_table(path)
    pq.write_table(t.append_column("campaign", t.column("user_id")), path)
    assert validate_raw(RunConfig(root=str(shop), date=SHOP_DATE))["rows"]["events"] > 0
