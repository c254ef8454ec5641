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
        if len(users) > self.co_users:
            users = self.rng.choice(users, self.co_users, replace=False)
        recent = Sequences([past.items[u][-self.co_recent:] if u in set(users.tolist()) else past.items[u][:0]
                            for u in range(len(past.items))], past.types, past.ts)
        self.co = CoOccurrence().fit(interactions(recent, self.n_items))
        self.popularity = np.log1p(np.asarray(interactions(past, self.n_items, since=at - self.window).sum(0)).ravel())

    def _candidates(self, past: Sequences, users: np.ndarray, seen: sp.csr_matrix, at: int) -> Candidates:
        """Each source's candidates from the histories ``past``; ``seen`` rows are excluded."""
        vecs = self.rec.user_vectors(past, users.tolist(), at)
        exclude = [set(seen[u].indices.tolist()) for u in users]
        sources = {"model": top_k_excluding(build_index(self.items, len(users)), vecs, self.depth, exclude)}
        history = interactions(past, self.n_items)  # co-occurrence reads every item touched
        co_ids, co_scores = [], []
        for s in range(0, len(users), 512):
            batch = users[s:s + 512]
            i, sc = top_n((history[batch] @ self.co.similarity).toarray(), self.depth, seen[batch])
            co_ids.append(i)
            co_scores.append(np.where(np.isfinite(sc), sc, 0.0))
        sources["co_occurrence"] = (np.concatenate(co_ids), np.concatenate(co_scores))
        pop_ids, pop_scores = top_n(np.broadcast_to(self.popularity, (len(users), self.n_items)), self.depth,
                                    seen[users])
        sources["popularity"] = (pop_ids, np.where(np.isfinite(pop_scores), pop_scores, 0.0))
        return merge(sources, {"item_popularity": self.popularity})

    def fit(self, seqs: Sequences, at: int) -> "Hybrid":
        h = holdout(seqs, self.n_items, at - self.window)
        users = h.warm if len(h.warm) <= self.fit_users else np.sort(self.rng.choice(h.warm, self.fit_users, replace=False))
        self._prepare(h.past, h.start)
        if len(users):
            cands = self._candidates(h.past, users, interactions(h.past, self.n_items), h.start)
            y = labels(cands, h.truth[users])
            self.ranker.fit(cands.features, y)
            log.info("ranker fitted on %d candidates of %d users (%d positives): %s", len(y), len(users),
                     int(y.sum()), self.ranker.weights(cands.names))
        self._prepare(seqs, at)
        return self

    def recommend(self, past: Sequences, users: np.ndarray, seen: sp.csr_matrix, at: int, n: int,
                  allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top ``n`` per user (rows of ``seen`` excluded; only ``allowed`` items, say in
        stock, when given), padded with -1."""
        users = np.asarray(users)
        if not len(users):
            return np.zeros((0, n), np.int64), np.zeros((0, n))
        cands = self._candidates(past, users, seen, at)
        if allowed is not None:
            keep = allowed[cands.item]
            cands = Candidates(cands.row[keep], cands.item[keep], cands.features[keep], cands.names)
        ids, scores = top_k(cands, self.ranker.score(cands.features), len(users), n)
        return ids, np.where(ids >= 0, 1.0 / (1.0 + np.exp(-scores)), 0.0)
