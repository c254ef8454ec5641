"""The candidate merge and the learned ranker (models/ranking.py) on hand-made candidates."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from nightrecs.models.ranking import Ranker, labels, merge, top_k

NEG = -np.inf


def two_sources():
    # user 0: source a proposes 3, 1; source b proposes 1, 2. user 1: a proposes 0, b nothing
    a = (np.array([[3, 1], [0, -1]]), np.array([[0.9, 0.5], [0.7, NEG]]))
    b = (np.array([[1, 2], [-1, -1]]), np.array([[2.0, 1.0], [NEG, NEG]]))
    return {"a": a, "b": b}


def test_merge_is_a_union_with_per_source_columns_and_item_features():
    c = merge(two_sources(), {"pop": np.array([10.0, 11.0, 12.0, 13.0])})
    got = {(int(r), int(i)): f.tolist() for r, i, f in zip(c.row, c.item, c.features)}
    assert c.names == ["a_score", "a_rr", "b_score", "b_rr", "pop"]
    assert got == {
        (0, 1): [0.5, 0.5, 2.0, 1.0, 11.0],  # proposed by both
        (0, 2): [0.0, 0.0, 1.0, 0.5, 12.0],
        (0, 3): [0.9, 1.0, 0.0, 0.0, 13.0],
        (1, 0): [0.7, 1.0, 0.0, 0.0, 10.0],
    }
    roomy = merge(two_sources(), {"pop": np.array([10.0, 11.0, 12.0, 13.0])}, room=2)
    assert roomy.names == c.names and roomy.features.shape == (len(c.row), 7)
    assert np.array_equal(roomy.features[:, :5], c.features) and not roomy.features[:, 5:].any()


def test_labels_follow_the_users_held_out_items():
    c = merge(two_sources(), {})
    truth = sp.csr_matrix(np.array([[0, 0, 1, 0], [1, 0, 0, 0]]))
    got = {(int(r), int(i)): int(y) for r, i, y in zip(c.row, c.item, labels(c, truth))}
    assert got == {(0, 1): 0, (0, 2): 1, (0, 3): 0, (1, 0): 1}


def test_ranker_learns_which_feature_predicts_the_label():
    rng = np.random.default_rng(0)
    n_users, depth = 200, 10
    # source "good" ranks the held-out item first; source "noise" is random
    truth_items = rng.integers(0, 50, n_users)
    good = np.stack([np.concatenate([[t], rng.choice(np.setdiff1d(np.arange(50), [t]), depth - 1, replace=False)])
                     for t in truth_items])
    noise = np.stack([rng.permutation(50)[:depth] for _ in range(n_users)])
    sources = {"noise": (noise, rng.random((n_users, depth))),
               "good": (good, np.tile(np.linspace(1, 0.1, depth), (n_users, 1)))}
    c = merge(sources, {})
    truth = sp.csr_matrix((np.ones(n_users), (np.arange(n_users), truth_items)), shape=(n_users, 50))
    ranker = Ranker().fit(c.features, labels(c, truth))
    assert c.names[0] == "noise_score"  # the fallback order would be noise
    ids, _ = top_k(c, ranker.score(c.features), n_users, 1)
    assert (ids[:, 0] == truth_items).mean() > 0.95


def test_ranker_without_both_classes_falls_back_to_the_first_column():
    c = merge(two_sources(), {})
    r = Ranker().fit(c.features, np.zeros(len(c.row), dtype=np.int8))
    assert r.model is None and np.array_equal(r.score(c.features), c.features[:, 0])


def test_ranker_learns_how_a_user_feature_changes_what_an_item_feature_is_worth():
    """Users who come back after a long gap take what is popular, the others what their
    history points to: a sum of weighted features cannot rank both; missing values are routed."""
    rng = np.random.default_rng(0)
    n = 20_000
    away, pop, co = rng.random(n) < 0.5, rng.random(n), rng.random(n)
    y = (np.where(away, pop, co) > 0.9).astype(np.int8)
    features = np.column_stack([pop, co, away.astype(float)])
    features[rng.random(n) < 0.05, 1] = np.nan  # unknown co-occurrence
    ranker = Ranker().fit(features, y)
    test = np.column_stack([[0.95, 0.1, 0.95, 0.1], [0.1, 0.95, 0.1, 0.95], [1.0, 1.0, 0.0, 0.0]])
    s = ranker.score(test)
    assert s[0] > s[1] and s[3] > s[2]
    assert np.isfinite(ranker.score(np.array([[0.5, np.nan, 1.0]]))).all()


def test_every_user_weighs_the_same_however_many_candidates_and_positives_they_have():
    """Ten heavy users with 2,000 candidates each take half of them, those that feature
    ``a`` points to; two hundred light users with 20 candidates take one each, the one
    feature ``b`` points to. Pooled row by row, the heavy users decide and ``a`` wins; per
    user, ``b`` serves most users and must win."""
    rng = np.random.default_rng(0)
    rows, feats, ys = [], [], []
    for g in range(260):
        n = 2_000 if g < 10 else 20
        a, b = rng.random(n), rng.random(n)
        y = (a > 0.5) if g < 10 else (b == b.max()) if g < 210 else np.zeros(n, bool)  # the last 50: no positive
        rows.append(np.full(n, g)), feats.append(np.column_stack([a, b])), ys.append(y.astype(np.int8))
    features, y, groups = np.concatenate(feats), np.concatenate(ys), np.concatenate(rows)
    test = np.array([[0.9, 0.5], [0.1, 0.99]])  # item 0: a's pick, item 1: b's pick
    pooled = Ranker().fit(features, y).score(test)
    per_user = Ranker().fit(features, y, groups).score(test)
    assert pooled[0] > pooled[1] and per_user[1] > per_user[0]
    assert np.array_equal(Ranker().fit(features, y, groups + 7).score(test), per_user)  # any group labels


def test_top_k_orders_per_user_breaks_ties_by_item_and_pads():
    c = merge(two_sources(), {})
    scores = np.array([1.0, 1.0, 3.0, 0.2])  # rows in (user, item) order: (0,1) (0,2) (0,3) (1,0)
    ids, sc = top_k(c, scores, n_rows=3, k=3)
    assert ids.tolist() == [[3, 1, 2], [0, -1, -1], [-1, -1, -1]]
    assert sc[0].tolist() == [3.0, 1.0, 1.0] and np.isneginf(sc[2]).all()
