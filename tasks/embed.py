"""Step 4: embed the whole catalog (item tower) and every user with a history (user tower)."""

from __future__ import annotations

import json
import logging

import numpy as np

from nightrecs.tasks import layout
from nightrecs.tasks.catalog import load_catalog, load_sequences, unix_seconds, write_vectors
from nightrecs.tasks.layout import RunConfig
from nightrecs.tasks.storage import open_root
from nightrecs.tasks.artifacts import load_model

log = logging.getLogger(__name__)


def embed_catalog(cfg: RunConfig) -> dict:
    """Vectors under ``embeddings/<date>/`` tagged with the model version that made them.
    A user's vector is their state after their whole history, at midnight of the run date."""
    root = open_root(cfg.root)
    catalog = load_catalog(root, cfg.date)
    rec, meta = load_model(root, layout.model_dir(cfg.date), cfg, catalog)
    version = meta["version"]
    items = rec.item_vectors()
    user_ids, seqs = load_sequences(root, cfg.date, catalog["item_id"], cfg.dislike_rating)
    with_history = [u for u, s in enumerate(seqs.items) if len(s)]
    users = rec.user_vectors(seqs, with_history, unix_seconds(cfg.date))
    if not np.isfinite(users).all() or not np.isfinite(items).all():
        raise ValueError(f"model {version} produced non-finite vectors; nothing written")
    write_vectors(root, layout.embeddings(cfg.date, "items.parquet"), "item_id",
                  catalog["item_id"].tolist(), items)
    write_vectors(root, layout.embeddings(cfg.date, "users.parquet"), "user_id",
                  [user_ids[u] for u in with_history], users)
    meta = {"model_version": version, "dim": int(items.shape[1]), "items": len(items), "users": len(users)}
    root.write_text(layout.embeddings(cfg.date, "meta.json"), json.dumps(meta, indent=2))
    log.info("embedded %d items and %d users with model %s", len(items), len(users), version)
    return {"embeddings": root.full(layout.embeddings(cfg.date)), **meta}
