"""Benchmark: exact top-k for every user, the retrieve step's core, by index and device.

    python -m benchmarks.topk [--users 1000000] [--items 100000] [--dim 64] [--k 100]
                              [--seen 20] [--methods auto,faiss-flat,faiss-hnsw,torch]

Clustered unit vectors (like the model's item and user vectors) and, per user, about
``--seen`` random items to exclude (their history). Each method runs
``models.retrieval.top_k_excluding`` over all users, as retrieve does:

- ``auto``: the index ``build_index`` picks on this machine (torch's exact index on a CUDA
  device; on CPU FAISS flat or HNSW, whichever is cheaper for this many users);
- ``faiss-flat`` / ``faiss-hnsw``: FAISS on the CPU, exact / approximate;
- ``torch``: the exact torch index on CUDA if present, else on the CPU.

Recall@k is measured against a brute-force answer for 2,000 sampled users. Prints a
Markdown table; a benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import logging
import time

import faiss
import numpy as np
import torch

from benchmarks.retrieval_index import clustered
from nightrecs.models.retrieval import TorchFlatIndex, build_index, hnsw_index, top_k_excluding

SAMPLE = 2000


def where(index: object) -> str:
    if isinstance(index, TorchFlatIndex):
        dev = index.items.device
        return f"torch, {torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'CPU'}"
    kind = "HNSW" if isinstance(index, faiss.IndexHNSW) else "flat"
    return f"FAISS {kind}, CPU {faiss.omp_get_max_threads()} threads"


def make_index(method: str, items: np.ndarray, n_users: int) -> object:
    if method == "auto":
        return build_index(items, n_users)
    if method == "faiss-flat":
        index = faiss.IndexFlatIP(items.shape[1])
        index.add(items)
        return index
    if method == "faiss-hnsw":
        return hnsw_index(items)
    if method == "torch":
        return TorchFlatIndex(items, "cuda" if torch.cuda.is_available() else "cpu")
    raise SystemExit(f"unknown method {method!r}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--seen", type=int, default=20)
    p.add_argument("--methods", default="auto,faiss-flat")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(500, a.dim)).astype(np.float32) / np.sqrt(a.dim)
    items = clustered(a.items, a.dim, rng, centers)
    users = clustered(a.users, a.dim, rng, centers)
    counts = rng.poisson(a.seen, a.users)
    flat_seen = rng.integers(0, a.items, counts.sum())
    exclude = [set(s.tolist()) for s in np.split(flat_seen, np.cumsum(counts)[:-1])]
    sample = rng.choice(a.users, min(SAMPLE, a.users), replace=False)
    scores = users[sample] @ items.T
    for row, u in enumerate(sample):
        scores[row, list(exclude[u])] = -np.inf
    truth = np.argpartition(-scores, a.k, axis=1)[:, :a.k]  # the exact top k, as sets
    print(f"\n{a.users:,} users x {a.items:,} items, dim {a.dim}, top {a.k}, about {a.seen} excluded per user; "
          f"FAISS {faiss.__version__}, torch {torch.__version__}", flush=True)
    print("| method | index, device | build s | top-k s | users/s | Recall@k vs exact |")
    print("| --- | --- | ---: | ---: | ---: | ---: |", flush=True)
    for method in a.methods.split(","):
        start = time.perf_counter()
        index = make_index(method, items, a.users)
        build = time.perf_counter() - start
        start = time.perf_counter()
        ids, _ = top_k_excluding(index, users, a.k, exclude)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        search = time.perf_counter() - start
        recall = np.mean([len(np.intersect1d(ids[u], t)) / a.k for u, t in zip(sample, truth)])
        print(f"| {method} | {where(index)} | {build:.1f} | {search:.1f} | {a.users / search:,.0f} | {recall:.3f} |",
              flush=True)
        del index, ids


if __name__ == "__main__":
    main()
