"""FAISS retrieval with exclusions, and list filling with the popularity fallback."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.retrieval import build_index, top_k_excluding
from tasks.retrieve import fill_lists, popularity_ranking


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


def test_small_catalog_pads_with_minus_one():
    items = np.eye(3, dtype=np.float32)
    ids, _ = top_k_excluding(build_index(items), items[:1], 5, [{1}])
    assert sorted(ids[0][:2]) == [0, 2] and list(ids[0][2:]) == [-1, -1, -1]


def test_popularity_ranking_breaks_ties_by_id():
    pop = pd.DataFrame({"item_id": ["b", "a", "c"], "score": [2.0, 2.0, 4.0]})
    order, scores = popularity_ranking(pop, pd.Series(["a", "b", "c", "d"]))
    assert list(order) == [2, 0, 1, 3] and scores[0] == 1.0 and scores[-1] == 0.0


def test_fill_lists_tops_up_without_duplicates_or_exclusions():
    pop_order, pop_scores = np.array([0, 1, 2, 3, 4]), np.array([1.0, .8, .6, .4, .2], dtype=np.float32)
    retrieved = {"warm": [(3, 0.9, "retrieval"), (4, 0.5, "retrieval")]}
    rows = fill_lists(["cold", "warm"], retrieved, {"warm": {0}, "cold": {1}}, pop_order, pop_scores, 4)
    lists: dict[str, list] = {}
    for user, rank, item, score, source in rows:
        lists.setdefault(user, []).append((rank, item, score, source))
    assert [i for _, i, _, _ in lists["cold"]] == [0, 2, 3, 4]
    assert [i for _, i, _, _ in lists["warm"]] == [3, 4, 1, 2]
    assert [s for *_, s in lists["warm"]] == ["retrieval", "retrieval", "popular", "popular"]
    for items in lists.values():
        scores = [s for _, _, s, _ in items]
        assert scores == sorted(scores, reverse=True)
        assert [r for r, *_ in items] == list(range(1, len(items) + 1))
