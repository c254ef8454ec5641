"""The lists, made by one function for both the lists retrieve stages (and publish writes)
and the lists evaluate scores: candidates and the learned ranker (``models/hybrid.py``),
popularity fallbacks by segment, business rules (``models/rules.py``) and a reason per item.

``make_lists(inputs.at(t), ...)`` is what a run dated ``t`` would publish, so the holdout
evaluation scores exactly the code path that serves the site.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import scipy.sparse as sp

from nightrecs.models.data import DISLIKE, Sequences, interactions
from nightrecs.models.hybrid import Hybrid
from nightrecs.models.retrieval import build_index, top_k_excluding
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


def make_lists(inp: ListInputs, model: Recommender, cfg: RunConfig, at: int, model_until: int | None,
               users: list[str] | None = None, vectors: dict[str, np.ndarray] | None = None,
               with_reasons: bool = True, anonymous: str | None = None) -> pd.DataFrame:
    """Top-``cfg.top_n`` lists at unix time ``at`` (long format, ``COLUMNS``) for ``users``
    (default: everyone in the users table or with a history). ``model_until``: what the
    model trained until, so the ranker never learns from its scores on windows it trained
    on. ``vectors``: the users' model vectors at ``at``, when the embed step made them.
    ``anonymous``: also list, under this id, a user with nothing known (no history, no
    segment): what the site shows a user the run does not know."""
    catalog = inp.catalog
    n_items = len(catalog)
    cand, cand_of = candidates(catalog)
    hybrid = Hybrid(model, n_items, window_days=cfg.ranker_window_days, fit_windows=cfg.ranker_windows,
                    attributes=item_attributes(catalog), model_until=model_until, seed=cfg.seed).fit(inp.seqs, at)
    row_of_user = {u: i for i, u in enumerate(inp.user_ids)}
    everyone = sorted(set(inp.users["user_id"]) | set(inp.user_ids)) if users is None else list(users)
    if anonymous is not None:
        if anonymous in row_of_user or anonymous in set(everyone):
            raise ValueError(f"the anonymous list's id {anonymous!r} is a known user")
        everyone = [*everyone, anonymous]
    rules = Rules(cfg.top_n, cfg.max_per_category, cfg.new_item_quota)

    exclude, seen = exclusions(inp, everyone, cand_of, row_of_user)
    warm = [u for u in everyone if u in row_of_user and len(inp.seqs.items[row_of_user[u]])]
    rows = np.array([row_of_user[u] for u in warm], dtype=np.int64)
    user_vecs = (np.stack([vectors[u] for u in warm]) if vectors is not None and warm
                 else model.user_vectors(inp.seqs, rows.tolist(), at))
    depth = cfg.top_n * (5 if cfg.max_per_category else 1)  # room for what the cap skips
    ids, scores = hybrid.recommend(inp.seqs, rows, seen, at, depth, allowed=cand_of >= 0, vectors=user_vecs)
    retrieved = {u: (cand_of[r[r >= 0]], s[r >= 0].astype(np.float32)) for u, r, s in zip(warm, ids, scores)}

    first = hybrid.first_touch[cand]
    new = np.flatnonzero(~np.isfinite(first) | (first >= at - cfg.new_item_days * DAY))
    new_for: dict[str, np.ndarray] = {}
    if rules.new_item_quota and len(new) and warm:
        pos = {c: k for k, c in enumerate(new)}
        n_ids, _ = top_k_excluding(build_index(hybrid.items[cand[new]]), user_vecs, rules.new_item_quota,
                                   [{pos[c] for c in exclude.get(u, ()) if c in pos} for u in warm])
        new_for = {u: new[r[r >= 0]] for u, r in zip(warm, n_ids)}

    fallbacks, fallback_of = segment_fallbacks(hybrid, inp, cfg.segment_columns, cand_of, row_of_user)
    category = pd.factorize(catalog["category"].to_numpy()[cand])[0]  # -1 = no category
    global_order = fallbacks[0].order
    picked, relaxed = assemble_lists(everyone, retrieved, new_for, exclude, fallbacks, fallback_of,
                                     global_order[np.isin(global_order, new)], category, rules)
    recs = pd.DataFrame(picked, columns=["user_id", "rank", "cand", "score", "source", "segment"])
    cands = recs.pop("cand").to_numpy(dtype=np.int64)
    recs.insert(2, "item_id", catalog["item_id"].to_numpy()[cand[cands]])
    recs["rank"] = recs["rank"].astype("int32")
    recs["score"] = recs["score"].astype("float32")
    recs["reason"] = (reasons(recs, cand[cands], catalog, inp, row_of_user, hybrid.items, cfg.history_len)
                      if with_reasons else "")
    log.info("lists at %s for %d users (%d with a history), %d rows by source %s; category cap relaxed in %d",
             pd.Timestamp(at, unit="s").date(), len(everyone), len(warm), len(recs),
             recs["source"].value_counts().to_dict(), relaxed)
    return recs[COLUMNS]


def candidates(catalog: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(catalog rows a list may show: in stock, each row's candidate index or -1)."""
    cand = np.flatnonzero(catalog["in_stock"].to_numpy())  # rule: never out of stock
    cand_of = np.full(len(catalog), -1)
    cand_of[cand] = np.arange(len(cand))
    return cand, cand_of


def exclusions(inp: ListInputs, users: list[str], cand_of: np.ndarray,
               row_of_user: dict[str, int]) -> tuple[dict[str, set[int]], sp.csr_matrix]:
    """What a user's list never shows: every item in their history (a list is for finding
    what they have not touched; histories keep each item's last touch, so no holdout can
    tell whether showing it again pays) and what they bought or rated per the
    ``exclusions`` table (which keeps bots' purchases too). Per list user as candidate
    indices, and as the hybrid's ``seen`` matrix (sequence rows x catalog rows)."""
    row_of_item = pd.Index(inp.catalog["item_id"])
    excl = inp.exclusions
    item = row_of_item.get_indexer(excl["item_id"])
    user = pd.Index(inp.user_ids).get_indexer(excl["user_id"])
    known = (item >= 0) & (user >= 0)
    history = interactions(inp.seqs, len(row_of_item), positive=False)
    seen = sp.csr_matrix((np.ones(int(known.sum())), (user[known], item[known])), shape=history.shape) + history
    exclude: dict[str, set[int]] = {}
    for u in users:
        if u in row_of_user:
            rows = seen[row_of_user[u]].indices
            exclude[u] = set(cand_of[rows[cand_of[rows] >= 0]].tolist())
    for u, i in zip(excl["user_id"].to_numpy()[(item >= 0) & (user < 0)], item[(item >= 0) & (user < 0)]):
        if cand_of[i] >= 0:  # no history (a bot, say): the table alone
            exclude.setdefault(u, set()).add(int(cand_of[i]))
    return exclude, seen.tocsr()


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


def reasons(recs: pd.DataFrame, rows: np.ndarray, catalog: pd.DataFrame, inp: ListInputs,
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
            mine = inp.seqs.items[u][inp.seqs.types[u] != DISLIKE][-history_len:]
            if len(mine):
                best = (item_vecs[rows[ranked]] @ item_vecs[mine].T).argmax(axis=1)
                similar = {r: titles[mine[b]] for r, b in zip(ranked.tolist(), best.tolist())}
        for r in at.tolist():
            out[r] = reason(source[r], categories[rows[r]], similar.get(r, segment[r]))
    return out
