"""Retrieval with exclusions: FAISS flat and HNSW, and the torch index of the GPU path."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
import torch

from nightrecs.models.retrieval import (TorchFlatIndex, build_index, hnsw_index, index_from_bytes, index_to_bytes,
                                        top_k_excluding, use_hnsw)


def test_top_k_excluding_matches_brute_force():
    rng = np.random.default_rng(1)
    items = rng.normal(size=(300, 16)).astype(np.float32)
    users = rng.normal(size=(50, 16)).astype(np.float32)
    exclude = [set(rng.choice(300, rng.integers(0, 40), replace=False).tolist()) for _ in range(50)]
    ids, scores = top_k_excluding(build_index(items), users, 10, exclude, batch_size=7)
    full = users @ items.T
    for u in range(50):
        order = [i for i in np.argsort(-full[u], kind="stable") if i not in exclude[u]][:10]
        assert set(ids[u]) == set(order)
        np.testing.assert_allclose(scores[u], full[u, ids[u]], rtol=1e-4)
        assert not set(ids[u]) & exclude[u]


def exact_case(seed: int = 3) -> tuple[np.ndarray, np.ndarray, list[set[int]]]:
    rng = np.random.default_rng(seed)
    items = rng.normal(size=(500, 24)).astype(np.float32)
    users = rng.normal(size=(120, 24)).astype(np.float32)
    exclude = [set(rng.choice(500, rng.integers(0, 60), replace=False).tolist()) for _ in range(120)]
    return items, users, exclude


def flat(items: np.ndarray) -> faiss.Index:
    index = faiss.IndexFlatIP(items.shape[1])
    index.add(items)
    return index


def test_torch_index_finds_what_faiss_flat_finds():
    """The GPU path's exact search, run on the CPU: chunked (7 queries per matmul here), it
    returns FAISS's ids in FAISS's order, exclusions applied, and survives shipping."""
    items, users, exclude = exact_case()
    want_ids, want_scores = top_k_excluding(flat(items), users, 20, exclude)
    index = TorchFlatIndex(items, device="cpu", max_scores=7 * 500)
    ids, scores = top_k_excluding(index, users, 20, exclude, batch_size=50)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5)
    shipped = index_from_bytes(index_to_bytes(index))
    assert shipped.ntotal == 500
    np.testing.assert_array_equal(top_k_excluding(shipped, users, 20, exclude)[0], want_ids)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_the_index_is_exact_and_on_the_gpu():
    items, users, exclude = exact_case(4)
    index = build_index(items, len(users))
    assert isinstance(index, TorchFlatIndex) and index.items.device.type == "cuda"
    assert isinstance(index_from_bytes(index_to_bytes(index)), TorchFlatIndex)
    ids, scores = top_k_excluding(index, users, 20, exclude)
    want_ids, want_scores = top_k_excluding(flat(items), users, 20, exclude)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5)


def test_hnsw_for_large_catalogs_and_many_users_keeps_exclusions_and_recall():
    assert not use_hnsw(1_000, 2_000) and not use_hnsw(100_000, 20_000)  # the demo; a small night
    assert use_hnsw(100_000, 1_000_000) and use_hnsw(300_000, 200_000)
    rng = np.random.default_rng(2)
    items = rng.normal(size=(2000, 16)).astype(np.float32)
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    users = rng.normal(size=(40, 16)).astype(np.float32)
    exclude = [set(rng.choice(2000, 30, replace=False).tolist()) for _ in range(40)]
    index = hnsw_index(items)
    assert isinstance(index, faiss.IndexHNSW)
    ids, _ = top_k_excluding(index, users, 10, exclude)
    full = users @ items.T
    found = 0
    for u in range(40):
        exact = [i for i in np.argsort(-full[u], kind="stable") if i not in exclude[u]][:10]
        found += len(set(ids[u]) & set(exact))
        assert not set(ids[u]) & exclude[u] and len(set(ids[u])) == 10
    assert found / 400 > 0.9


@pytest.mark.parametrize("make", [build_index, lambda v: TorchFlatIndex(v, device="cpu")], ids=["faiss", "torch"])
def test_small_catalog_pads_with_minus_one(make):
    items = np.eye(3, dtype=np.float32)
    ids, scores = top_k_excluding(make(items), items[:1], 5, [{1}])
    assert sorted(ids[0][:2]) == [0, 2] and list(ids[0][2:]) == [-1, -1, -1]
    assert np.isneginf(scores[0][2:]).all()
