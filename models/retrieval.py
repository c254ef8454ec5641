"""Retrieval with per-user exclusions: exact on a CUDA device when present (torch: matmul,
exclusions masked, top-k), FAISS exact or HNSW on CPU."""

from __future__ import annotations

import logging
from typing import Sequence

import faiss
import numpy as np
import torch

from nightrecs.models.progress import progress

log = logging.getLogger(__name__)


# Measured with benchmarks/retrieval_index.py (2 cores, dim 384; benchmarks/RESULTS.md): an
# exact scan compares ~2.4e8 item-query pairs per second; HNSW costs ~3.5e-4 s per item to
# build and then answers ~6,500 queries per second at Recall@100 >= 0.97.
FLAT_PAIRS_PER_S = 2.4e8
HNSW_BUILD_S_PER_ITEM = 3.5e-4
HNSW_QUERIES_PER_S = 6500.0
HNSW_M = 32
HNSW_EF_SEARCH = 128


def use_hnsw(n_items: int, n_queries: int) -> bool:
    """Whether HNSW (build + search) beats an exact scan for this many items and queries."""
    flat = n_items * n_queries / FLAT_PAIRS_PER_S
    return flat > n_items * HNSW_BUILD_S_PER_ITEM + n_queries / HNSW_QUERIES_PER_S


class TorchFlatIndex:
    """Exact inner-product search with torch (chunked matmul + top-k) for a CUDA device.
    Chosen over FAISS's GPU index: it masks each user's exclusions on the device, so it
    never searches deeper than k (FAISS's GPU search caps k at 2048, and PyPI's FAISS GPU
    build needs CUDA 12 beside torch's CUDA 13). Answers FAISS's ``search`` and
    ``ntotal``, so retrieval treats it as any other index."""

    def __init__(self, vectors: np.ndarray, device: torch.device | str = "cuda", max_scores: int = 2 ** 28):
        self.items = torch.as_tensor(np.ascontiguousarray(vectors, dtype=np.float32), device=device)
        self.ntotal, self.d = self.items.shape
        self.max_scores = max_scores  # scores held at once (2**28 floats = 1 GiB)

    def search(self, queries: np.ndarray, k: int,
               exclude: Sequence[set[int]] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """FAISS's ``search``; with ``exclude``, each query's excluded ids are masked on the
        device before the top-k (they come back only as id -1, score -inf, where too few
        items remain)."""
        k = min(k, self.ntotal)
        dev = self.items.device
        q = torch.as_tensor(np.ascontiguousarray(queries, dtype=np.float32), device=dev)
        step = max(1, self.max_scores // max(self.ntotal, 1))
        scores = torch.empty((len(q), k), dtype=torch.float32, device=dev)
        ids = torch.empty((len(q), k), dtype=torch.int64, device=dev)
        rows, banned = excluded_pairs(exclude or [])
        bounds = np.searchsorted(rows, np.arange(0, len(q) + step, step))  # each chunk's pairs: a slice
        ban_rows, ban_ids = torch.as_tensor(rows, device=dev), torch.as_tensor(banned, device=dev)
        tf32 = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False  # exact float32 products, like FAISS
        try:
            for c, s in enumerate(range(0, len(q), step)):
                block = q[s:s + step] @ self.items.T
                lo, hi = bounds[c], bounds[c + 1]
                block[ban_rows[lo:hi] - s, ban_ids[lo:hi]] = -torch.inf
                top = torch.topk(block, k, dim=1)
                scores[s:s + step], ids[s:s + step] = top.values, top.indices
        finally:
            torch.backends.cuda.matmul.allow_tf32 = tf32
        scores, ids = scores.cpu().numpy(), ids.cpu().numpy()
        ids[np.isneginf(scores)] = -1
        return scores, ids


def build_index(vectors: np.ndarray, n_queries: int = 0) -> faiss.Index | TorchFlatIndex:
    """Inner-product index (vectors are normalised, so this is cosine): exact and on the
    GPU when the machine has one; on CPU exact unless HNSW is cheaper for ``n_queries``
    searches (approximate; large catalogs and many users)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if torch.cuda.is_available():
        return on_gpu(vectors)
    if use_hnsw(len(vectors), n_queries):
        log.info("FAISS HNSW index (M=%d) over %d items for %d queries", HNSW_M, len(vectors), n_queries)
        return hnsw_index(vectors)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    return index


def on_gpu(vectors: np.ndarray) -> TorchFlatIndex:
    log.info("exact torch index on %s: %d items", torch.cuda.get_device_name(), len(vectors))
    return TorchFlatIndex(vectors)


def hnsw_index(vectors: np.ndarray) -> faiss.Index:
    index = faiss.IndexHNSWFlat(vectors.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 2 * HNSW_EF_SEARCH
    index.hnsw.efSearch = HNSW_EF_SEARCH
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def index_to_bytes(index: faiss.Index | TorchFlatIndex) -> np.ndarray:
    """The index as FAISS bytes (the torch index as a flat one), to ship it to other
    processes."""
    if isinstance(index, TorchFlatIndex):
        flat = faiss.IndexFlatIP(index.d)
        flat.add(index.items.cpu().numpy())
        index = flat
    return faiss.serialize_index(index)


def index_from_bytes(data: np.ndarray) -> faiss.Index | TorchFlatIndex:
    """``index_to_bytes``' inverse; a flat index goes to the GPU when there is one."""
    index = faiss.deserialize_index(data)
    if isinstance(index, faiss.IndexFlat) and torch.cuda.is_available():
        return on_gpu(index.reconstruct_n(0, index.ntotal))
    return index


def top_k_excluding(index: faiss.Index | TorchFlatIndex, queries: np.ndarray, k: int,
                    exclude: Sequence[set[int]], batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` item ids and scores per query, skipping each query's excluded ids.

    Searches ``k`` plus the query's exclusion count deep, so the result is exact on a flat
    index (an HNSW index searches at least that wide); rows that cannot be filled (catalog
    too small) are padded with id -1.
    """
    n_items = index.ntotal
    ids_out = np.full((len(queries), k), -1, dtype=np.int64)
    scores_out = np.full((len(queries), k), -np.inf, dtype=np.float32)
    n_excl = np.array([len(e) for e in exclude])
    # batch queries of similar exclusion depth together so one search serves the batch
    order = np.argsort(n_excl, kind="stable")
    batches = range(0, len(order), batch_size)
    for s in progress(batches, desc="retrieve", unit="batch") if len(batches) > 1 else batches:
        rows = order[s:s + batch_size]
        depth = int(min(n_items, k + n_excl[rows].max()))
        if depth == 0:
            continue
        if isinstance(index, faiss.IndexHNSW):
            index.hnsw.efSearch = max(HNSW_EF_SEARCH, depth)
        batch = np.ascontiguousarray(queries[rows], dtype=np.float32)
        if isinstance(index, TorchFlatIndex):  # masks exclusions on the device: k deep is enough
            scores, ids = index.search(batch, k, [exclude[r] for r in rows])
            ids_out[rows, :ids.shape[1]], scores_out[rows, :ids.shape[1]] = ids, scores
            continue
        scores, ids = index.search(batch, depth)
        ids_out[rows], scores_out[rows] = first_allowed(ids, scores, [exclude[r] for r in rows], k)
    return ids_out, scores_out


def excluded_pairs(exclude: Sequence[set[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(row, id) of every excluded id, rows ascending; one C loop per set, none per id."""
    sizes = np.array([len(e) for e in exclude], dtype=np.int64)
    rows = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
    ids = np.concatenate([np.fromiter(e, np.int64, len(e)) for e in exclude]) if len(rows) else np.zeros(0, np.int64)
    return rows, ids


def first_allowed(ids: np.ndarray, scores: np.ndarray, exclude: Sequence[set[int]],
                  k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's first ``k`` ids that are found (>= 0) and not excluded, in order; id -1
    and score -inf where fewer remain. Vectorised: (row, id) pairs as one int64 code, looked
    up in the sorted codes of the excluded pairs."""
    n_rows = len(ids)
    ban_rows, ban_ids = excluded_pairs(exclude)
    base = int(max(ids.max(initial=0), ban_ids.max(initial=0))) + 1
    codes = np.arange(n_rows, dtype=np.int64)[:, None] * base + ids
    banned = np.sort(ban_rows * base + ban_ids)
    ok = ids >= 0
    if len(banned):
        ok &= banned[np.searchsorted(banned, codes).clip(max=len(banned) - 1)] != codes
    slot = np.cumsum(ok, axis=1) - 1  # where each allowed id lands in its row
    ok &= slot < k
    out_ids = np.full((n_rows, k), -1, dtype=np.int64)
    out_scores = np.full((n_rows, k), -np.inf, dtype=np.float32)
    rows = np.nonzero(ok)[0]
    out_ids[rows, slot[ok]], out_scores[rows, slot[ok]] = ids[ok], scores[ok]
    return out_ids, out_scores
