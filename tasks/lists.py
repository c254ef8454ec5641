"""The lists, made by one function for both the lists retrieve stages (and publish writes)
and the lists evaluate scores: candidates and the learned ranker (``models/hybrid.py``),
popularity fallbacks by segment, business rules (``models/rules.py``) and a reason per item.

``make_lists(inputs.at(t), ...)`` is what a run dated ``t`` would publish, so the holdout
evaluation scores exactly the code path that serves the site. It is ``list_maker`` (what
every list shares: the fitted ranker, fallbacks, exclusions) and then ``ListMaker.lists``
per chunk of users; retrieve runs those chunks as Spark tasks when a Spark master is set.
"""

from __future__ import annotations

import itertools
import logging
import os
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import scipy.sparse as sp

from nightrecs.models.data import DISLIKE, Sequences, interactions
from nightrecs.models.hybrid import Hybrid
from nightrecs.models.progress import progress
from nightrecs.models.retrieval import build_index, index_from_bytes, index_to_bytes, top_k_excluding
from nightrecs.models.rules import Rules, pick
from nightrecs.models.seqrec import Recommender
from nightrecs.tasks import layout
from nightrecs.tasks.catalog import item_attributes, load_catalog, load_sequences
from nightrecs.tasks.layout import RunConfig
from nightrecs.tasks.storage import Root

log = logging.getLogger(__name__)
DAY = 86_400
COLUMNS = ["user_id", "rank", "item_id", "score", "source", "reason"]


@dataclass
class ListInputs:
    """What the lists of a run are made from."""

    catalog: pd.DataFrame  # load_catalog: item rows, in_stock, category, title
    user_ids: list[str]  # the rows of ``seqs``
    seqs: Sequences  # histories, dislikes included
    users: pd.DataFrame  # users table: user_id and the run's segment columns
    exclusions: pd.DataFrame  # user_id, item_id, since: bought or rated from that day on

    def at(self, when: int) -> "ListInputs":
        """The inputs as a run at unix time ``when`` would have seen them."""
        since = pd.to_datetime(self.exclusions["since"], utc=True)
        return replace(self, seqs=self.seqs.before(when),
                       exclusions=self.exclusions[since < pd.Timestamp(when, unit="s", tz="UTC")])


def load_inputs(root: Root, cfg: RunConfig) -> ListInputs:
    catalog = load_catalog(root, cfg.date)
    user_ids, seqs = load_sequences(root, cfg.date, catalog["item_id"], cfg.dislike_rating)
    users = root.read_parquet(layout.validated(cfg.date, "users"), columns=["user_id", *cfg.segment_columns])
    exclusions = root.read_parquet(layout.features(cfg.date, "exclusions"), columns=["user_id", "item_id", "since"])
    return ListInputs(catalog, user_ids, seqs, users, exclusions)


@dataclass
class Fallback:
    """A popularity ranking that fills lists: global, or one segment's (``label``)."""

    order: np.ndarray  # candidate indices, best first
    scores: np.ndarray  # scaled to [0, 1]
    label: str | None = None  # "country DE"; None = global

    def __post_init__(self) -> None:
        self.items = self.order.tolist()  # once, not per user: lists are read lazily
        self.score_of = dict(zip(self.items, self.scores.tolist()))




def chunk_users() -> int:
    """Users whose lists are made together (a Spark task's share): ``NIGHTRECS_LIST_CHUNK_USERS``."""
    return int(os.environ.get("NIGHTRECS_LIST_CHUNK_USERS", 2048))


@dataclass
class Exclusions:
    """What a user's list never shows: every item in their history (a list is for finding
    what they have not touched; histories keep each item's last touch, so no holdout can
    tell whether showing it again pays) and what they bought or rated per the
    ``exclusions`` table (which keeps bots' purchases too)."""

    seen: sp.csr_matrix  # the hybrid's ``seen``: sequence rows x catalog rows
    table_only: dict[str, set[int]]  # users without a history (a bot, say): the table's candidates
    row_of_user: dict[str, int]
    cand_of: np.ndarray

    def of(self, users: list[str]) -> dict[str, set[int]]:
        """Per user, the candidate indices their list must not show."""
        with_rows = [u for u in users if u in self.row_of_user]
        sub = self.seen[np.array([self.row_of_user[u] for u in with_rows], dtype=np.int64)]
        cands = self.cand_of[sub.indices]
        out = {}
        for u, lo, hi in zip(with_rows, sub.indptr[:-1].tolist(), sub.indptr[1:].tolist()):
            mine = cands[lo:hi]
            out[u] = set(mine[mine >= 0].tolist())
        out.update({u: self.table_only[u] for u in users if u not in self.row_of_user and u in self.table_only})
        return out


def exclusions(inp: ListInputs, cand_of: np.ndarray) -> Exclusions:
    row_of_item = pd.Index(inp.catalog["item_id"])
    excl = inp.exclusions
    item = row_of_item.get_indexer(excl["item_id"])
    user = pd.Index(inp.user_ids).get_indexer(excl["user_id"])
    known = (item >= 0) & (user >= 0)
    history = interactions(inp.seqs, len(row_of_item), positive=False)
    seen = sp.csr_matrix((np.ones(int(known.sum())), (user[known], item[known])), shape=history.shape) + history
    table_only: dict[str, set[int]] = {}
    for u, i in zip(excl["user_id"].to_numpy()[(item >= 0) & (user < 0)], item[(item >= 0) & (user < 0)]):
        if cand_of[i] >= 0:
            table_only.setdefault(u, set()).add(int(cand_of[i]))
    return Exclusions(seen.tocsr(), table_only, {u: i for i, u in enumerate(inp.user_ids)}, cand_of)


@dataclass
class ListMaker:
    """What every list of a night shares, made once by ``list_maker`` (the fitted ranker,
    the fallbacks, the exclusions, the item index); ``lists(users)`` then makes any users'
    lists independently of every other user's, so chunks of users give the same rows in
    this process or as Spark tasks (it pickles, the FAISS index included)."""

    cfg: RunConfig
    at: int
    catalog: pd.DataFrame
    seqs: Sequences
    model: Recommender
    hybrid: Hybrid
    history: sp.csr_matrix  # the hybrid's ``history``: what each sequence row touched
    cand: np.ndarray  # catalog rows a list may show
    excl: Exclusions
    new: np.ndarray  # candidate indices of new items
    fallbacks: list[Fallback]
    fallback_of: dict[str, int]
    category: np.ndarray  # per candidate, -1 = no category
    rules: Rules
    vectors: dict[str, np.ndarray] | None
    index: object  # faiss index over the model's item vectors
    everyone: list[str]  # the night's users, in list order

    def __getstate__(self) -> dict:
        return {**self.__dict__, "index": index_to_bytes(self.index)}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update({**state, "index": index_from_bytes(state["index"])})

    def chunks(self, size: int) -> list[list[str]]:
        """The night's users in chunks of ``size`` (one empty chunk when there is nobody)."""
        return [self.everyone[s:s + size] for s in range(0, len(self.everyone), size)] or [[]]

    def lists(self, users: list[str], with_reasons: bool = True) -> tuple[pd.DataFrame, int]:
        """``users``' lists (long format, ``COLUMNS``) and how many had the category cap relaxed."""
        cfg, row_of_user, cand_of = self.cfg, self.excl.row_of_user, self.excl.cand_of
        exclude = self.excl.of(users)
        warm = [u for u in users if u in row_of_user and len(self.seqs.items[row_of_user[u]])]
        rows = np.array([row_of_user[u] for u in warm], dtype=np.int64)
        user_vecs = (np.stack([self.vectors[u] for u in warm]) if self.vectors is not None and warm
                     else self.model.user_vectors(self.seqs, rows.tolist(), self.at))
        depth = cfg.top_n * (5 if cfg.max_per_category else 1)  # room for what the cap skips
        ids, scores = self.hybrid.recommend(self.seqs, rows, self.excl.seen, self.at, depth, allowed=cand_of >= 0,
                                            vectors=user_vecs, index=self.index, history=self.history)
        retrieved = {u: (cand_of[r[r >= 0]], s[r >= 0].astype(np.float32)) for u, r, s in zip(warm, ids, scores)}
        new, new_for = self.new, {}
        if self.rules.new_item_quota and len(new) and warm:
            pos = {c: k for k, c in enumerate(new)}
            n_ids, _ = top_k_excluding(build_index(self.hybrid.items[self.cand[new]]), user_vecs,
                                       self.rules.new_item_quota,
                                       [{pos[c] for c in exclude.get(u, ()) if c in pos} for u in warm])
            new_for = {u: new[r[r >= 0]] for u, r in zip(warm, n_ids)}
        global_order = self.fallbacks[0].order
        picked, relaxed = assemble_lists(users, retrieved, new_for, exclude, self.fallbacks, self.fallback_of,
                                         global_order[np.isin(global_order, new)], self.category, self.rules)
        recs = pd.DataFrame(picked, columns=["user_id", "rank", "cand", "score", "source", "segment"])
        cands = recs.pop("cand").to_numpy(dtype=np.int64)
        catalog = self.catalog
        recs.insert(2, "item_id", catalog["item_id"].to_numpy()[self.cand[cands]])
        recs["rank"] = recs["rank"].astype("int32")
        recs["score"] = recs["score"].astype("float32")
        recs["reason"] = (reasons(recs, self.cand[cands], catalog, self.seqs, row_of_user, self.hybrid.items,
                                  cfg.history_len) if with_reasons else "")
        return recs[COLUMNS], relaxed


def list_maker(inp: ListInputs, model: Recommender, cfg: RunConfig, at: int, model_until: int | None,
               users: list[str] | None = None, vectors: dict[str, np.ndarray] | None = None) -> ListMaker:
    """Everything the lists at unix time ``at`` share, for ``users`` (default: everyone in
    the users table or with a history). ``model_until``: what the model trained until, so
    the ranker never learns from its scores on windows it trained on. ``vectors``: the
    users' model vectors at ``at``, when the embed step made them."""
    catalog = inp.catalog
    cand, cand_of = candidates(catalog)
    hybrid = Hybrid(model, len(catalog), window_days=cfg.ranker_window_days, fit_windows=cfg.ranker_windows,
                    co_neighbours=cfg.co_neighbours or None, attributes=item_attributes(catalog),
                    model_until=model_until, seed=cfg.seed).fit(inp.seqs, at)
    excl = exclusions(inp, cand_of)
    everyone = sorted(set(inp.users["user_id"]) | set(inp.user_ids)) if users is None else list(users)
    first = hybrid.first_touch[cand]
    new = np.flatnonzero(~np.isfinite(first) | (first >= at - cfg.new_item_days * DAY))
    fallbacks, fallback_of = segment_fallbacks(hybrid, inp, cfg.segment_columns, cand_of, excl.row_of_user)
    n_warm = sum(1 for u in everyone if u in excl.row_of_user and len(inp.seqs.items[excl.row_of_user[u]]))
    return ListMaker(cfg, at, catalog, inp.seqs, model, hybrid, interactions(inp.seqs, len(catalog)), cand, excl,
                     new, fallbacks, fallback_of, pd.factorize(catalog["category"].to_numpy()[cand])[0],
                     Rules(cfg.top_n, cfg.max_per_category, cfg.new_item_quota), vectors,
                     build_index(hybrid.items, n_warm), everyone)


def make_lists(inp: ListInputs, model: Recommender, cfg: RunConfig, at: int, model_until: int | None,
               users: list[str] | None = None, vectors: dict[str, np.ndarray] | None = None,
               with_reasons: bool = True) -> pd.DataFrame:
    """Top-``cfg.top_n`` lists at unix time ``at`` (long format, ``COLUMNS``), in this
    process, chunk by chunk (arguments as for ``list_maker``)."""
    maker = list_maker(inp, model, cfg, at, model_until, users, vectors)
    parts, relaxed = [], 0
    for chunk in progress(maker.chunks(chunk_users()), desc="lists", unit="chunk"):
        recs, n = maker.lists(chunk, with_reasons)
        parts.append(recs)
        relaxed += n
    recs = pd.concat(parts, ignore_index=True)
    log.info("lists at %s for %d users, %d rows by source %s; category cap relaxed in %d",
             pd.Timestamp(at, unit="s").date(), len(maker.everyone), len(recs),
             recs["source"].value_counts().to_dict(), relaxed)
    return recs


def candidates(catalog: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(catalog rows a list may show: in stock, each row's candidate index or -1)."""
    cand = np.flatnonzero(catalog["in_stock"].to_numpy())  # rule: never out of stock
    cand_of = np.full(len(catalog), -1)
    cand_of[cand] = np.arange(len(cand))
    return cand, cand_of


def segment_fallbacks(hybrid: Hybrid, inp: ListInputs, columns: tuple[str, ...], cand_of: np.ndarray,
                      row_of_user: dict[str, int]) -> tuple[list[Fallback], dict[str, int]]:
    """The global popularity fallback first, then one per (segment column, value) whose
    users touched something in the fallback's window; for each user the first of
    ``columns`` whose value has one."""

    def fallback(order: np.ndarray, scores: np.ndarray, label: str | None = None) -> Fallback:
        keep = (cand_of[order] >= 0) & ((scores > 0) if label else True)  # a segment: what it touched
        return Fallback(cand_of[order[keep]], scores[keep], label)

    fallbacks = [fallback(*hybrid.fallback_order())]
    fallback_of: dict[str, int] = {}
    for column in reversed(columns):  # the first column with a ranking wins
        values = inp.users[column].astype("string")
        for value, grp in inp.users.groupby(values, sort=True):
            members = np.array([row_of_user[u] for u in grp["user_id"] if u in row_of_user], dtype=np.int64)
            order, scores = hybrid.fallback_order(among=members)
            if not len(members) or scores.max(initial=0) <= 0:
                continue
            fallbacks.append(fallback(order, scores, f"{column} {value}"))
            fallback_of.update(dict.fromkeys(grp["user_id"], len(fallbacks) - 1))
    return fallbacks, fallback_of


def assemble_lists(users: list[str], retrieved: dict[str, tuple[np.ndarray, np.ndarray]],
                   new_for: dict[str, np.ndarray], exclude: dict[str, set[int]],
                   fallbacks: list[Fallback], fallback_of: dict[str, int], new_order: np.ndarray,
                   category: np.ndarray, rules: Rules) -> tuple[list[tuple], int]:
    """Each user's list under the business rules: ranked items first, then what is
    popular in the user's segment (``fallbacks[fallback_of[user]]``), then global
    popularity (``fallbacks[0]``), for what the ranker cannot fill, which for a user
    without history is the whole list; exploration slots from the user's own new items,
    then the most popular new ones. Scores never rise down a list: a popular fill or an
    exploration item scores at most the item above it. Rows: (user, rank, candidate,
    score, source, segment label); also the number of lists whose category cap was relaxed."""
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


def reason(source: str, category: str | None, detail: str | None) -> str:
    """A short, human reason for one listed item; ``detail``: the title a ranked item is
    similar to, or the segment a segment-popular item is popular with."""
    where = f" in {category}" if isinstance(category, str) and category else ""  # not None/NaN
    if source == "retrieval":
        return f"similar to {detail}" if detail else "picked for you"
    if source == "new":
        return f"new{where}" if where else "new arrival"
    if source == "segment" and detail:
        return f"popular with {detail}"
    return f"popular{where}" if where else "popular now"


def reasons(recs: pd.DataFrame, rows: np.ndarray, catalog: pd.DataFrame, seqs: Sequences,
            row_of_user: dict[str, int], item_vecs: np.ndarray, history_len: int) -> list[str]:
    """A reason per list row (``rows``: its catalog rows): a ranked item names the most
    similar (by the item vectors) of the user's ``history_len`` latest wanted items, a
    segment-popular item its segment, popular and new items their category."""
    titles, categories = catalog["title"].tolist(), catalog["category"].tolist()
    source, segment = recs["source"].to_numpy(), recs["segment"].to_numpy()
    out = [""] * len(recs)
    for user, at in recs.groupby("user_id", sort=False).indices.items():
        similar: dict[int, str | None] = {}
        ranked = at[source[at] == "retrieval"]
        if len(ranked) and user in row_of_user:
            u = row_of_user[user]
            mine = seqs.items[u][seqs.types[u] != DISLIKE][-history_len:]
            if len(mine):
                best = (item_vecs[rows[ranked]] @ item_vecs[mine].T).argmax(axis=1)
                similar = {r: titles[mine[b]] for r, b in zip(ranked.tolist(), best.tolist())}
        for r in at.tolist():
            out[r] = reason(source[r], categories[rows[r]], similar.get(r, segment[r]))
    return out
