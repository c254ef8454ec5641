"""The nightly recommender: candidates from the two-tower model (FAISS), item co-occurrence
over the users' recent items and popularity, merged and ranked by a logistic model whose
weights are learned on the last days before the moment it serves, never hard-coded.

``fit(seqs, at)`` cuts the histories ``window_days`` before ``at``, builds the candidates of
a sample of users from what was known then, labels them with what those users touched next,
and fits the ranker; then it refits co-occurrence and popularity on everything before
``at``. ``recommend`` returns ranked ``(ids, scores)`` with scores in (0, 1).
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp
from tqdm import tqdm

from models.baselines import CoOccurrence, top_n
from models.evaluation import holdout, interactions
from models.ranking import Candidates, Ranker, labels, merge, top_k
from models.retrieval import build_index, top_k_excluding
from models.seqrec import Recommender, Sequences

log = logging.getLogger(__name__)


class Hybrid:
    def __init__(self, rec: Recommender, n_items: int, depth: int = 100, window_days: int = 7,
                 fit_users: int = 5_000, co_users: int = 50_000, co_recent: int = 20, seed: int = 0):
        self.rec, self.n_items, self.depth, self.window = rec, n_items, depth, window_days * 86400
        self.fit_users, self.co_users, self.co_recent = fit_users, co_users, co_recent
        self.rng = np.random.default_rng(seed)
        self.items = rec.item_vectors()
        self.ranker = Ranker()

    def _prepare(self, past: Sequences, at: int) -> None:
        """Co-occurrence (on at most ``co_users`` users' last ``co_recent`` items, which
        bounds its cost) and popularity (touches in the last window) as of ``at``."""
        users = np.flatnonzero([len(a) for a in past.items])
        chosen = np.zeros(len(past.items), bool)
        chosen[users if len(users) <= self.co_users else self.rng.choice(users, self.co_users, replace=False)] = True
        recent = Sequences([a[-self.co_recent:] if c else a[:0] for a, c in zip(past.items, chosen)], past.types, past.ts)
        self.co = CoOccurrence().fit(interactions(recent, self.n_items))
        self.popularity = np.log1p(np.asarray(interactions(past, self.n_items, since=at - self.window).sum(0)).ravel())
        self.by_popularity = np.argsort(-self.popularity, kind="stable")

    def _popular(self, users: np.ndarray, seen: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        """The most popular items each user has not seen, from one global order: no dense
        users x items block."""
        rows = seen[users]
        width = min(self.n_items, self.depth + int(np.diff(rows.indptr).max(initial=0)))
        top = self.by_popularity[:width]
        hidden = rows[:, top].toarray() > 0
        rank = np.cumsum(~hidden, axis=1)
        keep = ~hidden & (rank <= self.depth)
        ids = np.full((len(users), self.depth), -1, np.int64)
        r, c = np.nonzero(keep)
        ids[r, rank[r, c] - 1] = top[c]
        return ids, np.where(ids >= 0, self.popularity[np.maximum(ids, 0)], 0.0)

    def _candidates(self, past: Sequences, history: sp.csr_matrix, users: np.ndarray, seen: sp.csr_matrix,
                    at: int, index, vecs: np.ndarray | None = None) -> Candidates:
        """Each source's candidates for one batch of ``users``: ``history`` (users x items)
        is what they touched, ``seen`` what must not be listed; ``vecs``: their user
        vectors when already computed."""
        vecs = self.rec.user_vectors(past, users.tolist(), at) if vecs is None else vecs
        exclude = [set(seen[u].indices.tolist()) for u in users]
        # dense per batch: the product is dense for popular items, and np.partition beats
        # sorting its stored entries (a sparse top-n ran 9x slower at 50k users x 20k items)
        co_ids, co_scores = top_n((history[users] @ self.co.similarity).toarray(), self.depth, seen[users])
        sources = {"model": top_k_excluding(index, vecs, self.depth, exclude),
                   "co_occurrence": (co_ids, np.where(np.isfinite(co_scores), co_scores, 0.0)),
                   "popularity": self._popular(users, seen)}
        return merge(sources, {"item_popularity": self.popularity})

    def fit(self, seqs: Sequences, at: int) -> "Hybrid":
        h = holdout(seqs, self.n_items, at - self.window)
        users = h.warm if len(h.warm) <= self.fit_users else np.sort(self.rng.choice(h.warm, self.fit_users, replace=False))
        self._prepare(h.past, h.start)
        if len(users):
            history = interactions(h.past, self.n_items)
            cands = self._candidates(h.past, history, users, history, h.start, build_index(self.items, len(users)))
            y = labels(cands, h.truth[users])
            self.ranker.fit(cands.features, y)
            log.info("ranker fitted on %d candidates of %d users (%d positives): %s", len(y), len(users),
                     int(y.sum()), self.ranker.weights(cands.names))
        self._prepare(seqs, at)
        return self

    def recommend(self, past: Sequences, users: np.ndarray, seen: sp.csr_matrix, at: int, n: int,
                  allowed: np.ndarray | None = None, vectors: np.ndarray | None = None,
                  batch: int = 2048) -> tuple[np.ndarray, np.ndarray]:
        """Top ``n`` per user (rows of ``seen`` excluded; only ``allowed`` items, say in
        stock, when given), padded with -1; users in batches, so memory stays bounded.
        ``vectors``: the users' vectors at ``at`` (one row per user), if already made."""
        users = np.asarray(users)
        index = build_index(self.items, len(users))
        history = interactions(past, self.n_items)
        out_ids, out_scores = [np.zeros((0, n), np.int64)], [np.zeros((0, n))]
        for s in tqdm(range(0, len(users), batch), desc="rank", unit="batch"):
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
