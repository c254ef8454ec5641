"""Step 5: the lists (``tasks/lists.py``) as of the run date, staged for the final gate."""

from __future__ import annotations

import logging

from nightrecs.tasks import layout
from nightrecs.tasks.artifacts import load_model, trained_until
from nightrecs.tasks.catalog import read_vectors, unix_seconds
from nightrecs.tasks.layout import RunConfig
from nightrecs.tasks.lists import load_inputs, make_lists
from nightrecs.tasks.storage import open_root

log = logging.getLogger(__name__)

ANONYMOUS = "\x00anonymous"  # a user id no shop has: the fallback list's, never published as a user


def retrieve(cfg: RunConfig) -> dict:
    """Writes the lists (long format, with a reason per item) to ``staging/<date>/recs.parquet``
    and the list for users the run does not know to ``staging/<date>/fallback.parquet``.
    The embed step's user vectors are reused, not computed again."""
    root = open_root(cfg.root)
    inputs = load_inputs(root, cfg)
    model, meta = load_model(root, layout.model_dir(cfg.date), cfg, inputs.catalog)
    user_ids, user_vecs = read_vectors(root, layout.embeddings(cfg.date, "users.parquet"), "user_id")
    recs = make_lists(inputs, model, cfg, unix_seconds(cfg.date), trained_until(meta),
                      vectors=dict(zip(user_ids, user_vecs)), anonymous=ANONYMOUS)
    anonymous = recs["user_id"] == ANONYMOUS
    root.write_parquet(layout.staging_fallback(cfg.date), recs[anonymous].drop(columns="user_id"))
    recs = recs[~anonymous].reset_index(drop=True)
    root.write_parquet(layout.staging(cfg.date), recs)
    by_source = recs["source"].value_counts().to_dict()
    users = recs["user_id"].nunique()
    return {"staging": root.full(layout.staging(cfg.date)), "users": users,
            "cold_users": users - len(set(user_ids) & set(recs["user_id"])), "rows": len(recs),
            "by_source": by_source}
