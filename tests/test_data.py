"""models/data.py: cuts, tails and positives, the one view of histories every model reads."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from nightrecs.models.data import (DISLIKE, Sequences, holdout, interactions, item_reach, row_sets, token,
                                   values_at)
from nightrecs.models.seqrec import make_batch

CLICK, BUY = token("click"), token("purchase")


def seqs() -> Sequences:
    return Sequences([np.array([0, 1, 2, 3]), np.array([4, 1])], [np.array([CLICK, DISLIKE, BUY, DISLIKE]),
                                                                  np.array([CLICK, CLICK])],
                     [np.array([1, 2, 10, 11]), np.array([3, 12])])


def test_tail_truncates_items_types_and_times_together():
    """Hybrid.update fits co-occurrence on each user's last items; their types and times
    must be cut with them (they were not)."""
    t = seqs().tail(2, users=np.array([0]))
    assert [a.tolist() for a in t.items] == [[2, 3], []]
    assert [a.tolist() for a in t.types] == [[BUY, DISLIKE], []]
    assert [a.tolist() for a in t.ts] == [[10, 11], []]


def test_dislikes_are_history_but_never_positives():
    s = seqs()
    assert interactions(s, 5).toarray()[0].tolist() == [1, 0, 1, 0, 0]  # no popularity, no co-occurrence
    assert interactions(s, 5, positive=False).toarray()[0].tolist() == [1, 1, 1, 1, 0]  # never listed again
    h = holdout(s, 5, start=10)
    assert h.truth[0].indices.tolist() == [2]  # item 3, disliked after the cut, is no hit
    assert h.truth[1].indices.tolist() == [1]  # user 1's click on item 1 is one
    assert [a.tolist() for a in h.past.types] == [[CLICK, DISLIKE], [CLICK]]  # the model still sees the dislike
    batch = make_batch(s, [(0, 4)], max_len=4)
    targets = batch.targets[0][batch.targets[0] > 0].tolist()
    assert targets == [3]  # next items 1 (disliked), 2, 3 (disliked): only item 2 (1-based 3) is a target


def test_holdout_is_each_users_set_difference():
    """The holdout works on all events at once; per user it must be the new positive items
    after the cut (sorted, once each), with warm and cold users split by their past."""
    rng = np.random.default_rng(3)
    n_items, lengths = 30, rng.integers(0, 12, 200)
    s = Sequences([rng.integers(0, n_items, n) for n in lengths],
                  [rng.choice([CLICK, BUY, DISLIKE], n) for n in lengths],
                  [np.sort(rng.integers(0, 100, n)) for n in lengths])
    h = holdout(s, n_items, start=60)
    for u, (items, types, ts) in enumerate(zip(s.items, s.types, s.ts)):
        cut = int(np.searchsorted(ts, 60))
        want = np.setdiff1d(items[cut:][types[cut:] != DISLIKE], items[:cut])
        assert h.truth[u].indices.tolist() == want.tolist()
        assert (u in h.warm) == (len(want) > 0 and cut > 0) and (u in h.cold) == (len(want) > 0 and cut == 0)
    assert h.truth.has_canonical_format and (h.truth.data == 1).all()
    empty = holdout(Sequences([], [], []), n_items, start=60)
    assert empty.truth.shape == (0, n_items) and len(empty.warm) == len(empty.cold) == 0


def test_item_reach_is_the_interaction_matrix_column_sums_per_window():
    """One sort for every popularity window must count what a matrix per window counts:
    users (once each, repeats and dislikes aside) who touched the item since the start."""
    rng = np.random.default_rng(4)
    n_items, lengths = 25, rng.integers(0, 15, 300)
    s = Sequences([rng.integers(0, n_items, n) for n in lengths],
                  [rng.choice([CLICK, BUY, DISLIKE], n) for n in lengths],
                  [np.sort(rng.integers(0, 100, n)) for n in lengths])
    since = [None, 0, 50, 90, 100]
    for got, start in zip(item_reach(s, n_items, since), since):
        want = np.asarray(interactions(s, n_items, since=start).sum(0)).ravel()
        np.testing.assert_array_equal(got, want)
    assert want.sum() == 0 and item_reach(s, n_items, [None])[0].sum() > 0
    only_dislikes = Sequences([np.array([1, 2])], [np.array([DISLIKE, DISLIKE])], [np.array([1, 2])])
    for empty in (Sequences([], [], []), only_dislikes):
        assert [c.tolist() for c in item_reach(empty, 3, [None, 5])] == [[0, 0, 0]] * 2


def test_values_at_reads_stored_and_absent_pairs_in_any_order_and_block_size():
    rng = np.random.default_rng(0)
    m = sp.random(50, 40, 0.2, format="csr", random_state=1)
    m = (m @ sp.random(40, 40, 0.1, format="csr", random_state=2)).tocsr()  # a product: unsorted columns
    rows, cols = rng.integers(0, 50, 3000), rng.integers(0, 40, 3000)
    want = m.toarray()[rows, cols]
    assert (want != 0).any() and (want == 0).any()
    for at_once in (1, 77, 40 * 50, 2 ** 24):
        np.testing.assert_array_equal(values_at(m, rows, cols, at_once), want)
    np.testing.assert_array_equal(values_at(m.toarray(), rows, cols), want)  # a dense block as it is
    sparse = sp.random(50, 400, 0.02, format="csr", random_state=3)  # read by its keys, not in blocks
    cols = rng.integers(0, 400, 3000)
    want = sparse.toarray()[rows, cols]
    assert (want != 0).any()
    np.testing.assert_array_equal(values_at(sparse, rows, cols), want)
    odd = sp.csr_matrix(([1.0, 2.0, 4.0], [5, 1, 5], [0, 3, 3]), shape=(2, 400))  # unsorted, a duplicate
    assert values_at(odd, np.array([0, 0, 0, 1]), np.array([5, 1, 2, 5])).tolist() == [5.0, 2.0, 0.0, 0.0]
    assert values_at(sp.csr_matrix((3, 0)), np.zeros(0, int), np.zeros(0, int)).shape == (0,)


def test_row_sets_are_each_rows_stored_columns_in_the_asked_order():
    m = sp.random(50, 30, density=0.2, format="csr", random_state=3)
    rows = np.array([7, 0, 49, 7, 12])
    assert row_sets(m, rows) == [set(np.flatnonzero(m[r].toarray()).tolist()) for r in rows]
    assert row_sets(m, []) == []
