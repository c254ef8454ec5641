"""The nightly recommender: candidates from the two-tower model (FAISS), item co-occurrence
over the users' items, EASE (an item-item regression over the ``ease_items`` most touched
items), trending items (the last window) and popular ones (the longest popularity window),
merged and ranked by gradient-boosted trees whose
splits are learned on the weeks before the moment it serves, never hard-coded.

``fit(seqs, at)`` cuts the histories at the start of each of the last ``fit_windows``
windows of ``window_days`` before ``at`` (and of older ones, up to ``max_windows``, while
fewer than ``fit_users`` users were labelled: a small or sparse shop looks further back),
builds the candidates of a sample of each window's users from what was known then, labels
them with what those users first touched in the window, and fits the ranker on the pooled
windows; then ``update(seqs, at)`` refits
co-occurrence and popularity on everything before ``at``. ``recommend`` returns ranked
``(ids, scores)`` with scores in (0, 1).

Ranker features per (user, candidate): each source's score and reciprocal rank; the item's
popularity over several windows and its age (days since its first touch); co-occurrence
with the user's whole history (mean) and with their ``recent_items`` latest items; the
item's EASE score for the user (NaN outside EASE's items, so every source's candidate
gets it, not only EASE's own); the share
of the user's history in the item's category and how far the item's price is from the
prices the user touched (when the catalog has them); the user's history length and days
since their last touch. Missing values stay NaN: the trees route them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from nightrecs.models.baselines import EASE, CoOccurrence, top_n, top_n_shared
from nightrecs.models.data import (DISLIKE, Sequences, holdout, interactions, item_reach, mostly_empty, row_sets,
                                   values_at)
from nightrecs.models.progress import progress
from nightrecs.models.ranking import Candidates, Ranker, labels, merge, top_k
from nightrecs.models.retrieval import build_index, top_k_excluding
from nightrecs.models.seqrec import Recommender

log = logging.getLogger(__name__)
DAY = 86_400
ALL_TIME = float("inf")  # a popularity window of every day known


@dataclass
class ItemAttributes:
    """Catalog attributes the ranker can use, one entry per item (by model row)."""

    category: np.ndarray | None = None  # int codes, -1 unknown
    log_price: np.ndarray | None = None  # NaN unknown


@dataclass
class LearningSet:
    """The ranker's examples: candidate rows of every learning window, stacked."""

    features: np.ndarray
    y: np.ndarray  # 1: the user took the item in the window
    groups: np.ndarray  # one id per (user, window): the list a row belongs to
    fallback_hits: dict[float, int]  # per popularity window: truths its top 10 held
    users: int
    windows: int


class Hybrid:
    def __init__(self, rec: Recommender, n_items: int, depth: int = 100, window_days: int = 7,
                 fit_windows: int = 4, popularity_days: tuple[int, ...] = (1, 7, 28, 91, 365),
                 attributes: ItemAttributes | None = None, fit_users: int = 5_000, max_windows: int = 52,
                 co_users: int = 50_000, co_items: int = 20, co_events: int = 2_000_000,
                 co_neighbours: int | None = None, recent_items: int = 20,
                 ease_items: int = 2_000, ease_l2: float = 200.0, model_until: int | None = None, seed: int = 0):
        self.rec, self.n_items, self.depth, self.window = rec, n_items, depth, window_days * DAY
        self.fit_windows, self.popularity_days = fit_windows, popularity_days
        self.fallback_windows = (*popularity_days, ALL_TIME)  # what the fallback may count over, in days
        self.attributes = attributes or ItemAttributes()
        self.fit_users, self.max_windows, self.recent_items = fit_users, max_windows, recent_items
        self.co_users, self.co_items, self.co_events, self.co_neighbours = co_users, co_items, co_events, co_neighbours
        self.ease_items, self.ease_l2 = ease_items, ease_l2
        self.model_until = model_until
        self.rng = np.random.default_rng(seed)
        self.fallback_days: float | None = None  # the fallback's popularity window (ALL_TIME too); None: the ranker's
        self.items = rec.item_vectors()
        self.ranker = Ranker(seed=seed)
        cat = self.attributes.category
        self.category_onehot = None if cat is None else sp.csr_matrix(
            (np.ones(int((cat >= 0).sum())), (np.flatnonzero(cat >= 0), cat[cat >= 0])),
            shape=(n_items, int(cat.max(initial=-1)) + 1))

    def update(self, past: Sequences, at: int) -> "Hybrid":
        """Co-occurrence (on at most ``co_users`` users' last items: ``co_items``, or more
        while the total stays under ``co_events``, which bounds its cost; each item's
        ``co_neighbours`` most similar items when set, which keeps users' scores sparse in a
        large catalog), popularity and
        item ages as of ``at``; EASE on the same sample, over the ``ease_items`` items it
        touched most (at least twice): its solve is cubic in items, so this bounds it too."""
        self.past, self._in_window = past, None
        users = np.flatnonzero([len(a) for a in past.items])
        chosen = users if len(users) <= self.co_users else self.rng.choice(users, self.co_users, replace=False)
        per_user = max(self.co_items, self.co_events // max(len(chosen), 1))
        sample = interactions(past.tail(per_user, chosen), self.n_items)
        self.co = CoOccurrence(neighbours=self.co_neighbours).fit(sample)
        counts = np.asarray(sample.sum(0)).ravel()
        top = np.argsort(-counts, kind="stable")[:self.ease_items]
        self.ease_cols = np.sort(top[counts[top] >= 2])
        self.ease = (EASE(self.ease_l2, np.float32).fit(sample[:, self.ease_cols]).weights if len(self.ease_cols)
                     else np.zeros((0, 0), np.float32))
        self.ease_pos = np.full(self.n_items, -1)
        self.ease_pos[self.ease_cols] = np.arange(len(self.ease_cols))

        first = np.full(self.n_items, np.inf)
        if past.items:
            np.minimum.at(first, np.concatenate(past.items), np.concatenate(past.ts).astype(float))
        self.first_touch = first  # unix seconds; inf: nobody touched the item yet
        window = self.window // DAY
        days = sorted({*self.popularity_days, window})
        counts = item_reach(past, self.n_items, [at - d * DAY for d in days] + [None])
        log_count = {d: np.log1p(c) for d, c in zip([*days, None], counts)}
        self.item_features = {f"popularity_{d}d": log_count[d] for d in self.popularity_days}
        self.popularity = log_count[window]
        self.item_features["popularity_all"] = log_count[None]
        self.item_features["item_age_days"] = np.log1p(np.maximum(at - first, 0) / DAY)  # inf: never touched
        self.item_features["item_age_days"][~np.isfinite(first)] = np.nan
        longest = self.item_features[f"popularity_{max(self.popularity_days)}d"]
        self.orders = {name: (np.argsort(-pop, kind="stable"), pop)
                       for name, pop in (("trending", self.popularity), ("popular", longest))}
        self.at = at
        return self

    def fallback_order(self, among: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The popularity fallback (cold start, list top-up): items by their popularity over
        ``fallback_days`` (chosen by ``fit``: the window, all time included, whose list best
        predicted its learning windows; a sparse shop needs a longer one), then the longest window's, then all
        time's, then by index; with scores scaled to [0, 1]. ``among``: count only these
        users' touches (a segment's popularity), given the sequences of the last ``update``."""
        if among is not None:
            trend = self._window_counts(among)
        else:
            trend = self.popularity if self.fallback_days is None else self._popularity_over(self.fallback_days)
        order = np.lexsort((np.arange(self.n_items), -self.item_features["popularity_all"],
                            -self.item_features[f"popularity_{max(self.popularity_days)}d"], -trend))
        top = trend.max(initial=0.0)
        return order, (trend[order] / top if top > 0 else np.zeros(len(order))).astype(np.float32)

    def _popularity_over(self, days: float) -> np.ndarray:
        return self.item_features["popularity_all" if days == ALL_TIME else f"popularity_{days}d"]

    def _window_counts(self, users: np.ndarray) -> np.ndarray:
        if self._in_window is None:
            days = self.window // DAY if self.fallback_days is None else self.fallback_days
            since = None if days == ALL_TIME else self.at - days * DAY
            self._in_window = interactions(self.past, self.n_items, since=since)
        return np.log1p(np.asarray(self._in_window[users].sum(0)).ravel())

    def _popular(self, rows: sp.csr_matrix, source: str = "trending") -> tuple[np.ndarray, np.ndarray]:
        """The most popular items each user (a row of ``rows``: what they must not be shown)
        has not seen (``trending``: over the window, ``popular``: over the longest of
        ``popularity_days``), from one global order: no dense users x items block."""
        order, popularity = self.orders[source]
        ids, scores = top_n_shared(popularity, order, self.depth, rows)
        return ids, np.where(ids >= 0, scores, 0.0)

    def _candidates(self, past: Sequences, history: sp.csr_matrix, users: np.ndarray, seen: sp.csr_matrix,
                    at: int, index, vecs: np.ndarray | None = None) -> Candidates:
        """Each source's candidates for one batch of ``users``, with the ranker's features:
        ``history`` (users x items) is what they touched, ``seen`` what must not be listed;
        ``vecs``: their user vectors when already computed. Before ``model_until`` the
        model proposes nothing and its features are unknown: it trained on what follows."""
        seen = seen[users]  # the batch's rows, from here on
        exclude = row_sets(seen, np.arange(len(users)))
        model_known = self.model_until is None or at >= self.model_until
        if model_known:
            vecs = self.rec.user_vectors(past, users.tolist(), at) if vecs is None else vecs
            model = top_k_excluding(index, vecs, self.depth, exclude)
        else:
            model = (np.full((len(users), self.depth), -1, np.int64), np.full((len(users), self.depth), -np.inf))
        mine = history[users]
        co = self.co.scores(mine)
        if sp.issparse(co) and mostly_empty(co):  # top_n and values_at read it entry by entry:
            co.sum_duplicates()  # sorted once for both (a dense-ish one is read in dense blocks: no sort, 3-7 s)
        co_ids, co_scores = top_n(co, self.depth, seen)
        ease = np.asarray(mine[:, self.ease_cols] @ self.ease)  # dense (users, EASE's items)
        e_ids, e_scores = top_n(np.where(ease > 0, ease, -np.inf), self.depth, seen[:, self.ease_cols])
        sources = {"model": model,
                   "co_occurrence": (co_ids, np.where(np.isfinite(co_scores), co_scores, 0.0)),
                   "ease": (np.where(e_ids >= 0, self.ease_cols[np.maximum(e_ids, 0)], -1), e_scores),
                   "trending": self._popular(seen, "trending"),
                   "popular": self._popular(seen, "popular")}
        a = self.attributes
        n_pair = 5 + (self.category_onehot is not None) + (a.log_price is not None)  # the pair features below
        c = merge(sources, self.item_features, room=n_pair)
        n_mine = np.asarray(mine.sum(1)).ravel()
        latest = [past.items[u][past.types[u] != DISLIKE][-self.recent_items:] for u in users]
        recent = sp.csr_matrix((np.ones(sum(map(len, latest))), np.concatenate(latest or [np.zeros(0, int)]),
                                np.concatenate([[0], np.cumsum([len(a) for a in latest])])),
                               shape=(len(users), self.n_items))
        recent.sum_duplicates()
        recent.data[:] = 1.0
        last = np.array([past.ts[u][-1] if len(past.ts[u]) else np.nan for u in users], dtype=float)
        n_recent = np.diff(recent.indptr)
        co_at = values_at(co, c.row, c.item)
        recent_at = co_at.copy()  # a user with no more items than the recent window: the same sums
        longer = np.flatnonzero(n_recent < np.diff(mine.indptr))
        if len(longer):
            at_row = np.full(len(users), -1)
            at_row[longer] = np.arange(len(longer))
            sel = at_row[c.row] >= 0
            recent_at[sel] = values_at(self.co.scores(recent[longer]), at_row[c.row[sel]], c.item[sel])
        pair = {"co_occurrence_mean": co_at / np.maximum(n_mine[c.row], 1),
                "co_occurrence_recent": recent_at / np.maximum(n_recent[c.row], 1)}
        pos, pair["ease"] = self.ease_pos[c.item], np.full(len(c.row), np.nan)
        pair["ease"][pos >= 0] = ease[c.row[pos >= 0], pos[pos >= 0]]
        if self.category_onehot is not None:
            share = (mine @ self.category_onehot).toarray() / np.maximum(n_mine, 1)[:, None]
            cat = a.category[c.item]
            pair["category_affinity"] = np.where(cat >= 0, share[c.row, np.maximum(cat, 0)], np.nan)
        if a.log_price is not None:
            known = np.isfinite(a.log_price)
            total, n = mine @ np.where(known, a.log_price, 0.0), mine @ known.astype(float)
            with np.errstate(invalid="ignore", divide="ignore"):
                pair["price_gap"] = np.abs(a.log_price[c.item] - (total / n)[c.row])
        pair["history_length"] = np.log1p(n_mine[c.row])
        pair["days_since_last"] = np.log1p(np.maximum(at - last[c.row], 0) / DAY)
        features, first = c.features, len(c.names)
        assert features.shape[1] == first + len(pair), "n_pair must count the pair features"
        for j, values in enumerate(pair.values()):
            features[:, first + j] = values
        if not model_known:
            features[:, [c.names.index("model_score"), c.names.index("model_rr")]] = np.nan
        return Candidates(c.row, c.item, features, c.names + list(pair))

    def fit(self, seqs: Sequences, at: int) -> "Hybrid":
        s = self.learning_set(seqs, at)
        self.ranker.fit(s.features, s.y, s.groups)
        self.fallback_days = self._best_fallback(s.fallback_hits)
        log.info("ranker fitted on %d candidates of %d users in %d windows (%d positives)", len(s.y), s.users,
                 s.windows, int(s.y.sum()))
        return self.update(seqs, at)

    def learning_set(self, seqs: Sequences, at: int) -> "LearningSet":
        """The ranker's examples from the learning windows before ``at`` (see the module
        docstring), and what each popularity window's top 10 held of their truths; leaves
        the hybrid updated to the oldest window's start."""
        feats, ys, groups, n_users = [], [], [], 0
        hits = dict.fromkeys(self.fallback_windows, 0)
        per_window = max(1, self.fit_users // self.fit_windows)
        first = seqs.first_time(default=at)
        for w in range(self.max_windows):
            end = at - w * self.window
            if (w >= self.fit_windows and n_users >= self.fit_users) or end - self.window <= first:
                break  # enough users, or nobody has a past before this window (nor before older ones)
            h = holdout(seqs.before(end), self.n_items, end - self.window)
            if not h.truth.nnz:
                continue
            self.update(h.past, h.start)
            for d, n in self._fallback_hits(h.truth).items():
                hits[d] += n
            if not len(h.warm):
                continue
            users = h.warm if len(h.warm) <= per_window else np.sort(self.rng.choice(h.warm, per_window, replace=False))
            cands = self._candidates(h.past, interactions(h.past, self.n_items), users,
                                     interactions(h.past, self.n_items, positive=False), h.start,
                                     build_index(self.items, len(users)))
            feats.append(cands.features)
            ys.append(labels(cands, h.truth[users]))
            groups.append(n_users + cands.row)  # one list per user and window
            n_users += len(users)
        return LearningSet(np.concatenate(feats) if feats else np.zeros((0, 1)),
                           np.concatenate(ys) if ys else np.zeros(0, np.int8),
                           np.concatenate(groups) if groups else np.zeros(0, np.int64), hits, n_users, len(feats))

    def _fallback_hits(self, truth: sp.csr_matrix, k: int = 10) -> dict[float, int]:
        """Per popularity window (of ``popularity_days``, and all time): how many (user, item) truths of a
        learning window its top ``k`` as of the window's start (the last ``update``) holds."""
        rows = sp.csr_matrix(truth[np.flatnonzero(np.diff(truth.indptr) > 0)], dtype=bool)
        hits = {}
        for d in self.fallback_windows:
            pop = self._popularity_over(d)
            top = np.argsort(-pop, kind="stable")[:k]
            hits[d] = int(rows[:, top[pop[top] > 0]].sum())  # an untouched item is no prediction
        return hits

    def _best_fallback(self, hits: dict[float, int], k: int = 10) -> float | None:
        """The popularity window whose top ``k`` held the most truths over all the ranker's
        learning windows (pooled: one week of a small shop holds too few to choose on);
        ties: the ranker's window (None), else the shorter."""
        top = max(hits.values(), default=0)
        window = self.window // DAY
        best = None if top == 0 or hits.get(window) == top else min(d for d in hits if hits[d] == top)
        log.info("fallback popularity window: %s (truths in each window's top %d, pooled: %s)",
                 "all time" if best == ALL_TIME else f"{best or window} days", k, hits)
        return best

    def recommend(self, past: Sequences, users: np.ndarray, seen: sp.csr_matrix, at: int, n: int,
                  allowed: np.ndarray | None = None, vectors: np.ndarray | None = None,
                  batch: int = 2048, index=None, history: sp.csr_matrix | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top ``n`` per user (rows of ``seen`` excluded; only ``allowed`` items, say in
        stock, when given), padded with -1; users in batches, so memory stays bounded.
        ``vectors``: the users' vectors at ``at`` (one row per user), if already made;
        ``index`` (over the item vectors) and ``history`` (``interactions(past)``), when a
        caller asking batch after batch made them once."""
        users = np.asarray(users)
        index = build_index(self.items, len(users)) if index is None else index
        history = interactions(past, self.n_items) if history is None else history
        out_ids, out_scores = [np.zeros((0, n), np.int64)], [np.zeros((0, n))]
        batches = range(0, len(users), batch)
        for s in progress(batches, desc="rank", unit="batch") if len(batches) > 1 else batches:
            b = users[s:s + batch]
            cands = self._candidates(past, history, b, seen, at, index,
                                     None if vectors is None else vectors[s:s + batch])
            if allowed is not None:
                keep = allowed[cands.item]
                cands = Candidates(cands.row[keep], cands.item[keep], cands.features[keep], cands.names)
            ids, scores = top_k(cands, self.ranker.score(cands.features), len(b), n)
            out_ids.append(ids)
            out_scores.append(np.where(ids >= 0, 1.0 / (1.0 + np.exp(-scores)), 0.0))
        return np.concatenate(out_ids), np.concatenate(out_scores)
