"""Reading the shared inputs of the model steps: catalog text, vectors, histories."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from nightrecs.models.hybrid import ItemAttributes
from nightrecs.contract import EVENT_TYPES
from nightrecs.models.data import DISLIKE, Sequences
from nightrecs.models.text import TextTower, encode, item_text
from nightrecs.tasks import layout
from nightrecs.tasks.storage import Root

log = logging.getLogger(__name__)

TEXT_TOKENS = 64  # item text is cut here; the description, last, goes first


def load_catalog(root: Root, date: str) -> pd.DataFrame:
    """The gate-passed catalog with ``price_band`` and ``text`` (the item tower's input);
    ``in_stock`` null = true."""
    cat = root.read_parquet(layout.validated(date, "catalog")).sort_values("item_id", ignore_index=True)
    cat["in_stock"] = cat["in_stock"].fillna(True).astype(bool)
    cat["price_band"] = price_bands(cat["price"])
    cat["text"] = [item_text(*r) for r in
                   cat[["title", "category", "brand", "description", "price_band"]].itertuples(index=False)]
    return cat


def price_bands(price: pd.Series) -> pd.Series:
    """low / mid / high by the catalog's price terciles (the bands of the users' price
    affinity); None without a price."""
    known = price.dropna()
    if known.empty:
        return pd.Series([None] * len(price), index=price.index, dtype=object)
    low, high = known.quantile([1 / 3, 2 / 3])
    band = np.where(price <= low, "low", np.where(price <= high, "mid", "high"))
    return pd.Series(band, index=price.index, dtype=object).where(price.notna(), None)


def item_attributes(catalog: pd.DataFrame) -> ItemAttributes:
    """The ranker's catalog features, by catalog row: category codes and log prices."""
    price = pd.to_numeric(catalog["price"], errors="coerce").to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_price = np.where(price > 0, np.log(price), np.nan)
    return ItemAttributes(category=pd.factorize(catalog["category"])[0], log_price=log_price)


def unix_seconds(date: str) -> int:
    """Midnight UTC of a run date: the moment its lists are for."""
    return int(pd.Timestamp(date, tz="UTC").timestamp())


def load_sequences(root: Root, date: str, item_ids: pd.Series,
                   dislike_rating: float = 0.0) -> tuple[list[str], Sequences]:
    """The ``histories`` feature table as model input: per user (in the returned order) the
    catalog rows of their items, oldest first, each with its strongest event type (a
    rating at or below ``dislike_rating`` becomes a dislike) and its last time. Items no
    longer in the catalog are left out."""
    t = root.read_arrow(layout.features(date, "histories"), columns=["user_id", "item_ids", "event_types", "ratings", "ts"])
    users = t.column("user_id").to_pylist()
    lists = {c: t.column(c).combine_chunks() for c in ("item_ids", "event_types", "ratings", "ts")}
    lengths = pc.list_value_length(lists["item_ids"]).fill_null(0).to_numpy()
    user = np.repeat(np.arange(len(users)), lengths)
    item = pd.Index(item_ids).get_indexer(lists["item_ids"].flatten().to_numpy(zero_copy_only=False))
    ts = pc.cast(lists["ts"].flatten(), pa.timestamp("s"), safe=False).cast(pa.int64()).to_numpy()  # floor to s
    names = lists["event_types"].flatten().to_numpy(zero_copy_only=False)
    etype = pd.Index(EVENT_TYPES).get_indexer(names) + 1
    if (etype == 0).any():
        raise ValueError(f"{root.full(layout.features(date, 'histories'))}: column event_types: types outside "
                         f"the contract: {sorted(set(names[etype == 0].tolist()))[:5]}")
    rating = lists["ratings"].flatten().to_numpy(zero_copy_only=False).astype(float)  # NaN: not rated
    etype[(names == "rating") & (rating <= dislike_rating)] = DISLIKE
    keep = item >= 0
    return users, Sequences.from_events(user[keep], item[keep], etype[keep], ts[keep], len(users))


def model_fingerprint(model_dir: str | Path) -> str:
    """A digest of a text model's config and weights: cached vectors are only reused for the same model."""
    h = hashlib.sha256()
    for name in ("config.json", "model.safetensors"):
        h.update((Path(model_dir) / name).read_bytes())
    return h.hexdigest()[:16]


def text_vectors(root: Root, texts: list[str], model_dir: str | Path) -> tuple[np.ndarray, str]:
    """The frozen text encoder's vector of every text, and the model's fingerprint. Vectors
    are cached per (model, text) under ``cache/text_vectors/``: a night embeds only new or
    changed item texts. The cache keeps the texts of the latest catalog only."""
    fingerprint = model_fingerprint(model_dir)
    key = layout.text_cache(fingerprint)
    shas = [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]
    cached: dict[str, np.ndarray] = {}
    if root.exists(key):
        cached = dict(zip(*read_vectors(root, key, "text_sha")))
    missing = list({s: i for i, s in enumerate(shas) if s not in cached}.values())  # each text once
    log.info("text vectors: %d of %d texts cached, embedding %d", len(texts) - len(missing), len(texts), len(missing))
    if missing:
        new = encode(TextTower(model_dir), [texts[i] for i in missing], TEXT_TOKENS, desc="embed item texts")
        cached.update({shas[i]: v for i, v in zip(missing, new)})
    out = np.stack([cached[s] for s in shas])
    if missing:
        distinct = list(dict.fromkeys(shas))
        write_vectors(root, key, "text_sha", distinct, np.stack([cached[s] for s in distinct]))
    return out.astype(np.float32), fingerprint


def write_vectors(root: Root, key: str, id_col: str, ids: list[str], vectors: np.ndarray) -> None:
    dim = vectors.shape[1]
    flat = pa.array(vectors.astype(np.float32).ravel(), type=pa.float32())
    table = pa.table({id_col: pa.array(ids, pa.string()),
                      "vector": pa.FixedSizeListArray.from_arrays(flat, dim)})
    root.write_parquet(key, table)


def read_vectors(root: Root, key: str, id_col: str) -> tuple[list[str], np.ndarray]:
    t = root.read_arrow(key)
    col = t.column("vector").combine_chunks()
    dim = col.type.list_size
    return t.column(id_col).to_pylist(), col.flatten().to_numpy().reshape(-1, dim)
