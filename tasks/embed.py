"""Step 4: embed the whole catalog (item tower) and every user with a history (user tower)."""

from __future__ import annotations

import json
import logging

from models.two_tower import TrainConfig, encode, user_text
from tasks import layout
from tasks.catalog import load_catalog, load_histories, write_vectors
from tasks.layout import RunConfig
from tasks.storage import open_root
from tasks.train import load_model, model_meta

log = logging.getLogger(__name__)


def embed_catalog(cfg: RunConfig) -> dict:
    """Vectors under ``embeddings/<date>/`` tagged with the model version that made them."""
    root = open_root(cfg.root)
    catalog = load_catalog(root, cfg.date)
    tower = load_model(root, cfg.date)
    version = model_meta(root, cfg.date)["version"]
    tokens = TrainConfig()
    items = encode(tower, catalog["text"].tolist(), tokens.max_item_tokens, desc="embed items")
    index = {item: i for i, item in enumerate(catalog["item_id"])}
    hist = load_histories(root, cfg.date, index)
    hist = hist[hist["items"].map(len) > 0]
    titles = catalog["title"].tolist()
    texts = [user_text([titles[i] for i in h], cfg.history_len) for h in hist["items"]]
    users = encode(tower, texts, tokens.max_user_tokens, desc="embed users")
    write_vectors(root, layout.embeddings(cfg.date, "items.parquet"), "item_id",
                  catalog["item_id"].tolist(), items)
    write_vectors(root, layout.embeddings(cfg.date, "users.parquet"), "user_id",
                  hist["user_id"].tolist(), users)
    meta = {"model_version": version, "dim": int(items.shape[1]),
            "items": len(items), "users": len(users)}
    root.write_text(layout.embeddings(cfg.date, "meta.json"), json.dumps(meta, indent=2))
    log.info("embedded %d items and %d users with model %s", len(items), len(users), version)
    return {"embeddings": root.full(layout.embeddings(cfg.date)), **meta}
