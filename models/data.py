"""The model code's one view of interaction data: per-user event sequences, time cuts,
holdouts and interaction matrices. Every model, the ranker, the evaluation and the study
read histories through this module, so "what a user touched before a moment" and "what
counts as a positive" have one definition.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from nightrecs.contract import EVENT_TYPES

# The model's event tokens (1-based; 0 = padding): the contract's types, then a dislike
# (a rating at or below the run's ``dislike_rating``) and a search query.
TOKENS: tuple[str, ...] = (*EVENT_TYPES, "dislike", "search")
DISLIKE = TOKENS.index("dislike") + 1


def token(name: str) -> int:
    """The 1-based token of an event type, ``dislike`` or ``search``."""
    return TOKENS.index(name) + 1


@dataclass
class Sequences:
    """Per user, their events oldest first: 0-based item indices, tokens (1-based into
    ``TOKENS``) and unix seconds. Left-padded batches are cut from these."""

    items: list[np.ndarray]
    types: list[np.ndarray]
    ts: list[np.ndarray]
    features: np.ndarray | None = None  # (n_users, ModelConfig.user_features)

    @staticmethod
    def from_events(user: np.ndarray, item: np.ndarray, etype: np.ndarray, ts: np.ndarray,
                    n_users: int, features: np.ndarray | None = None) -> "Sequences":
        order = np.lexsort((ts, user))
        bounds = np.searchsorted(user[order], np.arange(n_users + 1))
        parts = [np.split(a[order], bounds[1:-1]) for a in (item, etype, ts)]
        return Sequences(*parts, features=features)

    def _select(self, keep: list[np.ndarray | slice]) -> "Sequences":
        return Sequences(*[[a[k] for a, k in zip(col, keep)] for col in (self.items, self.types, self.ts)],
                         features=self.features)

    def before(self, at: int) -> "Sequences":
        """Every user's events before unix time ``at``."""
        if not self.ts:
            return self._select([])
        # Counted over all events at once: a searchsorted call per user was 39% of a
        # million-user evaluate (the ranker's learning cuts every history twice a window).
        lengths = np.fromiter(map(len, self.ts), np.int64, len(self.ts))
        earlier = np.concatenate([[0], np.cumsum(np.concatenate(self.ts) < at)])  # times are sorted per user
        ends = np.cumsum(lengths)
        return self._select([slice(0, k) for k in (earlier[ends] - earlier[ends - lengths]).tolist()])

    def first_time(self, default: int) -> int:
        """Unix seconds of the earliest event (``default`` when there is none)."""
        return min((int(t[0]) for t in self.ts if len(t)), default=default)

    def tail(self, n: int, users: np.ndarray | None = None) -> "Sequences":
        """Each user's last ``n`` events (of ``users`` only, when given; the others empty)."""
        chosen = np.ones(len(self.items), bool) if users is None else np.isin(np.arange(len(self.items)), users)
        return self._select([slice(-n, None) if c and n else slice(0, 0) for c in chosen])

    def positive(self) -> "Sequences":
        """Without dislikes: what the users want more of."""
        return self._select([t != DISLIKE for t in self.types])


@dataclass
class Holdout:
    past: Sequences  # every user's history before the holdout
    truth: sp.csr_matrix  # users x items: positively touched inside the holdout, not before
    warm: np.ndarray  # user indices with truth and a past
    cold: np.ndarray  # user indices with truth and no past
    start: int  # unix seconds


def holdout(seqs: Sequences, n_items: int, start: int) -> Holdout:
    """Histories cut at ``start`` (unix seconds) and, per user, the items positively touched
    from then on that they had not touched before; warm users had a past, cold users not."""
    past = seqs.before(start)
    n_users = len(seqs.items)
    lengths = np.array([len(a) for a in seqs.items], dtype=np.int64)
    n_past = np.array([len(a) for a in past.items], dtype=np.int64)
    # One pass over every event as (user, item) keys: a per-user set difference cost about
    # 30 us a user, half a minute per holdout at a million users.
    user = np.repeat(np.arange(n_users, dtype=np.int64), lengths)
    key = user * n_items + (np.concatenate(seqs.items).astype(np.int64) if n_users else np.zeros(0, np.int64))
    in_past = np.arange(len(key)) - np.repeat(np.cumsum(lengths) - lengths, lengths) < np.repeat(n_past, lengths)
    types = np.concatenate(seqs.types) if n_users else np.zeros(0, int)
    after, before = sorted_unique(key[~in_past & (types != DISLIKE)]), sorted_unique(key[in_past])
    at = np.minimum(np.searchsorted(before, after), max(len(before) - 1, 0))
    new = after[before[at] != after] if len(before) else after  # sorted (user, item) keys, each once
    truth = sp.csr_matrix((np.ones(len(new)), (new // n_items, new % n_items)), shape=(n_users, n_items))
    has_truth = np.diff(truth.indptr) > 0
    has_past = n_past > 0
    return Holdout(past, truth, np.flatnonzero(has_truth & has_past), np.flatnonzero(has_truth & ~has_past), start)


def sorted_unique(a: np.ndarray) -> np.ndarray:
    """``np.unique`` by a sort: with numpy 2's hash-based ``unique`` and ``isin``, ``holdout``
    took 4x as long (200k users, 4M events, dev measurement)."""
    a = np.sort(a)
    return a[np.concatenate([[True], a[1:] != a[:-1]])] if len(a) else a


def time_split(seqs: Sequences, n_items: int, split_at: int) -> tuple[Sequences, tuple[Sequences, sp.csr_matrix, int]]:
    """Training sequences (events before ``split_at``, unix seconds) and the validation
    triple of ``Recommender.fit``: the same histories, the truth of warm users (cold users
    cannot be scored by a sequence model) and ``split_at`` as the prediction time."""
    h = holdout(seqs, n_items, split_at)
    warm = np.zeros(len(seqs.items))
    warm[h.warm] = 1.0
    return h.past, (h.past, sp.csr_matrix(sp.diags(warm) @ h.truth), split_at)


def interactions(seqs: Sequences, n_items: int, since: int | None = None, positive: bool = True) -> sp.csr_matrix:
    """Users x items, 1 where touched (at or after ``since``, when given); ``positive``:
    dislikes left out (popularity, co-occurrence); else every touch (what not to list again)."""
    user = np.repeat(np.arange(len(seqs.items)), [len(a) for a in seqs.items])
    item = np.concatenate(seqs.items) if seqs.items else np.zeros(0, int)
    types = np.concatenate(seqs.types) if seqs.types else np.zeros(0, int)
    keep = np.ones(len(item), bool) if since is None else np.concatenate(seqs.ts) >= since
    if positive:
        keep &= types != DISLIKE
    m = sp.csr_matrix((np.ones(int(keep.sum())), (user[keep], item[keep])), shape=(len(seqs.items), n_items))
    m.data[:] = 1.0
    return m


def item_reach(seqs: Sequences, n_items: int, since: list[int | None]) -> list[np.ndarray]:
    """Per entry of ``since`` (unix seconds; None: all time), how many users positively
    touched each item at or after it: ``interactions(seqs, n_items, since).sum(0)`` for
    several windows from one sort of the events (a matrix per window was a tenth of a
    half-million-user evaluate)."""
    lengths = np.fromiter(map(len, seqs.items), np.int64, len(seqs.items))
    if not lengths.sum():
        return [np.zeros(n_items) for _ in since]
    user = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    positive = np.concatenate(seqs.types) != DISLIKE
    key = user[positive] * n_items + np.concatenate(seqs.items).astype(np.int64)[positive]
    if not len(key):
        return [np.zeros(n_items) for _ in since]
    order = np.argsort(key, kind="stable")
    key, ts = key[order], np.concatenate(seqs.ts)[positive][order]
    first = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
    item, latest = key[first] % n_items, np.maximum.reduceat(ts, first)  # each (user, item) pair's last touch
    return [np.bincount(item if s is None else item[latest >= s], minlength=n_items).astype(np.float64)
            for s in since]


def row_sets(m: sp.csr_matrix, rows: np.ndarray | list[int]) -> list[set[int]]:
    """The column indices stored in each of ``rows`` of ``m``, as sets: one slice of ``m``
    instead of a scipy row lookup per row (about 0.1 ms each, a tenth of a list's budget)."""
    sub = m[np.asarray(rows, dtype=np.int64)]
    ptr, idx = sub.indptr, sub.indices
    return [set(idx[ptr[r]:ptr[r + 1]].tolist()) for r in range(len(ptr) - 1)]


SPARSE_BELOW = 0.1  # a matrix storing fewer entries than this share of its cells: worked on entry by entry


def mostly_empty(m: sp.spmatrix) -> bool:
    """Whether ``m`` stores under ``SPARSE_BELOW`` of its cells, so that work on its entries
    beats dense blocks of it."""
    return m.nnz < SPARSE_BELOW * m.shape[0] * m.shape[1]


def values_at(m: sp.spmatrix | np.ndarray, rows: np.ndarray, cols: np.ndarray, at_once: int = 2 ** 24) -> np.ndarray:
    """``m[rows, cols]`` for many pairs: scipy's own pair lookup scans each row when the
    pairs are fewer than a tenth of the stored entries, which made it a fifth of
    ``recommend``'s time (20x slower). A dense-ish ``m`` is read through dense blocks of
    rows (at most ``at_once`` entries each); a sparse one (under ``SPARSE_BELOW``, as a
    user's pruned co-occurrence scores in a 100k-item catalog) by a binary search of its
    entries' (row, column) keys, without the blocks. A dense array is indexed directly."""
    if isinstance(m, np.ndarray):
        return m[np.asarray(rows, np.int64), np.asarray(cols, np.int64)]
    m = sp.csr_matrix(m)
    if mostly_empty(m):
        if not m.has_canonical_format:
            m = m.copy()
            m.sum_duplicates()
        keys = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr)) * m.shape[1] + m.indices
        want = np.asarray(rows, np.int64) * m.shape[1] + np.asarray(cols, np.int64)
        at = np.minimum(np.searchsorted(keys, want), max(len(keys) - 1, 0))
        out = np.zeros(len(want), dtype=m.dtype)
        if len(keys):
            hit = keys[at] == want
            out[hit] = m.data[at[hit]]
        return out
    order = np.argsort(rows, kind="stable")
    r, c = np.asarray(rows)[order], np.asarray(cols)[order]
    out = np.zeros(len(order), dtype=m.dtype)
    step = max(1, at_once // max(m.shape[1], 1))
    bounds = np.searchsorted(r, np.arange(0, m.shape[0] + step, step))
    for k, start in enumerate(range(0, m.shape[0], step)):
        lo, hi = bounds[k], bounds[k + 1]
        if hi > lo:
            block = m if step >= m.shape[0] else m[start:start + step]  # a whole-matrix slice copies it
            out[order[lo:hi]] = block.toarray()[r[lo:hi] - start, c[lo:hi]]
    return out
