"""Step 6: gate the candidate lists before anything is published."""

from __future__ import annotations

import logging

import pandas as pd

from nightrecs.expectations.core import enforce
from nightrecs.expectations.recs import lengths_suite, lists_suite
from nightrecs.tasks import layout
from nightrecs.tasks.catalog import load_catalog
from nightrecs.tasks.layout import RunConfig
from nightrecs.tasks.reports import gate
from nightrecs.tasks.storage import open_root

log = logging.getLogger(__name__)


def expected_lengths(users: pd.Series, in_stock: set[str], exclusions: pd.DataFrame,
                     top_n: int) -> pd.DataFrame:
    """Per user: min(top_n, in-stock items not excluded for that user)."""
    excluded = (exclusions[exclusions["item_id"].isin(in_stock)]
                .groupby("user_id")["item_id"].nunique())
    available = len(in_stock) - excluded.reindex(users).fillna(0).astype(int).to_numpy()
    return pd.DataFrame({"user_id": users.to_numpy(), "expected": available.clip(max=top_n)})


def validate_recs(cfg: RunConfig) -> dict:
    """No duplicates, only existing in-stock items, every user a list of the right length."""
    root = open_root(cfg.root)
    recs = root.read_parquet(layout.staging(cfg.date))
    catalog = load_catalog(root, cfg.date)
    in_stock = set(catalog.loc[catalog["in_stock"], "item_id"])
    users = root.read_parquet(layout.validated(cfg.date, "users"), columns=["user_id"])["user_id"]
    users = pd.Series(sorted(set(users) | set(recs["user_id"])))
    exclusions = root.read_parquet(layout.features(cfg.date, "exclusions"))
    lengths = expected_lengths(users, in_stock, exclusions, cfg.top_n)
    lengths["n"] = recs.groupby("user_id").size().reindex(lengths["user_id"]).fillna(0).astype(int).to_numpy()
    with gate(root, cfg.date, "recs") as g:
        g.validate(recs.assign(in_stock_item=recs["item_id"].isin(in_stock)), lists_suite(), "recs")
        g.validate(lengths, lengths_suite(cfg.top_n), "recs_lengths")
        enforce(g.reports, "recs", max_bad_fraction=0.0)
    return {"users": len(lengths), "rows": len(recs)}
