"""Reading the shared inputs of the model steps: catalog text, vectors, histories."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from models.two_tower import item_text
from tasks import layout
from tasks.storage import Root


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


def load_histories(root: Root, date: str, item_index: dict[str, int]) -> pd.DataFrame:
    """Per-user histories as lists of catalog row indices, oldest first."""
    h = root.read_parquet(layout.features(date, "histories"), columns=["user_id", "item_ids"])
    h["items"] = [[item_index[i] for i in ids if i in item_index] for ids in h["item_ids"]]
    return h[["user_id", "items"]]


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
