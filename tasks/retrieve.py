"""Step 5: candidates from FAISS, popularity fallback and exploration, business rules and
a reason per item, top-N per user."""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.hybrid import Hybrid
from models.retrieval import build_index, top_k_excluding
from models.rules import Rules, pick
from tasks import layout
from tasks.catalog import item_attributes, load_catalog, load_sequences, read_vectors, unix_seconds
from tasks.layout import RunConfig
from tasks.storage import Root, open_root
from tasks.train import load_model

log = logging.getLogger(__name__)


def popularity_ranking(popularity: pd.DataFrame, candidates: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Candidate row positions best first, with scores scaled to [0, 1]; ties by item id."""
    pop = popularity.set_index("item_id")["score"].reindex(candidates.to_numpy()).fillna(0.0).to_numpy()
    order = np.lexsort((candidates.to_numpy(), -pop))
    top = pop.max() if len(pop) and pop.max() > 0 else 1.0
    return order, (pop[order] / top).astype(np.float32)


def new_items(cand: pd.DataFrame, item_features: pd.DataFrame, date: str, days: int) -> np.ndarray:
    """Per candidate: new, i.e. nobody touched it yet or it was first seen in the last
    ``days`` days before the run date."""
    first = item_features.set_index("item_id")["first_seen"].reindex(cand["item_id"].to_numpy())
    since = pd.Timestamp(date, tz="UTC") - pd.Timedelta(days=days)
    first = pd.to_datetime(first, utc=True)
    return (first.isna() | (first >= since)).to_numpy()


def reason(source: str, category: str | None, detail: str | None) -> str:
    """A short, human reason for one listed item; ``detail``: the title a retrieved item
    is similar to, or the segment a segment-popular item is popular with."""
    where = f" in {category}" if isinstance(category, str) and category else ""  # not None/NaN
    if source == "retrieval":
        return f"similar to {detail}" if detail else "picked for you"
    if source == "new":
        return f"new{where}" if where else "new arrival"
    if source == "segment" and detail:
        return f"popular with {detail}"
    return f"popular{where}" if where else "popular now"


@dataclass
class Fallback:
    """A popularity ranking that fills lists: global, or one segment's (``label``)."""

    order: np.ndarray  # candidate indices, best first
    scores: np.ndarray  # scaled to [0, 1]
    label: str | None = None  # "country DE"; None = global

    def __post_init__(self) -> None:
        self.items = self.order.tolist()  # once, not per user: lists are read lazily
        self.score_of = dict(zip(self.items, self.scores.tolist()))


def assemble_lists(users: list[str], retrieved: dict[str, tuple[np.ndarray, np.ndarray]],
                   new_for: dict[str, np.ndarray], exclude: dict[str, set[int]],
                   fallbacks: list[Fallback], fallback_of: dict[str, int], new_order: np.ndarray,
                   category: np.ndarray, rules: Rules) -> tuple[list[tuple], int]:
    """Each user's list under the business rules: retrieved items first, then what is
    popular in the user's segment (``fallbacks[fallback_of[user]]``), then global
    popularity (``fallbacks[0]``), for what retrieval cannot fill, which for a user without
    history is the whole list; exploration slots from the user's own new items, then the
    most popular new ones. Scores never rise down a list: a popular fill or an exploration
    item scores at most the item above it. Rows: (user, rank, candidate, score, source,
    segment label); also the number of lists whose category cap was relaxed."""
    top, explore_order = fallbacks[0], new_order.tolist()
    rows, relaxed = [], 0
    for user in users:
        r_ids, r_scores = retrieved.get(user, (np.empty(0, np.int64), np.empty(0, np.float32)))
        got = dict(zip(r_ids.tolist(), r_scores.tolist()))
        seg = fallbacks[fallback_of[user]] if user in fallback_of else None
        ranked = itertools.chain(r_ids.tolist(), seg.items if seg else (), top.items)
        new_ranked = itertools.chain(new_for.get(user, np.empty(0, np.int64)).tolist(), explore_order)
        items, explored, was_relaxed = pick(ranked, new_ranked, category, exclude.get(user, set()), rules)
        relaxed += was_relaxed
        floor = 1.0 if not got else max(got.values())
        for rank, c in enumerate(items, 1):
            if c in explored:
                source, score = "new", floor
            elif c in got:
                source, score = "retrieval", got[c]
            elif seg and c in seg.score_of:
                source, score = "segment", seg.score_of[c]
            else:
                source, score = "popular", top.score_of.get(c, 0.0)
            floor = min(floor, score)
            rows.append((user, rank, c, floor, source, seg.label if source == "segment" else None))
    return rows, relaxed


def segment_fallbacks(segments: pd.DataFrame, users: pd.DataFrame, columns: tuple[str, ...],
                      cand_index: dict[str, int]) -> tuple[list[Fallback], dict[str, int]]:
    """One :class:`Fallback` per (segment column, value) of the ``segment_popularity``
    table, and for each user the first of ``columns`` whose value has one."""
    fallbacks, key = [], {}
    for (column, value), grp in segments.groupby(["segment", "value"], sort=True):
        grp = grp[grp["item_id"].isin(cand_index)].sort_values("rank")
        if len(grp):
            key[(column, value)] = len(fallbacks)
            fallbacks.append(Fallback(grp["item_id"].map(cand_index).to_numpy(),
                                      (grp["score"] / grp["score"].max()).to_numpy(), f"{column} {value}"))
    fallback_of: dict[str, int] = {}
    for column in reversed(columns):  # the first column with a ranking wins
        for user, value in zip(users["user_id"], users[column]):
            if (column, value) in key:
                fallback_of[user] = key[(column, value)]
    return fallbacks, fallback_of


def retrieve(cfg: RunConfig) -> dict:
    """Writes the lists (long format, with a reason per item) to ``staging/<date>/recs.parquet``."""
    root = open_root(cfg.root)
    catalog = load_catalog(root, cfg.date)
    cand = catalog[catalog["in_stock"]].reset_index(drop=True)  # rule: never out of stock
    cand_index = {item: i for i, item in enumerate(cand["item_id"])}
    item_ids, item_vecs = read_vectors(root, layout.embeddings(cfg.date, "items.parquet"), "item_id")
    row_of = {item: i for i, item in enumerate(item_ids)}
    vecs = item_vecs[[row_of[i] for i in cand["item_id"]]]
    user_ids, user_vecs = read_vectors(root, layout.embeddings(cfg.date, "users.parquet"), "user_id")
    rules = Rules(cfg.top_n, cfg.max_per_category, cfg.new_item_quota)

    excl = root.read_parquet(layout.features(cfg.date, "exclusions"))  # rule: bought or rated
    exclude: dict[str, set[int]] = {}
    for user, item in excl.itertuples(index=False):
        if item in cand_index:
            exclude.setdefault(user, set()).add(cand_index[item])
    user_excl = [exclude.get(u, set()) for u in user_ids]

    depth = cfg.top_n * (5 if cfg.max_per_category else 1)  # room for what the cap skips
    retrieved = ranked(root, cfg, catalog, cand_index, excl, depth, dict(zip(user_ids, user_vecs)))
    features = root.read_parquet(layout.features(cfg.date, "item_features"), columns=["item_id", "first_seen"])
    new = np.flatnonzero(new_items(cand, features, cfg.date, cfg.new_item_days))
    new_for: dict[str, np.ndarray] = {}
    if rules.new_item_quota and len(new):
        pos = {c: k for k, c in enumerate(new)}
        n_ids, _ = top_k_excluding(build_index(vecs[new]), user_vecs, rules.new_item_quota,
                                   [{pos[c] for c in e if c in pos} for e in user_excl])
        new_for = {u: new[r[r >= 0]] for u, r in zip(user_ids, n_ids)}

    users_table = root.read_parquet(layout.validated(cfg.date, "users"), columns=["user_id", *cfg.segment_columns])
    users = sorted(set(users_table["user_id"]) | set(user_ids))
    popularity = root.read_parquet(layout.features(cfg.date, "item_popularity"))
    pop_order, pop_scores = popularity_ranking(popularity, cand["item_id"])
    fallbacks, fallback_of = [Fallback(pop_order, pop_scores)], {}
    if cfg.segment_columns:
        segs, of = segment_fallbacks(root.read_parquet(layout.features(cfg.date, "segment_popularity")),
                                     users_table, cfg.segment_columns, cand_index)
        fallbacks += segs
        fallback_of = {u: k + 1 for u, k in of.items()}
    category = pd.factorize(cand["category"])[0]  # -1 = no category
    rows, relaxed = assemble_lists(users, retrieved, new_for, exclude, fallbacks, fallback_of,
                                   pop_order[np.isin(pop_order, new)], category, rules)
    recs = pd.DataFrame(rows, columns=["user_id", "rank", "cand", "score", "source", "segment"])
    cands = recs.pop("cand").to_numpy()
    recs.insert(2, "item_id", cand["item_id"].to_numpy()[cands])
    recs["rank"] = recs["rank"].astype("int32")
    recs["score"] = recs["score"].astype("float32")
    histories = root.read_parquet(layout.features(cfg.date, "histories"), columns=["user_id", "item_ids"])
    recs["reason"] = reasons(recs, cands, cand["category"].tolist(), histories,
                             dict(zip(catalog["item_id"], catalog["title"])), item_vecs, row_of, vecs,
                             cfg.history_len)
    recs = recs.drop(columns="segment")
    root.write_parquet(layout.staging(cfg.date), recs)
    by_source = recs["source"].value_counts().to_dict()
    cold = len(users) - len(retrieved)
    log.info("lists for %d users (%d with no history), %d rows by source %s; category cap relaxed "
             "in %d lists", len(users), cold, len(recs), by_source, relaxed)
    return {"staging": root.full(layout.staging(cfg.date)), "users": len(users),
            "cold_users": cold, "rows": len(recs), "by_source": by_source, "cap_relaxed": relaxed}


def ranked(root: Root, cfg: RunConfig, catalog: pd.DataFrame, cand_index: dict[str, int], excl: pd.DataFrame,
           depth: int, vector_of: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per user with a history: in-stock candidate indices and scores, best first, from
    the hybrid ranker (model, co-occurrence and popularity candidates, ranker learned on
    the last weeks); bought or rated items excluded. ``vector_of``: the embed step's user
    vectors, so they are not computed again."""
    at = unix_seconds(cfg.date)
    user_ids, seqs = load_sequences(root, cfg.date, catalog["item_id"])
    hybrid = Hybrid(load_model(root, cfg, catalog), len(catalog), attributes=item_attributes(catalog),
                    seed=cfg.seed).fit(seqs, at)
    row_of_user = {u: i for i, u in enumerate(user_ids)}
    row_of_item = {item: i for i, item in enumerate(catalog["item_id"])}
    pairs = [(row_of_user[u], row_of_item[i]) for u, i in excl.itertuples(index=False)
             if u in row_of_user and i in row_of_item]
    seen = sp.csr_matrix((np.ones(len(pairs)), ([p[0] for p in pairs], [p[1] for p in pairs])),
                         shape=(len(user_ids), len(catalog)))
    users = np.flatnonzero([len(a) for a in seqs.items])
    cand_of = np.array([cand_index.get(i, -1) for i in catalog["item_id"]])  # -1: out of stock
    vectors = np.stack([vector_of[user_ids[u]] for u in users]) if len(users) else None
    ids, scores = hybrid.recommend(seqs, users, seen, at, depth, allowed=cand_of >= 0, vectors=vectors)
    return {user_ids[u]: (cand_of[r[r >= 0]], s[r >= 0].astype(np.float32)) for u, r, s in zip(users, ids, scores)}


def reasons(recs: pd.DataFrame, cands: np.ndarray, categories: list[str | None], histories: pd.DataFrame,
            titles: dict[str, str], item_vecs: np.ndarray, row_of: dict[str, int], vecs: np.ndarray,
            history_len: int) -> list[str]:
    """A reason per row: a retrieved item names the most similar of the user's
    ``history_len`` most recent items (by the item vectors), a segment-popular item its
    segment (the ``segment`` column), popular and new items their category."""
    recent = {u: [row_of[i] for i in ids[-history_len:] if i in row_of]
              for u, ids in zip(histories["user_id"], histories["item_ids"])}
    item_of = list(row_of)
    source, segment = recs["source"].to_numpy(), recs["segment"].to_numpy()
    out = [""] * len(recs)
    for user, rows in recs.groupby("user_id", sort=False).indices.items():
        mine = recent.get(user, [])
        similar: dict[int, str | None] = {}
        retrieved = rows[source[rows] == "retrieval"]
        if mine and len(retrieved):
            best = (vecs[cands[retrieved]] @ item_vecs[mine].T).argmax(axis=1)
            similar = {r: titles.get(item_of[mine[b]]) for r, b in zip(retrieved.tolist(), best.tolist())}
        for r in rows.tolist():
            out[r] = reason(source[r], categories[cands[r]], similar.get(r, segment[r]))
    return out
