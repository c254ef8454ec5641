"""FAISS retrieval with per-user exclusions: exact (on the GPU when present), HNSW for
large catalogs on CPU."""

from __future__ import annotations

import logging
from typing import Sequence

import faiss
import numpy as np

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


def build_index(vectors: np.ndarray, n_queries: int = 0) -> faiss.Index:
    """Inner-product index (vectors are normalised, so this is cosine): exact and on the
    GPU when the FAISS build and the machine have one; on CPU exact unless HNSW is
    cheaper for ``n_queries`` searches (approximate; large catalogs and many users)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        log.info("FAISS flat index on GPU: %d items", len(vectors))
        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(vectors)
        return faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    if use_hnsw(len(vectors), n_queries):
        log.info("FAISS HNSW index (M=%d) over %d items for %d queries", HNSW_M, len(vectors), n_queries)
        return hnsw_index(vectors)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    return index


def hnsw_index(vectors: np.ndarray) -> faiss.Index:
    index = faiss.IndexHNSWFlat(vectors.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 2 * HNSW_EF_SEARCH
    index.hnsw.efSearch = HNSW_EF_SEARCH
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def index_to_bytes(index: faiss.Index) -> np.ndarray:
    """The index as bytes (from the GPU first), to ship it to other processes."""
    if hasattr(faiss, "GpuIndex") and isinstance(index, faiss.GpuIndex):
        index = faiss.index_gpu_to_cpu(index)
    return faiss.serialize_index(index)


def index_from_bytes(data: np.ndarray) -> faiss.Index:
    """``index_to_bytes``' inverse; a flat index goes to the GPU when there is one."""
    index = faiss.deserialize_index(data)
    if isinstance(index, faiss.IndexFlat) and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        return faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    return index


def top_k_excluding(index: faiss.Index, queries: np.ndarray, k: int,
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
        scores, ids = index.search(np.ascontiguousarray(queries[rows], dtype=np.float32), depth)
        for r, row_ids, row_scores in zip(rows, ids, scores):
            keep = [(i, sc) for i, sc in zip(row_ids, row_scores) if i >= 0 and i not in exclude[r]][:k]
            if keep:
                ids_out[r, :len(keep)] = [i for i, _ in keep]
                scores_out[r, :len(keep)] = [sc for _, sc in keep]
    return ids_out, scores_out
