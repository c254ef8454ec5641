"""Business rules on one list: category cap (relaxed only to fill), exploration slots."""

from __future__ import annotations

import numpy as np
import pytest

from nightrecs.models.rules import Rules, interleave, pick

CATEGORY = np.array([0, 0, 0, 1, 1, 2, -1, 0, 2, 1])  # -1: no category, never capped


def test_no_rules_takes_the_ranking_minus_blocked():
    items, explored, relaxed = pick([5, 3, 0, 1, 2], [], CATEGORY, {3}, Rules(top_n=3))
    assert items == [5, 0, 1] and explored == set() and not relaxed


def test_category_cap_skips_to_the_next_category():
    items, _, relaxed = pick([0, 1, 2, 3, 7, 4, 6], [], CATEGORY, set(), Rules(top_n=4, max_per_category=2))
    assert items == [0, 1, 3, 4] and not relaxed


def test_cap_is_relaxed_only_when_the_list_cannot_fill():
    items, _, relaxed = pick([0, 1, 2, 7], [], CATEGORY, set(), Rules(top_n=3, max_per_category=1))
    assert items == [0, 1, 2] and relaxed


def test_exploration_slots_take_new_items_spread_down_the_list():
    ranked = [0, 3, 5, 1, 4, 8, 2, 9]
    items, explored, _ = pick(ranked, [6, 7], CATEGORY, {7}, Rules(top_n=6, new_item_quota=2))
    assert explored == {6} and len(items) == 6  # 7 is blocked, its slot goes back to the ranking
    assert items.index(6) not in (0, 5) and [i for i in items if i != 6] == [0, 3, 5, 1, 4]


def test_exploration_respects_the_category_cap():
    items, explored, _ = pick([0, 3, 5], [1, 6], CATEGORY, set(),
                              Rules(top_n=3, max_per_category=1, new_item_quota=1))
    assert explored == {6} and sorted(items) == [0, 3, 6]


def test_interleave_places_exploration_evenly():
    assert interleave(list(range(18)), [100, 101]).index(100) == 6
    assert interleave(list(range(18)), [100, 101]).index(101) == 12
    assert interleave([], [1, 2]) == [1, 2] and interleave([1, 2], []) == [1, 2]


def test_bad_rules_are_refused():
    with pytest.raises(ValueError):
        Rules(top_n=0)
    with pytest.raises(ValueError):
        Rules(max_per_category=-1)
