"""The hybrid ranker (models/hybrid.py) on a shop where co-occurrence carries the signal."""

from __future__ import annotations

import numpy as np

from nightrecs.models.baselines import EASE, top_n
from nightrecs.models.data import Sequences, holdout, interactions, token
from nightrecs.models.evaluation import per_user
from nightrecs.models.hybrid import ALL_TIME, Hybrid, ItemAttributes
from nightrecs.models.retrieval import build_index
from nightrecs.models.seqrec import ModelConfig, Recommender, TrainConfig

N_ITEMS, N_USERS, T0, DAY = 60, 300, 1_700_000_000, 86_400


def daily_walks() -> Sequences:
    """User u walks the items from a random start, item i then i + 1, one step a day."""
    rng = np.random.default_rng(0)
    users, items, ts = [], [], []
    for u in range(N_USERS):
        start, length = rng.integers(N_ITEMS), rng.integers(8, 16)
        users += [u] * length
        items += [(start + t) % N_ITEMS for t in range(length)]
        ts += [T0 + t * DAY + u for t in range(length)]
    return Sequences.from_events(np.array(users), np.array(items), np.full(len(users), token("click")),
                                 np.array(ts), N_USERS)


def test_ranker_is_learned_and_lists_respect_exclusions():
    seqs = daily_walks()
    text = np.random.default_rng(1).normal(size=(N_ITEMS, 8)).astype(np.float32)
    rec = Recommender(ModelConfig(n_items=N_ITEMS, text_dim=8, dim=16, layers=1, max_len=12),
                      TrainConfig(epochs=1), text)  # barely trained: co-occurrence must carry it
    at = T0 + 12 * DAY
    hybrid = Hybrid(rec, N_ITEMS, depth=20, window_days=1, fit_windows=3).fit(seqs, at - 3 * DAY)
    h = holdout(seqs, N_ITEMS, at - 3 * DAY)
    seen = interactions(h.past, N_ITEMS)
    allowed = np.ones(N_ITEMS, bool)
    allowed[[5, 6]] = False  # out of stock
    ids, scores = hybrid.recommend(h.past, h.warm, seen, h.start, 10, allowed=allowed)
    assert ids.shape == (len(h.warm), 10) and not np.isin(ids, [5, 6]).any()
    for row, u in zip(ids, h.warm):
        assert not set(row[row >= 0]) & set(seen[u].indices)
    assert ((scores[ids >= 0] > 0) & (scores[ids >= 0] < 1)).all()
    assert (np.diff(scores, axis=1) <= 1e-12).all()  # best first
    assert np.nanmean(per_user(ids, h.truth[h.warm])["hr"]) > 0.9  # the next step is nearly always listed
    learned, hybrid.ranker.model = hybrid.ranker.model, None  # unlearned: the model score's order
    assert np.nanmean(per_user(hybrid.recommend(h.past, h.warm, seen, h.start, 10)[0], h.truth[h.warm])["hr"]) < 0.7
    hybrid.ranker.model = learned
    given = rec.user_vectors(h.past, h.warm.tolist(), h.start)  # as the embed step writes them
    small_batches = hybrid.recommend(h.past, h.warm, seen, h.start, 10, allowed=allowed, vectors=given, batch=7)
    assert np.array_equal(small_batches[0], ids) and np.allclose(small_batches[1], scores)
    # the popularity sources without a dense users x items block: as the dense top-n
    for source, popularity in (("trending", hybrid.popularity), ("popular", hybrid.item_features["popularity_365d"])):
        dense = top_n(np.broadcast_to(popularity, (len(h.warm), N_ITEMS)), 20, seen[h.warm])[0]
        assert np.array_equal(hybrid._popular(seen[h.warm], source)[0], dense)


def test_pruned_co_occurrence_still_finds_the_next_step():
    """Each item keeps only its 4 most similar items: the walk's next items are among them,
    so the lists stay as good, and a user's co-occurrence scores come from those alone."""
    seqs = daily_walks()
    text = np.random.default_rng(1).normal(size=(N_ITEMS, 8)).astype(np.float32)
    rec = Recommender(ModelConfig(n_items=N_ITEMS, text_dim=8, dim=16, layers=1, max_len=12), TrainConfig(epochs=1), text)
    at = T0 + 9 * DAY
    hybrid = Hybrid(rec, N_ITEMS, depth=20, window_days=1, fit_windows=3, co_neighbours=4).fit(seqs, at)
    assert (np.diff(hybrid.co.similarity.indptr) <= 4).all() and hybrid.co.similarity.nnz > 0
    h = holdout(seqs, N_ITEMS, at)
    ids, _ = hybrid.recommend(h.past, h.warm, interactions(h.past, N_ITEMS), h.start, 10)
    assert np.nanmean(per_user(ids, h.truth[h.warm])["hr"]) > 0.9


def test_co_occurrence_reads_the_history_not_only_the_exclusions():
    """At serving time only bought or rated items are excluded; a user who bought nothing
    still gets co-occurrence candidates from what they viewed."""
    seqs = daily_walks()
    rec = Recommender(ModelConfig(n_items=N_ITEMS, text_dim=8, dim=16, layers=1, max_len=12), TrainConfig(epochs=1),
                      np.random.default_rng(1).normal(size=(N_ITEMS, 8)).astype(np.float32))
    at = T0 + 12 * DAY
    hybrid = Hybrid(rec, N_ITEMS, depth=20).fit(seqs, at)
    users = np.flatnonzero([len(a) for a in seqs.items])
    nothing_bought = interactions(seqs.tail(0), N_ITEMS)
    c = hybrid._candidates(seqs, interactions(seqs, N_ITEMS), users, nothing_bought, at,
                           build_index(hybrid.items, len(users)))
    co = c.features[:, c.names.index("co_occurrence_score")]
    assert len(np.unique(c.row[co > 0])) == len(users)


def test_co_occurrence_features_sum_the_similarity_over_all_and_the_recent_items():
    """``co_occurrence_mean``: a candidate's similarity summed over the user's items, per
    item; ``co_occurrence_recent``: over their ``recent_items`` latest only (the same sums
    for a user with no more items than that), per recent item."""
    seqs = daily_walks()  # 8-15 items a user
    rec = Recommender(ModelConfig(n_items=N_ITEMS, text_dim=8, dim=16, layers=1, max_len=12), TrainConfig(epochs=1),
                      np.random.default_rng(1).normal(size=(N_ITEMS, 8)).astype(np.float32))
    at = T0 + 20 * DAY
    hybrid = Hybrid(rec, N_ITEMS, depth=10, recent_items=10).fit(seqs, at)
    users = np.arange(40)
    history = interactions(seqs, N_ITEMS)
    c = hybrid._candidates(seqs, history, users, history, at, build_index(hybrid.items, len(users)))
    f = {n: c.features[:, k] for k, n in enumerate(c.names)}
    sim = hybrid.co.similarity.toarray()
    lengths = np.array([len(seqs.items[u]) for u in users])
    assert (lengths <= 10).any() and (lengths > 10).any()  # both kinds of user
    for k in range(len(c.row)):
        mine = seqs.items[users[c.row[k]]]
        assert np.isclose(f["co_occurrence_mean"][k], sim[mine, c.item[k]].sum() / len(mine))
        assert np.isclose(f["co_occurrence_recent"][k], sim[mine[-10:], c.item[k]].sum() / min(len(mine), 10))


def test_catalog_attributes_become_features():
    """Category shares and price gaps are computed from the user's history; unknown stays NaN."""
    seqs = daily_walks()
    rec = Recommender(ModelConfig(n_items=N_ITEMS, text_dim=8, dim=16, layers=1, max_len=12), TrainConfig(epochs=1),
                      np.random.default_rng(1).normal(size=(N_ITEMS, 8)).astype(np.float32))
    category = np.arange(N_ITEMS) % 3
    category[0] = -1
    log_price = np.log(1.0 + np.arange(N_ITEMS, dtype=float))
    log_price[1] = np.nan
    at = T0 + 12 * DAY
    hybrid = Hybrid(rec, N_ITEMS, depth=20, attributes=ItemAttributes(category, log_price)).fit(seqs, at)
    history = interactions(seqs, N_ITEMS)
    users = np.array([3, 4])
    c = hybrid._candidates(seqs, history, users, history, at, build_index(hybrid.items, 2))
    f = {n: c.features[:, k] for k, n in enumerate(c.names)}
    for r, u in enumerate(users):
        mine = history[u].indices
        for j in np.flatnonzero(c.row == r):
            item = c.item[j]
            share = np.nan if item == 0 else np.mean(category[mine] == category[item])
            gap = abs(log_price[item] - np.nanmean(log_price[mine])) if item != 1 else np.nan
            assert np.allclose(f["category_affinity"][j], share, equal_nan=True)
            assert np.allclose(f["price_gap"][j], gap, equal_nan=True)
            assert f["history_length"][j] == np.log1p(len(mine))


def test_windows_the_model_trained_on_leave_its_features_unknown():
    """A ranker learned where the model had seen the labels would trust it too much."""
    seqs = daily_walks()
    rec = Recommender(ModelConfig(n_items=N_ITEMS, text_dim=8, dim=16, layers=1, max_len=12), TrainConfig(epochs=1),
                      np.random.default_rng(1).normal(size=(N_ITEMS, 8)).astype(np.float32))
    at = T0 + 12 * DAY
    hybrid = Hybrid(rec, N_ITEMS, depth=20, model_until=at).fit(seqs, at)
    history = interactions(seqs, N_ITEMS)
    users = np.flatnonzero([len(a) for a in seqs.items])
    index = build_index(hybrid.items, len(users))
    before = hybrid._candidates(seqs, history, users, history, at - DAY, index)
    assert np.isnan(before.features[:, :2]).all() and before.names[:2] == ["model_score", "model_rr"]
    assert not np.isnan(before.features[:, 2]).any()
    served = hybrid._candidates(seqs, history, users, history, at, index)
    assert np.isfinite(served.features[:, :2]).all() and (served.features[:, 1] > 0).any()


def test_a_sparse_shop_falls_back_on_a_longer_popularity_window():
    """Items 0-4 were what people took all year; the last week before the last window saw
    only stray touches of items 50-55. New users in the last window take items 0-4: the
    fallback (cold start, top-up) must rank by the longer window, not by last week's noise."""
    at = T0 + 400 * DAY
    users, items, ts = [], [], []
    for u in range(100):  # a year of steady taste, one touch every ~3 days
        users.append(u), items.append(u % 5), ts.append(T0 + 30 * DAY + 3 * u * DAY)
    for k, item in enumerate(range(50, 56)):  # last week's noise
        users.append(100 + k), items.append(item), ts.append(at - 10 * DAY)
    for u in range(110, 140):  # the last window: new users take what everyone took
        users.append(u), items.append(u % 5), ts.append(at - 3 * DAY)
    seqs = Sequences.from_events(np.array(users), np.array(items), np.full(len(users), token("click")),
                                 np.array(ts), 140)
    rec = Recommender(ModelConfig(n_items=N_ITEMS, text_dim=8, dim=16, layers=1, max_len=12), TrainConfig(epochs=1),
                      np.random.default_rng(1).normal(size=(N_ITEMS, 8)).astype(np.float32))
    hybrid = Hybrid(rec, N_ITEMS, depth=20).fit(seqs, at)
    assert hybrid.fallback_days is not None and hybrid.fallback_days > 7  # a longer window, or all time
    assert set(hybrid.fallback_order()[0][:5].tolist()) == {0, 1, 2, 3, 4}


def test_ease_scores_every_candidate_within_its_item_budget():
    """EASE is fitted on the ``ease_items`` most touched items only (its solve is cubic in
    items); every candidate, whichever source proposed it, gets its EASE score for the
    user, NaN outside those items; EASE's own candidates are its best-scored unseen items."""
    seqs = daily_walks()
    rec = Recommender(ModelConfig(n_items=N_ITEMS, text_dim=8, dim=16, layers=1, max_len=12), TrainConfig(epochs=1),
                      np.random.default_rng(1).normal(size=(N_ITEMS, 8)).astype(np.float32))
    at = T0 + 12 * DAY
    hybrid = Hybrid(rec, N_ITEMS, depth=5, ease_items=30).fit(seqs, at)
    history = interactions(seqs, N_ITEMS)
    counts = np.asarray(history.sum(0)).ravel()
    assert len(hybrid.ease_cols) == 30 and counts[hybrid.ease_cols].min() >= np.sort(counts)[-30]
    expected = np.asarray(history[:, hybrid.ease_cols] @ EASE(200.0).fit(history[:, hybrid.ease_cols]).weights)
    users = np.array([3, 4, 5])
    c = hybrid._candidates(seqs, history, users, history, at, build_index(hybrid.items, len(users)))
    f = {n: c.features[:, k] for k, n in enumerate(c.names)}
    pos = hybrid.ease_pos[c.item]
    assert np.isnan(f["ease"][pos < 0]).all() and (pos < 0).any()
    assert np.allclose(f["ease"][pos >= 0], expected[users[c.row[pos >= 0]], pos[pos >= 0]], atol=1e-5)
    for r, u in enumerate(users):
        own = c.item[(c.row == r) & (f["ease_rr"] > 0)]
        unseen = np.setdiff1d(np.flatnonzero(expected[u] > 0), history[u, hybrid.ease_cols].indices)
        best = hybrid.ease_cols[unseen[np.argsort(-expected[u, unseen], kind="stable")[:5]]]
        assert set(own) == set(best)


def test_the_fallback_can_be_all_time_popularity():
    """What everyone took in the shop's first year, nobody took in the last one (only stray
    touches of items 50-55); new users in the last weeks take those classics again. Only
    all-time popularity lists them for the first of those users, so the choice, pooled over
    the learning windows, is all time, and the fallback lists the classics first."""
    at = T0 + 800 * DAY
    users, items, ts = [], [], []
    for u in range(100):
        users.append(u), items.append(u % 5), ts.append(T0 + 3 * u * DAY)
    for k in range(30):
        users.append(100 + k), items.append(50 + k % 6), ts.append(T0 + (450 + 10 * k) * DAY)
    for u in range(130, 160):
        users.append(u), items.append(u % 5), ts.append(at - 3 * DAY - (u - 130) // 10 * 7 * DAY)
    seqs = Sequences.from_events(np.array(users), np.array(items), np.full(len(users), token("click")),
                                 np.array(ts), 160)
    rec = Recommender(ModelConfig(n_items=N_ITEMS, text_dim=8, dim=16, layers=1, max_len=12), TrainConfig(epochs=1),
                      np.random.default_rng(1).normal(size=(N_ITEMS, 8)).astype(np.float32))
    hybrid = Hybrid(rec, N_ITEMS, depth=20).fit(seqs, at)
    assert hybrid.fallback_days == ALL_TIME
    assert set(hybrid.fallback_order()[0][:5].tolist()) == {0, 1, 2, 3, 4}
    first_year = hybrid.fallback_order(among=np.arange(100))  # a segment of the first year's users
    assert set(first_year[0][:5].tolist()) == {0, 1, 2, 3, 4} and first_year[1][4] > 0


def test_learning_stops_at_the_start_of_the_data(monkeypatch):
    """A shop with 16 days of events and too few users to fill the learning set looks back
    until nobody has a past, not 52 windows: at a million users each useless window cost
    half a minute, and evaluate took 25 minutes. The skipped windows held no examples, so
    the learning set is the one a search of all 52 windows gathers."""
    import nightrecs.models.hybrid as hybrid_module

    seqs = daily_walks()
    rec = Recommender(ModelConfig(n_items=N_ITEMS, text_dim=8, dim=16, layers=1, max_len=12), TrainConfig(epochs=1),
                      np.random.default_rng(1).normal(size=(N_ITEMS, 8)).astype(np.float32))
    at = T0 + 16 * DAY
    cuts = []
    monkeypatch.setattr(hybrid_module, "holdout", lambda s, n, start: cuts.append(start) or holdout(s, n, start))
    stopped = Hybrid(rec, N_ITEMS, depth=20, window_days=2, fit_windows=2, fit_users=10**6).learning_set(seqs, at)
    assert len(cuts) == 7 and min(cuts) > T0  # windows from day 14 back to day 2; day 0's has no past
    assert stopped.windows == 7 and stopped.users > 0
    everything = Hybrid(rec, N_ITEMS, depth=20, window_days=2, fit_windows=2, fit_users=10**6)
    monkeypatch.setattr(Sequences, "first_time", lambda self, default: -10**12)  # as if the data went back forever
    searched = everything.learning_set(seqs, at)
    assert len(cuts) == 7 + 52
    assert np.array_equal(searched.y, stopped.y) and np.array_equal(searched.features, stopped.features, equal_nan=True)
    assert searched.fallback_hits == stopped.fallback_hits
