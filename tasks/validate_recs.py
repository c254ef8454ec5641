"""Step 6: gate the candidate lists before anything is published."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from nightrecs.expectations.core import enforce
from nightrecs.expectations.recs import lengths_suite, lists_suite
from nightrecs.tasks import layout
from nightrecs.tasks.lists import candidates, exclusions, load_inputs
from nightrecs.tasks.layout import RunConfig
from nightrecs.tasks.reports import gate
from nightrecs.tasks.storage import open_root

log = logging.getLogger(__name__)


def expected_lengths(users: list[str], available: int, excluded: dict[str, set[int]], top_n: int) -> pd.DataFrame:
    """Per user: min(top_n, in-stock items the lists may show that user)."""
    n = np.array([available - len(excluded.get(u, ())) for u in users])
    return pd.DataFrame({"user_id": users, "expected": n.clip(max=top_n)})


def validate_recs(cfg: RunConfig) -> dict:
    """No duplicates, only existing in-stock items, every user a list of the right length
    (what the catalog allows after the lists' own exclusions, ``tasks/lists.py``)."""
    root = open_root(cfg.root)
    recs = root.read_parquet(layout.staging(cfg.date))
    inputs = load_inputs(root, cfg)
    catalog = inputs.catalog
    in_stock = set(catalog.loc[catalog["in_stock"], "item_id"])
    users = sorted(set(inputs.users["user_id"]) | set(recs["user_id"]))
    _, cand_of = candidates(catalog)
    excluded = exclusions(inputs, cand_of).of(users)
    lengths = expected_lengths(users, len(in_stock), excluded, cfg.top_n)
    lengths["n"] = recs.groupby("user_id").size().reindex(lengths["user_id"]).fillna(0).astype(int).to_numpy()
    with gate(root, cfg.date, "recs") as g:
        g.validate(recs.assign(in_stock_item=recs["item_id"].isin(in_stock)), lists_suite(), "recs")
        g.validate(lengths, lengths_suite(cfg.top_n), "recs_lengths")
        enforce(g.reports, "recs", max_bad_fraction=0.0)
    return {"users": len(lengths), "rows": len(recs)}
