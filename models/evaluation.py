"""Offline ranking metrics for batches of top-K lists, vectorized with numpy.

Lists and held-out items are integer item indices. ``lists`` is an ``(n_users, K)`` array
padded with -1; the held-out truth is a ``scipy.sparse`` CSR matrix ``(n_users, n_items)``
with a nonzero for every relevant (user, item). Per-user values are returned as arrays so
that callers can average them, split them (warm / cold users) or bootstrap them.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

PER_USER = ("recall", "ndcg", "hr", "mrr")


def relevance(lists: np.ndarray, truth: sp.csr_matrix) -> np.ndarray:
    """``(n_users, K)`` bool: is the item at each list position in the user's truth?"""
    truth = sp.csr_matrix(truth, dtype=bool)
    rows = np.repeat(np.arange(lists.shape[0]), lists.shape[1]).reshape(lists.shape)
    valid = lists >= 0
    rel = np.zeros(lists.shape, dtype=bool)
    rel[valid] = np.asarray(truth[rows[valid], lists[valid]]).ravel()
    return rel


def per_user(lists: np.ndarray, truth: sp.csr_matrix) -> dict[str, np.ndarray]:
    """Recall@K, NDCG@K (binary gains), HR@K and MRR (reciprocal rank of the first hit
    inside the list, 0 without one) for each user; NaN for users without held-out items."""
    k = lists.shape[1]
    rel = relevance(lists, truth)
    n_true = np.diff(sp.csr_matrix(truth).indptr).astype(float)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (rel * discounts).sum(1)
    ideal = np.concatenate([[0.0], np.cumsum(discounts)])[np.minimum(n_true, k).astype(int)]
    hits = rel.sum(1)
    first = np.where(rel.any(1), rel.argmax(1), -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = {"recall": hits / n_true, "ndcg": dcg / ideal, "hr": (hits > 0).astype(float),
               "mrr": np.where(first >= 0, 1.0 / (first + 1), 0.0)}
    for name in PER_USER:
        out[name] = np.where(n_true > 0, out[name], np.nan)
    return out


def coverage(lists: np.ndarray, n_items: int) -> float:
    """Share of the catalog that appears in at least one list."""
    return len(np.unique(lists[lists >= 0])) / max(n_items, 1)


def novelty(lists: np.ndarray, item_counts: np.ndarray) -> float:
    """Mean self-information ``-log2(p(item))`` of recommended items, ``p`` from training
    interaction counts (add-one smoothed): higher means less obvious recommendations."""
    p = (item_counts + 1.0) / (item_counts.sum() + len(item_counts))
    shown = lists[lists >= 0]
    return float(-np.log2(p[shown]).mean()) if len(shown) else 0.0


def summarize(lists: np.ndarray, truth: sp.csr_matrix, item_counts: np.ndarray,
              users: np.ndarray | None = None) -> dict[str, float]:
    """Mean metrics over the users (a boolean mask or indices; default all) that have
    held-out items, with catalog coverage and novelty of their lists."""
    if users is not None:
        lists, truth = lists[users], sp.csr_matrix(truth)[users]
    scores = per_user(lists, truth)
    has_truth = ~np.isnan(scores["recall"])
    out = {name: float(np.mean(v[has_truth])) if has_truth.any() else float("nan")
           for name, v in scores.items()}
    out.update(users=int(has_truth.sum()), coverage=coverage(lists[has_truth], len(item_counts)),
               novelty=novelty(lists[has_truth], item_counts))
    return out


def paired_bootstrap(a: np.ndarray, b: np.ndarray, n: int = 2000, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``a - b`` over paired observations (e.g. (cutoff, user) pairs) and its
    percentile bootstrap interval: resamples pairs, so both systems see the same users."""
    d = np.asarray(a, float) - np.asarray(b, float)
    d = d[~np.isnan(d)]
    if not len(d):
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = np.array([d[rng.integers(0, len(d), len(d))].mean() for _ in range(n)])
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(d.mean()), float(lo), float(hi)
