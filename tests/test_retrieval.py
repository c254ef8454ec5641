"""FAISS retrieval with exclusions, and list filling with the popularity fallback."""

from __future__ import annotations

import numpy as np

from nightrecs.models.retrieval import build_index, hnsw_index, top_k_excluding, use_hnsw
from nightrecs.models.rules import Rules
from nightrecs.tasks.lists import Fallback, assemble_lists, reason


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


def test_hnsw_for_large_catalogs_and_many_users_keeps_exclusions_and_recall():
    import faiss

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


def test_small_catalog_pads_with_minus_one():
    items = np.eye(3, dtype=np.float32)
    ids, _ = top_k_excluding(build_index(items), items[:1], 5, [{1}])
    assert sorted(ids[0][:2]) == [0, 2] and list(ids[0][2:]) == [-1, -1, -1]


def lists_of(rows) -> dict[str, list]:
    lists: dict[str, list] = {}
    for user, rank, item, score, source, _ in rows:
        lists.setdefault(user, []).append((rank, item, score, source))
    return lists


def test_lists_top_up_without_duplicates_or_exclusions():
    pop_order, pop_scores = np.array([0, 1, 2, 3, 4]), np.array([1.0, .8, .6, .4, .2], dtype=np.float32)
    retrieved = {"warm": (np.array([3, 4]), np.array([0.9, 0.5], dtype=np.float32))}
    rows, relaxed = assemble_lists(["cold", "warm"], retrieved, {}, {"warm": {0}, "cold": {1}},
                                   [Fallback(pop_order, pop_scores)], {}, np.array([], dtype=int),
                                   np.full(5, -1), Rules(top_n=4))
    lists = lists_of(rows)
    assert relaxed == 0
    assert [i for _, i, _, _ in lists["cold"]] == [0, 2, 3, 4]
    assert [i for _, i, _, _ in lists["warm"]] == [3, 4, 1, 2]
    assert [s for *_, s in lists["warm"]] == ["retrieval", "retrieval", "popular", "popular"]
    for items in lists.values():
        scores = [s for _, _, s, _ in items]
        assert scores == sorted(scores, reverse=True)
        assert [r for r, *_ in items] == list(range(1, len(items) + 1))


def test_lists_apply_the_cap_and_explore_new_items():
    """Items 0-3 share a category; 5 is new. A cap of 2 pushes popular items of other
    categories up; the exploration slot goes to the user's own new item first, the most
    popular new one for a cold user; scores still never rise down a list."""
    category = np.array([0, 0, 0, 0, 1, 1, 2])
    pop_order, pop_scores = np.array([6, 5, 4, 0, 1, 2, 3]), np.linspace(1, .1, 7).astype(np.float32)
    retrieved = {"warm": (np.array([0, 1, 2, 3]), np.array([.9, .8, .7, .6], dtype=np.float32))}
    rows, _ = assemble_lists(["cold", "warm"], retrieved, {"warm": np.array([5])}, {},
                             [Fallback(pop_order, pop_scores)], {}, np.array([5]), category,
                             Rules(top_n=4, max_per_category=2, new_item_quota=1))
    lists = lists_of(rows)
    warm = [(i, src) for _, i, _, src in lists["warm"]]
    assert [i for i, _ in warm] == [0, 5, 1, 6] and dict(warm)[5] == "new" and dict(warm)[6] == "popular"
    assert [i for _, i, _, _ in lists["cold"]] == [6, 5, 4, 0]
    for items in lists.values():
        scores = [s for _, _, s, _ in items]
        assert scores == sorted(scores, reverse=True)


def test_reasons_name_the_source():
    assert reason("retrieval", "Books", "Dune") == "similar to Dune"
    assert reason("retrieval", None, None) == "picked for you"
    assert reason("popular", "Books", None) == "popular in Books"
    assert reason("new", None, None) == "new arrival"
