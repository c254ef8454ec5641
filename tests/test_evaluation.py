"""Ranking metrics against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from nightrecs.models import evaluation as E


def truth_of(rows: list[list[int]], n_items: int = 6) -> sp.csr_matrix:
    r = [u for u, items in enumerate(rows) for _ in items]
    c = [i for items in rows for i in items]
    return sp.csr_matrix((np.ones(len(c)), (r, c)), shape=(len(rows), n_items))


def test_per_user_metrics_by_hand():
    lists = np.array([[0, 1, 2], [3, 4, -1], [5, 0, 1]])
    truth = truth_of([[1, 5], [], [1]])
    m = E.per_user(lists, truth)
    # user 0: hit at rank 2 of 3; two relevant items
    assert m["recall"][0] == pytest.approx(0.5)
    assert m["ndcg"][0] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert m["hr"][0] == 1 and m["mrr"][0] == pytest.approx(0.5)
    assert all(math.isnan(m[k][1]) for k in E.PER_USER)  # nothing held out
    # user 2: its only relevant item at rank 3
    assert m["ndcg"][2] == pytest.approx(1 / math.log2(4)) and m["mrr"][2] == pytest.approx(1 / 3)


def test_perfect_and_empty_lists():
    truth = truth_of([[2, 3]])
    assert E.per_user(np.array([[3, 2, 0]]), truth)["ndcg"][0] == pytest.approx(1.0)
    empty = E.per_user(np.array([[-1, -1, -1]]), truth)
    assert empty["recall"][0] == 0 and empty["mrr"][0] == 0


def test_summary_coverage_and_novelty():
    lists = np.array([[0, 1], [0, 2], [4, 5]])
    truth = truth_of([[0], [2], []])
    counts = np.array([10, 1, 1, 0, 0, 0])
    s = E.summarize(lists, truth, counts)
    assert s["users"] == 2 and s["hr"] == 1.0 and s["recall"] == 1.0
    assert s["coverage"] == pytest.approx(3 / 6)  # user 2 has no truth: its list is not counted
    p = (counts + 1) / (counts.sum() + 6)
    assert s["novelty"] == pytest.approx(-np.log2(p[[0, 1, 0, 2]]).mean())
    only_first = E.summarize(lists, truth, counts, users=np.array([True, False, False]))
    assert only_first["users"] == 1 and only_first["mrr"] == 1.0


def test_paired_bootstrap_interval():
    rng = np.random.default_rng(1)
    base = rng.random(500)
    mean, lo, hi = E.paired_bootstrap(base + 0.1, base)
    assert mean == pytest.approx(0.1) and lo == pytest.approx(0.1) and hi == pytest.approx(0.1)
    noisy = base + rng.normal(0.05, 0.2, 500)
    mean, lo, hi = E.paired_bootstrap(noisy, base)
    assert lo < mean < hi and lo > 0
    mean, lo, hi = E.paired_bootstrap(base + rng.normal(0, 0.2, 500), base)
    assert lo < 0 < hi
