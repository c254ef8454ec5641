"""Step 5: candidates from FAISS, business rules, popularity fallback, top-N per user."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from models.retrieval import build_index, top_k_excluding
from tasks import layout
from tasks.catalog import load_catalog, read_vectors
from tasks.layout import RunConfig
from tasks.storage import open_root

log = logging.getLogger(__name__)


def popularity_ranking(popularity: pd.DataFrame, candidates: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Candidate row positions best first, with scores scaled to [0, 1]; ties by item id."""
    pop = popularity.set_index("item_id")["score"].reindex(candidates.to_numpy()).fillna(0.0).to_numpy()
    order = np.lexsort((candidates.to_numpy(), -pop))
    top = pop.max() if len(pop) and pop.max() > 0 else 1.0
    return order, (pop[order] / top).astype(np.float32)


def fill_lists(users: list[str], retrieved: dict[str, list[tuple[int, float, str]]],
               exclude: dict[str, set[int]], pop_order: np.ndarray, pop_scores: np.ndarray,
               top_n: int) -> list[tuple[str, int, int, float, str]]:
    """Each user's retrieved items, topped up from popularity (never an excluded or repeated
    item) until ``top_n`` or the catalog runs out. Rows: (user, rank, candidate, score, source)."""
    rows = []
    for user in users:
        picked = retrieved.get(user, [])[:top_n]
        taken = {c for c, _, _ in picked} | exclude.get(user, set())
        if len(picked) < top_n:
            floor = min((s for _, s, _ in picked), default=1.0)
            for c, s in zip(pop_order, pop_scores):
                if c not in taken:
                    # below every retrieved score, so the list stays sorted best first
                    picked.append((int(c), float(min(s, floor)), "popular"))
                    taken.add(c)
                    if len(picked) == top_n:
                        break
        rows.extend((user, rank, c, s, src) for rank, (c, s, src) in enumerate(picked, 1))
    return rows


def retrieve(cfg: RunConfig) -> dict:
    """Writes the candidate lists (long format) to ``staging/<date>/recs.parquet``."""
    root = open_root(cfg.root)
    catalog = load_catalog(root, cfg.date)
    cand = catalog[catalog["in_stock"]].reset_index(drop=True)  # rule: never out of stock
    cand_index = {item: i for i, item in enumerate(cand["item_id"])}
    item_ids, item_vecs = read_vectors(root, layout.embeddings(cfg.date, "items.parquet"), "item_id")
    row_of = {item: i for i, item in enumerate(item_ids)}
    vecs = item_vecs[[row_of[i] for i in cand["item_id"]]]
    user_ids, user_vecs = read_vectors(root, layout.embeddings(cfg.date, "users.parquet"), "user_id")

    excl = root.read_parquet(layout.features(cfg.date, "exclusions"))  # rule: bought or rated
    exclude: dict[str, set[int]] = {}
    for user, item in excl.itertuples(index=False):
        if item in cand_index:
            exclude.setdefault(user, set()).add(cand_index[item])

    index = build_index(vecs)
    ids, scores = top_k_excluding(index, user_vecs, cfg.top_n,
                                  [exclude.get(u, set()) for u in user_ids])
    retrieved = {u: [(int(i), float(s), "retrieval") for i, s in zip(r_ids, r_sc) if i >= 0]
                 for u, r_ids, r_sc in zip(user_ids, ids, scores)}

    all_users = root.read_parquet(layout.validated(cfg.date, "users"), columns=["user_id"])["user_id"]
    users = sorted(set(all_users) | set(user_ids))
    popularity = root.read_parquet(layout.features(cfg.date, "item_popularity"))
    pop_order, pop_scores = popularity_ranking(popularity, cand["item_id"])
    rows = fill_lists(users, retrieved, exclude, pop_order, pop_scores, cfg.top_n)
    recs = pd.DataFrame(rows, columns=["user_id", "rank", "cand", "score", "source"])
    recs.insert(2, "item_id", cand["item_id"].to_numpy()[recs.pop("cand").to_numpy()])
    recs["rank"] = recs["rank"].astype("int32")
    recs["score"] = recs["score"].astype("float32")
    root.write_parquet(layout.staging(cfg.date), recs)
    by_source = recs["source"].value_counts().to_dict()
    cold = len(users) - len(retrieved)
    log.info("lists for %d users (%d with no history), %d rows by source %s",
             len(users), cold, len(recs), by_source)
    return {"staging": root.full(layout.staging(cfg.date)), "users": len(users),
            "cold_users": cold, "rows": len(recs), "by_source": by_source}
