"""Benchmark: which FAISS index retrieval should use, by catalog size.

    python benchmarks/retrieval_index.py [--sizes 10000,30000,100000,300000] [--dim 384] [--queries 20000]

Catalogs of clustered unit vectors (like text embeddings: items bunch by topic) and
queries drawn the same way. For each size: build and search seconds and Recall@100 against
the exact answer, for the exact flat index and for HNSW, the approximate index retrieval
uses on CPU when it is cheaper in total (``models.retrieval.use_hnsw``, whose constants come
from this table). Prints a Markdown table; a benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import time

import faiss
import numpy as np

from nightrecs.models.retrieval import hnsw_index

K = 100


def clustered(n: int, dim: int, rng: np.random.Generator, centers: np.ndarray) -> np.ndarray:
    x = centers[rng.integers(0, len(centers), n)] + 0.6 * rng.normal(size=(n, dim)).astype(np.float32) / np.sqrt(dim)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="10000,30000,100000,300000")
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--queries", type=int, default=20000)
    a = p.parse_args()
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(500, a.dim)).astype(np.float32) / np.sqrt(a.dim)
    queries = clustered(a.queries, a.dim, rng, centers)
    print(f"\ndim {a.dim}, {a.queries:,} queries, top {K}, FAISS {faiss.__version__}, "
          f"{faiss.omp_get_max_threads()} threads")
    print("| items | index | build s | search s | queries/s | Recall@100 vs exact |")
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    for n in (int(s) for s in a.sizes.split(",")):
        items = clustered(n, a.dim, rng, centers)
        results = {}
        for kind in ("flat", "hnsw"):
            start = time.perf_counter()
            if kind == "flat":
                index = faiss.IndexFlatIP(a.dim)
                index.add(items)
            else:
                index = hnsw_index(items)
            build = time.perf_counter() - start
            start = time.perf_counter()
            _, ids = index.search(queries, K)
            search = time.perf_counter() - start
            results[kind] = ids
            hits = np.mean([len(np.intersect1d(x, y)) / K for x, y in zip(ids, results["flat"])])
            print(f"| {n:,} | {kind} | {build:.1f} | {search:.1f} | {a.queries / search:,.0f} | {hits:.3f} |",
                  flush=True)


if __name__ == "__main__":
    main()
