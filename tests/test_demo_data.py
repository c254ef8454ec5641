"""The demo shop follows the raw contract and has the structure the models rely on."""

from __future__ import annotations

import pandas as pd

from nightrecs.tasks.demo_data import ShopSpec, generate
from nightrecs.tasks.layout import RunConfig
from nightrecs.tasks.storage import open_root
from nightrecs.tasks.validate_raw import validate_raw
from tests.conftest import SHOP_DATE


def test_shop_passes_the_raw_gate(shop):
    result = validate_raw(RunConfig(root=str(shop), date=SHOP_DATE))
    assert result["rows"]["catalog"] == 60 and result["rows"]["users"] == 120
    assert result["rows"]["events"] > 500


def test_funnel_and_partitions(shop_template):
    root = open_root(shop_template)
    ev = root.read_parquet("raw/events")
    keys = root.list("raw/events")
    assert len(keys) == 8 and all("/dt=2026-03-0" in k for k in keys)
    counts = ev["event_type"].value_counts()
    assert counts["view"] > counts["click"] > counts["add_to_cart"] > counts["purchase"] > 0
    # every purchase follows a cart add of the same item in the same session
    carts = set(map(tuple, ev.loc[ev.event_type == "add_to_cart", ["session_id", "item_id"]].values))
    buys = ev.loc[ev.event_type == "purchase", ["session_id", "item_id"]].values
    assert all(tuple(b) in carts for b in buys)
    assert ev["event_id"].is_unique and ev["query"].notna().any()
    assert (ev["ts"] < pd.Timestamp(SHOP_DATE, tz="UTC")).all()


def test_users_have_consistent_tastes(shop_template):
    """Most of a user's views fall into their two favourite categories."""
    root = open_root(shop_template)
    ev = root.read_parquet("raw/events")
    cat = root.read_parquet("raw/catalog").set_index("item_id")["category"]
    views = ev[ev.event_type == "view"].assign(category=lambda d: d.item_id.map(cat))
    share = views.groupby("user_id")["category"].agg(
        lambda c: c.value_counts().iloc[:2].sum() / len(c))
    active = views.groupby("user_id").size() >= 10
    assert share[active].median() > 0.7


def test_same_seed_same_shop(tmp_path):
    spec = ShopSpec(users=30, items=20, days=3, end_date="2026-01-04", seed=11)
    a, b = open_root(tmp_path / "a"), open_root(tmp_path / "b")
    generate(a, spec), generate(b, spec)
    assert a.read_bytes("raw/events/dt=2026-01-02/part-00000.parquet") == \
        b.read_bytes("raw/events/dt=2026-01-02/part-00000.parquet")
