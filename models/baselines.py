"""Baseline recommenders that nightrecs is measured against, with one small API.

Each has ``fit(user_items)`` on a CSR matrix ``(n_users, n_items)`` of interaction weights
and ``recommend(users, user_items, n)`` returning ``(item indices, scores)`` arrays of shape
``(len(users), n)``, padded with -1 / -inf, never repeating an item the user already has.
Scoring is batched matrix algebra over a dense ``(len(users), n_items)`` block, so callers
pass users in batches sized to memory.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from nightrecs.models.data import mostly_empty

DENSE_SIMILARITY_BYTES = 2 ** 28  # a dense copy of co-occurrence up to 256 MiB (about 5,800 items in float64)


def top_n(scores: np.ndarray | sp.spmatrix, n: int, seen: sp.csr_matrix | None = None,
          at_once: int = 2 ** 20) -> tuple[np.ndarray, np.ndarray]:
    """Best ``n`` columns per row of a score matrix, best first, excluding ``seen`` (and
    -inf scores); ties broken by the lower item index. Sparse ``scores`` must be >= 0 (an
    absent entry scores 0, as in the dense matrix); when few entries are stored, each row
    picks among its own (a 2,048 x 100k block need not exist). Rows go in blocks of at
    most ``at_once`` entries: a whole chunk's temporaries (a copy, a partition, masks)
    cost more in fresh memory than in work (4-7x slower on 2,048 users x 5,000 items)."""
    sparse = sp.issparse(scores)
    scores = sp.csr_matrix(scores) if sparse else np.asarray(scores)
    seen = None if seen is None else sp.csr_matrix(seen)
    if sparse and scores.nnz and scores.data.min() < 0:
        raise ValueError("top_n: sparse scores must be >= 0 (an absent entry scores 0)")
    if sparse and mostly_empty(scores):
        return _top_n_sparse(scores, n, seen)

    def block(s: int, e: int) -> tuple[np.ndarray, np.ndarray]:
        part = scores[s:e].toarray() if sparse else scores[s:e]
        return _top_n(np.array(part, dtype=np.float64), n, None if seen is None else seen[s:e])

    step = max(1, at_once // max(scores.shape[1], 1))
    parts = [block(s, s + step) for s in range(0, scores.shape[0], step)] or [block(0, 0)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _top_n(scores: np.ndarray, n: int, seen: sp.csr_matrix | None) -> tuple[np.ndarray, np.ndarray]:
    """``top_n`` of one block, which it overwrites."""
    if seen is not None:
        rows, cols = seen.nonzero()
        scores[rows, cols] = -np.inf
    n_eff = min(n, scores.shape[1])
    if n_eff == 0:  # no columns (or n = 0): nothing to pick
        return np.full((len(scores), n), -1, np.int64), np.full((len(scores), n), -np.inf)
    # the n-th best value per row; everything above it is in, and where more items are tied
    # with it than places remain, the lowest indices fill them (argpartition alone picks any)
    cut = scores.shape[1] - n_eff
    kth = np.partition(scores, cut, axis=1)[:, cut:cut + 1]
    chosen = scores >= kth
    over = np.flatnonzero(chosen.sum(1) > n_eff)
    if len(over):
        s, k = scores[over], kth[over]
        tied = s == k
        room = n_eff - (s > k).sum(1, keepdims=True)
        chosen[over] = (s > k) | (tied & (np.cumsum(tied, axis=1) <= room))
    part = np.nonzero(chosen)[1].reshape(len(scores), n_eff)
    part_scores = np.take_along_axis(scores, part, 1)
    order = np.lexsort((part, -part_scores), axis=1)
    ids = np.take_along_axis(part, order, 1)
    best = np.take_along_axis(part_scores, order, 1)
    ids = np.where(np.isfinite(best), ids, -1)
    if n_eff < n:
        ids = np.pad(ids, ((0, 0), (0, n - n_eff)), constant_values=-1)
        best = np.pad(best, ((0, 0), (0, n - n_eff)), constant_values=-np.inf)
    return ids, best


def _top_n_sparse(scores: sp.csr_matrix, n: int, seen: sp.csr_matrix | None) -> tuple[np.ndarray, np.ndarray]:
    """``top_n`` of a sparse matrix of scores >= 0, row by row over the stored entries; a
    row with fewer than ``n`` positive ones goes on with its lowest unseen indices at 0."""
    m = sp.csr_matrix(scores, dtype=np.float64, copy=True)
    m.sum_duplicates()
    n_rows, n_cols = m.shape
    if seen is not None:
        seen = sp.csr_matrix(seen, copy=True)
        seen.eliminate_zeros()
        hidden = sp.csr_matrix((np.ones(seen.nnz), seen.indices, seen.indptr), shape=seen.shape)
        m = sp.csr_matrix(m - m.multiply(hidden))
    n_eff = min(n, n_cols)
    ids, best = np.full((n_rows, n), -1, np.int64), np.full((n_rows, n), -np.inf)
    ptr, idx, dat = m.indptr, m.indices, m.data
    for r in range(n_rows):
        i, d = idx[ptr[r]:ptr[r + 1]], dat[ptr[r]:ptr[r + 1]]
        if len(d) > n_eff:  # only what could be among the best n
            keep = d >= np.partition(d, len(d) - n_eff)[len(d) - n_eff]
            i, d = i[keep], d[keep]
        if len(d) and d.min() <= 0:  # a stored 0 is an absent entry
            i, d = i[d > 0], d[d > 0]
        order = np.lexsort((i, -d))[:n_eff]
        k = len(order)
        ids[r, :k], best[r, :k] = i[order], d[order]
        if k < n_eff:  # every positive is in: the zeros follow by index
            taken = i if seen is None else np.concatenate([i, seen.indices[seen.indptr[r]:seen.indptr[r + 1]]])
            free = np.arange(min(n_cols, n_eff - k + len(taken)))
            free = free[~np.isin(free, taken)][:n_eff - k]
            ids[r, k:k + len(free)], best[r, k:k + len(free)] = free, 0.0
    return ids, best


def keep_top(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Each row's ``k`` largest stored entries (ties: the lower columns), the rest dropped;
    a partition per long row (a lexsort of all entries was 21x slower on MovieLens' 22M)."""
    m = sp.csr_matrix(m, copy=True)
    m.sum_duplicates()
    lengths = np.diff(m.indptr)
    keep = np.ones(m.nnz, bool)
    for r in np.flatnonzero(lengths > k):
        lo, hi = m.indptr[r], m.indptr[r + 1]
        d = m.data[lo:hi]
        kth = np.partition(d, len(d) - k)[len(d) - k]
        row = d > kth
        row[np.flatnonzero(d == kth)[:k - row.sum()]] = True  # sorted columns: the lowest first
        keep[lo:hi] = row
    kept = np.bincount(np.repeat(np.arange(m.shape[0]), lengths)[keep], minlength=m.shape[0])
    return sp.csr_matrix((m.data[keep], m.indices[keep], np.concatenate([[0], np.cumsum(kept)])), shape=m.shape)


def top_n_shared(scores: np.ndarray, order: np.ndarray, n: int, seen: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """``top_n`` of the same ``scores`` for every row of ``seen`` (what each row must not
    get), from their one ``order`` (best first, ties by the lower index): only the first
    ``n`` + (most seen in a row) items are looked at, not a dense rows x items block
    (a 512 x 100k one per batch made popularity most of a million-user evaluate's baselines)."""
    seen = sp.csr_matrix(seen)
    width = min(len(order), n + int(np.diff(seen.indptr).max(initial=0)))
    top = order[:width]
    hidden = seen[:, top].toarray() > 0
    rank = np.cumsum(~hidden, axis=1)
    keep = ~hidden & (rank <= n)
    ids = np.full((seen.shape[0], n), -1, np.int64)
    r, c = np.nonzero(keep)
    ids[r, rank[r, c] - 1] = top[c]
    return ids, np.where(ids >= 0, scores[np.maximum(ids, 0)], -np.inf)


class Popularity:
    """Items by total interaction weight: the same list for everyone."""

    def fit(self, user_items: sp.csr_matrix) -> "Popularity":
        self.scores = np.asarray(sp.csr_matrix(user_items).sum(0)).ravel().astype(np.float64)
        self.order = np.argsort(-self.scores, kind="stable")
        return self

    def recommend(self, users: np.ndarray, user_items: sp.csr_matrix, n: int) -> tuple[np.ndarray, np.ndarray]:
        return top_n_shared(self.scores, self.order, n, sp.csr_matrix(user_items)[users])


class CoOccurrence:
    """Item-to-item: a user's score for an item is how often it co-occurs with the user's
    items, normalised by the item's popularity (``alpha`` = 0 counts, 0.5 cosine-like).
    ``neighbours``: keep only each item's that many most similar items (item-kNN), so a
    user's scores stay sparse in a large catalog; None keeps them all."""

    def __init__(self, alpha: float = 0.5, neighbours: int | None = None) -> None:
        self.alpha, self.neighbours = alpha, neighbours

    def fit(self, user_items: sp.csr_matrix) -> "CoOccurrence":
        x = (sp.csr_matrix(user_items) > 0).astype(np.float64)
        c = (x.T @ x).tocsr()
        c.setdiag(0)
        c.eliminate_zeros()
        norm = np.asarray(x.sum(0)).ravel() ** self.alpha
        norm[norm == 0] = 1.0
        self.similarity = sp.csr_matrix(sp.diags(1.0 / norm) @ c @ sp.diags(1.0 / norm))
        if self.neighbours is not None:
            self.similarity = keep_top(self.similarity, self.neighbours)
        return self

    def scores(self, user_items: sp.spmatrix) -> np.ndarray | sp.csr_matrix:
        """Each row's summed similarity to every item (``user_items`` @ similarity). Against
        a dense-ish similarity of at most ``DENSE_SIMILARITY_BYTES`` (a few thousand items)
        a dense block: a sparse product filling a quarter of its cells cost 3x the dense
        one, and the caller's lookups read the block directly; same values, summed in the
        same order. Otherwise sparse (a large or pruned catalog)."""
        dense = self._dense_similarity()
        product = user_items @ (self.similarity if dense is None else dense)
        return np.asarray(product) if dense is not None else sp.csr_matrix(product)

    def _dense_similarity(self) -> np.ndarray | None:
        s = self.similarity
        if mostly_empty(s) or s.shape[0] * s.shape[1] * s.dtype.itemsize > DENSE_SIMILARITY_BYTES:
            return None
        if getattr(self, "_dense", None) is None:
            self._dense = s.toarray()
        return self._dense

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_dense"}  # rebuilt where needed, not shipped

    def similar_items(self, item: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        row = self.similarity[item].toarray()
        row[0, item] = -np.inf
        ids, scores = top_n(row, n)
        return ids[0], scores[0]

    def recommend(self, users: np.ndarray, user_items: sp.csr_matrix, n: int) -> tuple[np.ndarray, np.ndarray]:
        """An item that co-occurs with none of the user's items is no recommendation (-1);
        the scores stay sparse when they are (a dense 512 x 100k copy per batch cost 1.9x)."""
        seen = sp.csr_matrix(user_items)[users]
        ids, scores = top_n(self.scores((seen > 0).astype(np.float64)), n, seen)
        none = ~(scores > 0)
        return np.where(none, -1, ids), np.where(none, -np.inf, scores)


class EASE:
    """Embarrassingly shallow autoencoder (Steck 2019): a closed-form item-item model,
    ``B = I - P / diag(P)`` with ``P = (X'X + lambda I)^-1``. Dense in items, so meant for
    catalogs up to a few tens of thousands of items."""

    def __init__(self, l2: float = 200.0, dtype: type = np.float64) -> None:
        self.l2, self.dtype = l2, dtype

    def fit(self, user_items: sp.csr_matrix) -> "EASE":
        """A Cholesky solve (the Gram matrix plus ``l2`` is positive definite); ``dtype``
        float32 halves the memory and ran 2.5x faster than float64 at 4,000 items."""
        from scipy.linalg import cho_factor, cho_solve

        x = (sp.csr_matrix(user_items) > 0).astype(self.dtype)
        g = (x.T @ x).toarray()
        g[np.diag_indices_from(g)] += self.l2
        p = cho_solve(cho_factor(g, overwrite_a=True), np.eye(len(g), dtype=self.dtype), overwrite_b=True)
        self.weights = -p / np.diag(p)
        self.weights[np.diag_indices_from(self.weights)] = 0.0
        return self

    def recommend(self, users: np.ndarray, user_items: sp.csr_matrix, n: int) -> tuple[np.ndarray, np.ndarray]:
        seen = sp.csr_matrix(user_items)[users]
        return top_n((seen > 0).astype(np.float64) @ self.weights, n, seen)


class ALS:
    """Implicit-feedback matrix factorisation (Hu, Koren and Volinsky 2008) with the
    ``implicit`` package's conjugate-gradient solver; confidence ``1 + alpha * x``."""

    def __init__(self, factors: int = 64, regularization: float = 0.05, alpha: float = 10.0,
                 iterations: int = 15, seed: int = 0) -> None:
        self.params = dict(factors=factors, regularization=regularization, alpha=alpha,
                           iterations=iterations, random_state=seed)

    def fit(self, user_items: sp.csr_matrix) -> "ALS":
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, "blas"):  # implicit threads itself; nested BLAS threads thrash
            model = AlternatingLeastSquares(**self.params)
            model.fit(sp.csr_matrix(user_items, dtype=np.float32), show_progress=False)
        self.user_factors, self.item_factors = model.user_factors, model.item_factors
        return self

    def recommend(self, users: np.ndarray, user_items: sp.csr_matrix, n: int) -> tuple[np.ndarray, np.ndarray]:
        seen = sp.csr_matrix(user_items)[users]
        return top_n(self.user_factors[users] @ self.item_factors.T, n, seen)
