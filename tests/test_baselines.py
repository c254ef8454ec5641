"""Baseline recommenders on tiny interaction matrices with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from nightrecs.models.baselines import ALS, EASE, CoOccurrence, Popularity, keep_top, top_n

# users x items: items 0 and 1 always go together, item 2 is popular, item 4 is never seen
X = sp.csr_matrix(np.array([
    [1, 1, 1, 0, 0],
    [1, 1, 0, 0, 0],
    [0, 0, 1, 1, 0],
    [1, 0, 1, 0, 0],
    [0, 0, 1, 0, 0],
], dtype=float))


def test_top_n_excludes_seen_breaks_ties_and_pads():
    ids, scores = top_n(np.array([[3.0, 1.0, 3.0, 2.0]]), 3, sp.csr_matrix([[0, 0, 0, 1]]))
    assert ids.tolist() == [[0, 2, 1]] and scores.tolist() == [[3.0, 3.0, 1.0]]
    ids, scores = top_n(np.array([[1.0, -np.inf]]), 3)
    assert ids.tolist() == [[0, -1, -1]] and np.isneginf(scores[0, 1:]).all()
    # ties at the cut: the lowest indices win, however many items are tied
    many = np.zeros((2, 500))
    many[0, 300] = many[1, 7] = 2.0
    ids, _ = top_n(many, 4)
    assert ids.tolist() == [[300, 0, 1, 2], [7, 0, 1, 2]]


def test_top_n_blocks_of_rows_give_the_whole_matrix_answer():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, (37, 60)).astype(float)  # many ties at every cut
    scores[5] = -np.inf
    scores[6, :3] = 1.0
    scores[6, 3:] = -np.inf
    seen = sp.random(37, 60, 0.3, format="csr", random_state=1)
    whole = top_n(scores, 25, seen, at_once=10 ** 9)
    for at_once in (1, 60, 61, 7 * 60):
        for got, want in zip(top_n(scores, 25, seen, at_once), whole):
            np.testing.assert_array_equal(got, want)
    ids, best = whole
    assert (ids[5] == -1).all() and ids[6, 3:].tolist() == [-1] * 22
    for row in range(37):  # the reference: a stable sort on (-score, index) of the unseen
        s = np.where(seen[row].toarray()[0] > 0, -np.inf, scores[row])
        ref = np.lexsort((np.arange(60), -s))[:25]
        np.testing.assert_array_equal(ids[row], np.where(np.isfinite(s[ref]), ref, -1))


@pytest.mark.parametrize("density", [0.03, 0.5])  # picked per row / densified in blocks
def test_top_n_of_sparse_scores_is_the_dense_answer(density):
    scores = sp.random(40, 300, density, format="lil", random_state=3)
    scores[7] = 0.0  # a row with nothing stored
    scores = scores.tocsr()
    scores.data = np.round(scores.data * 3)  # ties, and stored zeros (absent entries score 0)
    seen = sp.random(40, 300, 0.1, format="lil", random_state=4)
    seen[8, :295] = 1.0  # fewer unseen items than places
    seen = seen.tocsr()
    for n in (5, 60):
        for got, want in zip(top_n(scores, n, seen), top_n(scores.toarray(), n, seen)):
            np.testing.assert_array_equal(got, want)
    assert (top_n(scores, 60, seen)[0][8, 5:] == -1).all()
    with pytest.raises(ValueError, match=">= 0"):
        top_n(-scores, 5)


def test_keep_top_keeps_each_rows_largest_and_the_lower_columns_on_ties():
    m = sp.random(30, 50, 0.4, format="csr", random_state=5)
    m.data = np.ceil(m.data * 4)
    kept = keep_top(m, 6).toarray()
    for r, row in enumerate(m.toarray()):
        stored = np.flatnonzero(row)
        want = stored[np.lexsort((stored, -row[stored]))][:6]
        assert set(np.flatnonzero(kept[r])) == set(want.tolist())
        np.testing.assert_array_equal(kept[r, want], row[want])
    model = CoOccurrence(neighbours=1).fit(X)
    assert (np.diff(model.similarity.indptr) <= 1).all()
    ids, _ = model.similar_items(0, 2)
    assert ids[0] == CoOccurrence().fit(X).similar_items(0, 1)[0][0]


def test_popularity_is_global_and_skips_what_the_user_has():
    model = Popularity().fit(X)
    ids, _ = model.recommend(np.array([4, 1]), X, 2)
    assert ids[0].tolist() == [0, 1]  # item 2 (most popular) is already user 4's
    assert ids[1].tolist() == [2, 3]
    # from one order, as the dense block's top-n, ties and short rows included
    many = sp.random(40, 30, 0.3, format="lil", random_state=4)
    many[5] = 1.0  # a user who has every item
    many = many.tocsr()
    model = Popularity().fit((sp.random(100, 30, 0.1, random_state=5) > 0).astype(float))
    for n in (3, 30):
        got = model.recommend(np.arange(40), many, n)
        want = top_n(np.broadcast_to(model.scores, (40, 30)), n, many)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    assert (got[0][5] == -1).all()


def test_co_occurrence_follows_items_seen_together():
    model = CoOccurrence(alpha=0.0).fit(X)
    ids, scores = model.similar_items(0, 2)
    assert ids.tolist() == [1, 2] and scores.tolist() == [2.0, 2.0]
    ids, _ = model.recommend(np.array([4]), X, 3)  # user 4 has only item 2
    assert ids[0].tolist() == [0, 1, 3]
    ids, _ = model.recommend(np.array([0]), X, 3)  # nothing co-occurs with 0, 1, 2 but 3
    assert ids[0].tolist() == [3, -1, -1]


def test_co_occurrence_scores_dense_block_is_the_sparse_product_bit_for_bit(monkeypatch):
    import pickle

    from nightrecs.models import baselines

    rng = np.random.default_rng(0)
    users = sp.random(300, 60, density=0.1, format="csr", random_state=1)
    model = CoOccurrence().fit(users)
    rows = sp.csr_matrix((rng.random((40, 60)) < 0.1).astype(np.float64))
    monkeypatch.setattr(baselines, "DENSE_SIMILARITY_BYTES", 0)  # too big for a dense copy
    sparse = model.scores(rows)
    assert sp.issparse(sparse)
    monkeypatch.setattr(baselines, "DENSE_SIMILARITY_BYTES", 2 ** 28)
    dense = model.scores(rows)
    assert isinstance(dense, np.ndarray) and np.array_equal(dense, sparse.toarray())
    assert "_dense" not in pickle.loads(pickle.dumps(model)).__dict__  # rebuilt where used, not shipped
    pruned = CoOccurrence(neighbours=2).fit(users)  # mostly empty: stays sparse
    assert sp.issparse(pruned.scores(rows))


def test_co_occurrence_recommend_is_the_dense_top_n_of_positive_scores(monkeypatch):
    from nightrecs.models import baselines

    users = (sp.random(300, 80, density=0.05, format="csr", random_state=2) > 0).astype(float)
    who = np.arange(0, 300, 3)
    for neighbours, dense_bytes in ((None, 2 ** 28), (None, 0), (3, 2 ** 28)):
        monkeypatch.setattr(baselines, "DENSE_SIMILARITY_BYTES", dense_bytes)
        model = CoOccurrence(neighbours=neighbours).fit(users)
        scores = (users[who] @ model.similarity).toarray()
        want = top_n(np.where(scores > 0, scores, -np.inf), 10, users[who])
        got = model.recommend(who, users, 10)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_allclose(got[1], want[1])
        assert (got[0] == -1).any() and (got[0] >= 0).any()


def test_ease_closed_form_and_recommendations():
    model = EASE(l2=1.0).fit(X)
    x = X.toarray()
    g = x.T @ x + np.eye(5)
    b = np.linalg.solve(g, x.T @ x)  # ridge regression of each item on all items ...
    assert np.allclose(np.diag(model.weights), 0)
    # ... with the diagonal constrained to zero: B = I - P diagMat(1 / diag(P))
    p = np.linalg.inv(g)
    assert np.allclose(model.weights, np.eye(5) - p / np.diag(p))
    assert not np.allclose(model.weights, b)
    ids, _ = model.recommend(np.array([1]), X, 1)  # has 0 and 1: item 2 goes with 0
    assert ids[0].tolist() == [2]
    with pytest.raises(IndexError):
        model.recommend(np.array([9]), X, 1)


def test_als_recommends_the_missing_item_of_the_users_group():
    # two taste groups of 10 users over items 0-4 and 5-9; user u lacks item u % 5 of its group
    rows, cols = [], []
    for u in range(20):
        group = 0 if u < 10 else 5
        for i in range(group, group + 5):
            if i != group + u % 5:
                rows.append(u)
                cols.append(i)
    x = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(20, 10))
    model = ALS(factors=4, regularization=0.01, alpha=5.0, iterations=20, seed=1).fit(x)
    users = np.arange(20)
    ids, scores = model.recommend(users, x, 1)
    assert ids[:, 0].tolist() == [(0 if u < 10 else 5) + u % 5 for u in users]
    assert np.isfinite(scores).all()
