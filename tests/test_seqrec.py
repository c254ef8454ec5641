"""The two-tower model (models/seqrec.py) on tiny synthetic shops with known structure."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from nightrecs.models.data import Sequences, time_split, token
from nightrecs.models import seqrec
from nightrecs.models.baselines import top_n
from nightrecs.models.seqrec import ModelConfig, Recommender, TrainConfig, make_batch, query_batch, training_windows

RATING = token("rating")
T0 = 1_700_000_000
N_ITEMS, N_USERS = 60, 300


def successor_shop(seed: int = 0) -> Sequences:
    """Every user walks the items in order from a random start: item i is followed by i + 1."""
    rng = np.random.default_rng(seed)
    users, items, ts = [], [], []
    for u in range(N_USERS):
        start, length = rng.integers(N_ITEMS), rng.integers(6, 20)
        for t in range(length):
            users.append(u)
            items.append((start + t) % N_ITEMS)
            ts.append(T0 + t * 3600)
    users, items, ts = map(np.array, (users, items, ts))
    return Sequences.from_events(users, items, np.full(len(users), RATING), ts, N_USERS)


def last_event_split(seqs: Sequences):
    """Each user's last event is held out (all of them happen at different times, so the
    split is per user rather than by date here)."""
    cut = [len(a) - 1 for a in seqs.items]
    split_at = [int(t[c]) for t, c in zip(seqs.ts, cut)]
    train = Sequences([a[:c] for a, c in zip(seqs.items, cut)], [a[:c] for a, c in zip(seqs.types, cut)],
                      [a[:c] for a, c in zip(seqs.ts, cut)])
    return train, split_at


def small(epochs: int = 30, **kw) -> tuple[ModelConfig, TrainConfig]:
    return (ModelConfig(n_items=N_ITEMS, text_dim=8, dim=32, layers=1, heads=2, max_len=12, dropout=0.1),
            TrainConfig(epochs=epochs, batch_size=32, lr=5e-3, negatives=32, patience=8, **kw))


def text(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(N_ITEMS, 8)).astype(np.float32)


def test_sequences_windows_and_batches_keep_order_and_cover_every_target():
    seqs = successor_shop()
    assert all((np.diff(t) > 0).all() for t in seqs.ts)
    windows = training_windows(seqs, max_len=12)
    b = make_batch(seqs, windows, max_len=12)
    n_targets = sum(len(a) - 1 for a in seqs.items)
    assert int((b.targets > 0).sum()) == n_targets  # every event but each user's first, once
    real = b.items > 0
    # left padded; each target is the item after its input (1-based ids)
    assert bool((b.targets[real] == (b.items[real] % N_ITEMS) + 1).all())
    assert bool((b.types[~real] == 0).all()) and bool((b.gaps[~real] == 0).all())
    q = query_batch(seqs, [0, 1], now=T0 + 10**6, max_len=12)
    assert q.items.shape == (2, 12) and int(q.items[0, -1]) == seqs.items[0][-1] + 1


def test_learns_the_successor_and_stops_early():
    seqs = successor_shop()
    train, _ = last_event_split(seqs)
    rec = Recommender(*small(epochs=80), text())
    truth = sp.csr_matrix((np.ones(N_USERS), (np.arange(N_USERS), [a[-1] for a in seqs.items])),
                          shape=(N_USERS, N_ITEMS))
    stats = rec.fit(train, (train, truth, T0 + 10**6))
    assert stats["best_valid_recall"] >= 0.9  # a random ranking gets 10/60
    assert stats["epochs"] < 80  # early stopping ended it
    users = list(range(N_USERS))
    scores = rec.user_vectors(train, users, T0 + 10**6) @ rec.item_vectors().T
    assert np.isfinite(scores).all()
    top1 = scores.argmax(1)
    assert (top1 == np.array([a[-1] for a in seqs.items])).mean() >= 0.5  # chance: 1/60


def test_an_examples_budget_stops_training_and_says_so(caplog):
    seqs = successor_shop()
    n_targets = sum(len(a) - 1 for a in seqs.items)  # one epoch's training targets
    rec = Recommender(*small(epochs=10, max_examples=n_targets * 2 + 1), text())
    stats = rec.fit(seqs)
    assert stats["budget_hit"].endswith(f"max_examples {n_targets * 2 + 1:,}")
    assert stats["epochs"] == 3 and n_targets * 2 < stats["examples"] < n_targets * 3  # stopped inside epoch 3
    assert "training budget hit" in caplog.text
    assert Recommender(*small(epochs=2), text()).fit(seqs)["budget_hit"] is None


def test_recommend_in_chunks_equals_one_dense_pass_and_validation_samples(monkeypatch):
    """recommend scores users a few at a time (bounded memory whatever the shop's size),
    with the same lists as one dense top_n; early stopping scores a fixed user sample."""
    seqs = successor_shop()
    rec = Recommender(*small(epochs=1, max_valid_users=40), text())
    rec.fit(seqs)
    users, now = list(range(N_USERS)), T0 + 10**6
    seen = sp.csr_matrix((np.ones(N_USERS), (np.arange(N_USERS), [a[0] for a in seqs.items])),
                         shape=(N_USERS, N_ITEMS))
    want = top_n(rec.user_vectors(seqs, users, now) @ rec.item_vectors().T, 10, seen)
    monkeypatch.setattr(seqrec, "SCORES_AT_ONCE", 7 * N_ITEMS)  # 7 users a chunk, 43 chunks
    ids, scores = rec.recommend(seqs, users, now, 10, seen)
    np.testing.assert_array_equal(ids, want[0])
    np.testing.assert_allclose(scores, want[1], rtol=1e-6)
    assert rec.recommend(seqs, [], now, 10)[0].shape == (0, 10)
    scored = []
    monkeypatch.setattr(Recommender, "recommend", lambda self, s, u, *a: (scored.append(list(u)),
                                                                          (np.zeros((len(u), 10), int), None))[1])
    truth = sp.csr_matrix((np.ones(N_USERS), (np.arange(N_USERS), np.zeros(N_USERS, int))), shape=(N_USERS, N_ITEMS))
    rec.recall(seqs, truth, now)
    rec.recall(seqs, truth, now)
    assert len(scored[0]) == 40 and scored[0] == scored[1]  # the same 40 users each epoch


def test_time_split_truth_is_new_items_after_the_split():
    items = [np.array([0, 1, 2, 1]), np.array([3]), np.array([4, 5])]
    ts = [np.array([1, 2, 10, 11]), np.array([12]), np.array([1, 2])]
    seqs = Sequences(items, [np.full(len(a), RATING) for a in items], ts)
    train, (hist, truth, now) = time_split(seqs, 6, split_at=10)
    assert [a.tolist() for a in train.items] == [[0, 1], [], [4, 5]] and hist is train and now == 10
    # user 0: item 2 is new after the split, item 1 was seen; user 1 has no history to
    # predict from, user 2 nothing after the split
    assert truth[0].indices.tolist() == [2] and truth[1].nnz == 0 and truth[2].nnz == 0


def test_padding_and_one_event_users_give_finite_vectors():
    seqs = Sequences([np.array([5]), np.array([], dtype=np.int64)], [np.array([RATING]), np.array([], dtype=np.int64)],
                     [np.array([T0]), np.array([], dtype=np.int64)])
    rec = Recommender(*small(), text())
    assert np.isfinite(rec.user_vectors(seqs, [0, 1], T0 + 60)).all()


def test_items_without_enough_interactions_are_text_only():
    seqs = successor_shop()
    rec = Recommender(*small(epochs=1), text())
    rec.fit(seqs)
    counts = np.bincount(np.concatenate(seqs.items), minlength=N_ITEMS)
    has_id = rec.model.items.has_id[1:].cpu().numpy()
    assert has_id.tolist() == (counts >= 2).tolist()
    # an item nobody touched: its vector is its projected text, nothing else
    cold = np.zeros((N_ITEMS, 8), np.float32)
    rec.text[1:] = torch.as_tensor(cold)
    rec.model.items.has_id[1:] = False
    bias = rec.model.items.text_proj.bias.detach().cpu().numpy()
    assert np.allclose(rec.item_vectors(), bias, atol=1e-6)


def test_query_only_user_is_embedded_from_query_text():
    t = text()
    queries = t[[7]] + 0.01  # a query worded like item 7's text
    rec = Recommender(*small(), np.concatenate([t, queries]))
    seqs = Sequences([np.array([N_ITEMS])], [np.array([token("search")])], [np.array([T0])])
    vec = rec.user_vectors(seqs, [0], T0 + 60)
    assert vec.shape == (1, 32) and np.isfinite(vec).all()
    assert rec.item_vectors().shape == (N_ITEMS, 32)  # queries are never candidates


def test_resume_after_a_crash_repeats_the_uninterrupted_run(tmp_path):
    seqs = successor_shop()
    whole = Recommender(*small(epochs=4), text())
    whole.fit(seqs)
    first = Recommender(*small(epochs=2), text())
    first.fit(seqs, checkpoint_dir=tmp_path / "ckpt")  # the "crash" after epoch 2
    assert (tmp_path / "ckpt" / "checkpoint.safetensors").exists()
    resumed = Recommender(*small(epochs=4), text())
    stats = resumed.fit(seqs, checkpoint_dir=tmp_path / "ckpt")
    assert stats["epochs"] == 4 and len(stats["history"]) == 2  # epochs 3 and 4 only
    for k, v in whole.model.state_dict().items():
        assert torch.allclose(v, resumed.model.state_dict()[k], atol=1e-5), k


def test_save_and_warm_start(tmp_path):
    seqs = successor_shop()
    rec = Recommender(*small(epochs=2), text())
    rec.fit(seqs)
    rec.save(tmp_path / "m")
    warm = Recommender(*small(epochs=0), text())
    warm.load_weights(tmp_path / "m")
    assert np.allclose(warm.item_vectors(), rec.item_vectors())
    # next night's catalog: one new item first, the others in reverse order; their ID
    # rows follow them by the row map, the new item starts as text only
    model_cfg, train_cfg = small(epochs=0)
    model_cfg.n_items = N_ITEMS + 1
    moved = Recommender(model_cfg, train_cfg, np.concatenate([text()[:1], text()[::-1]]))
    moved.load_weights(tmp_path / "m", np.array([-1, *range(N_ITEMS - 1, -1, -1)]))
    assert np.allclose(moved.item_vectors()[1:], rec.item_vectors()[::-1], atol=1e-6)
    assert not moved.model.items.has_id[1] and moved.model.items.has_id[2:].cpu().tolist() == \
        rec.model.items.has_id[1:].flip(0).cpu().tolist()
    with pytest.raises(FileNotFoundError):
        warm.load_weights(tmp_path / "missing")


def test_full_mode_fine_tunes_the_text_encoder(tiny_model):
    from nightrecs.models.seqrec import TextEncoder
    from nightrecs.models.text import TextTower

    tower = TextTower(tiny_model)
    texts = [f"item {i} of shelf {i % 6}" + " long" * (i % 5) for i in range(N_ITEMS)]
    encoder = TextEncoder(tower, texts)
    with torch.no_grad():  # tokenized once up front == tokenized per call
        rows = [5, 0, 3]
        assert torch.allclose(encoder(rows), tower([texts[r] for r in rows], 64), atol=1e-5)
    before = {k: v.clone() for k, v in tower.encoder.state_dict().items()}
    model_cfg, train_cfg = small(epochs=1)
    model_cfg.text_dim = 32  # the tiny BERT's width
    rec = Recommender(model_cfg, train_cfg, np.zeros((N_ITEMS, 32), np.float32), encoder=encoder)
    stats = rec.fit(successor_shop())
    assert stats["epochs"] == 1
    changed = [k for k, v in tower.encoder.state_dict().items() if not torch.equal(v.cpu(), before[k])]
    assert changed  # the encoder's weights were trained, not only the heads
    ids, scores = rec.recommend(successor_shop(), [0, 1], T0 + 10**6, 5)
    assert ids.shape == (2, 5) and np.isfinite(scores).all()


def test_user_features_reach_the_user_vector():
    seqs = successor_shop()
    model_cfg, train_cfg = small(epochs=1)
    model_cfg.user_features = 3
    seqs.features = np.zeros((N_USERS, 3), np.float32)
    rec = Recommender(model_cfg, train_cfg, text())
    rec.fit(seqs)
    same = rec.user_vectors(seqs, [0], T0 + 60)
    seqs.features[0] = [1.0, -2.0, 0.5]
    assert not np.allclose(rec.user_vectors(seqs, [0], T0 + 60), same)
