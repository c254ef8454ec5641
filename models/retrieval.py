"""FAISS retrieval with per-user exclusions, on a GPU index when one is present."""

from __future__ import annotations

import logging
from typing import Sequence

import faiss
import numpy as np
from tqdm import tqdm

log = logging.getLogger(__name__)


def build_index(vectors: np.ndarray) -> faiss.Index:
    """Exact inner-product index (vectors are normalised, so this is cosine);
    moved to the GPU when the FAISS build and the machine have one."""
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        log.info("FAISS index on GPU")
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    return index


def top_k_excluding(index: faiss.Index, queries: np.ndarray, k: int,
                    exclude: Sequence[set[int]], batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` item ids and scores per query, skipping each query's excluded ids.

    Searches ``k`` plus the query's exclusion count deep, so the result is exact; rows that
    cannot be filled (catalog too small) are padded with id -1.
    """
    n_items = index.ntotal
    ids_out = np.full((len(queries), k), -1, dtype=np.int64)
    scores_out = np.full((len(queries), k), -np.inf, dtype=np.float32)
    n_excl = np.array([len(e) for e in exclude])
    # batch queries of similar exclusion depth together so one search serves the batch
    order = np.argsort(n_excl, kind="stable")
    for s in tqdm(range(0, len(order), batch_size), desc="retrieve", unit="batch"):
        rows = order[s:s + batch_size]
        depth = int(min(n_items, k + n_excl[rows].max()))
        if depth == 0:
            continue
        scores, ids = index.search(np.ascontiguousarray(queries[rows], dtype=np.float32), depth)
        for r, row_ids, row_scores in zip(rows, ids, scores):
            keep = [(i, sc) for i, sc in zip(row_ids, row_scores) if i >= 0 and i not in exclude[r]][:k]
            if keep:
                ids_out[r, :len(keep)] = [i for i, _ in keep]
                scores_out[r, :len(keep)] = [sc for _, sc in keep]
    return ids_out, scores_out
