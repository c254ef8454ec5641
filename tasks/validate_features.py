"""Step 2b: gate the feature tables before any model sees them."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from nightrecs.expectations.core import enforce
from nightrecs.expectations.features import items_in_catalog_suite, numeric_suite
from nightrecs.tasks import layout
from nightrecs.tasks.layout import RunConfig
from nightrecs.tasks.reports import gate
from nightrecs.tasks.storage import open_root

log = logging.getLogger(__name__)

# table -> (key column, unique key?, columns finite and >= 0, rates in [0, 1])
NUMERIC = {
    "user_features": ("user_id", True, ["n_events", "n_items", "recency_days"], ()),
    "item_features": ("item_id", True, ["n_view", "n_purchase", "n_view_30d"], ("click_rate", "purchase_rate")),
}
# tables whose item columns must all be catalog items
ITEM_COLUMNS = {"item_features": ["item_id"], "exclusions": ["item_id"]}


def finite(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """±inf as null, so the not-null checks catch NaN and infinities alike."""
    return df.assign(**{c: df[c].astype("float64").replace([np.inf, -np.inf], np.nan) for c in cols})


def validate_features(cfg: RunConfig) -> dict:
    root = open_root(cfg.root)
    item_ids = set(root.read_parquet(layout.validated(cfg.date, "catalog"), columns=["item_id"])["item_id"])

    def items(frame: pd.DataFrame, col: str) -> pd.DataFrame:
        ids = frame[[col]].rename(columns={col: "item_id"})
        return ids.assign(in_catalog=ids["item_id"].isin(item_ids))

    rows = {}
    with gate(root, cfg.date, "features") as g:
        for table in {**NUMERIC, **ITEM_COLUMNS}:
            df = root.read_parquet(layout.features(cfg.date, table))
            rows[table] = len(df)
            if table in NUMERIC:
                key, unique, cols, rates = NUMERIC[table]
                g.validate(finite(df, cols + list(rates)), numeric_suite(table, cols, key, unique, rates), table)
            for col in ITEM_COLUMNS.get(table, []):
                g.validate(items(df, col), items_in_catalog_suite(f"{table}_{col}"), f"{table}.{col}")
        hist = root.read_parquet(layout.features(cfg.date, "histories"), columns=["user_id", "item_ids"])
        rows["histories"] = len(hist)
        g.validate(items(hist.explode("item_ids"), "item_ids"), items_in_catalog_suite("histories_items"),
                   "histories.items")
        enforce(g.reports, "features", max_bad_fraction=0.0)
    return {"rows": rows}
