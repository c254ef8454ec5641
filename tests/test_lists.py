"""tasks/lists.py: the one function that makes the lists, on a world small enough to
know every list by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd

from nightrecs.models.data import Sequences, token
from nightrecs.models.rules import Rules
from nightrecs.models.seqrec import ModelConfig, Recommender, TrainConfig
from nightrecs.tasks.catalog import unix_seconds
from nightrecs.tasks.layout import RunConfig
from nightrecs.tasks.lists import Fallback, ListInputs, assemble_lists, list_maker, make_lists, reason

DATE, DAY = "2026-03-10", 86_400
AT = unix_seconds(DATE)
ACTIVE = [f"a{k}" for k in range(10)]


def world() -> ListInputs:
    """a0-a4 (country DE) touched i4, and a0-a2 i5, two days ago; a5-a9 (age band 18-24)
    touched i2 three days ago; everyone touched i0 and i1 60 days ago; i3 and i6 nobody
    (new), i7 is out of stock. a0 bought i2 yesterday. A list never shows a touched item."""
    catalog = pd.DataFrame({"item_id": [f"i{k}" for k in range(8)], "title": [f"Item {k}" for k in range(8)],
                            "category": ["A", "A", "B", "B", "C", "C", None, "A"],
                            "price": [1.0, 2, 3, 4, 5, 6, 7, 8], "in_stock": [True] * 7 + [False]})
    events = [(u, i, AT - 60 * DAY + k) for k, u in enumerate(range(10)) for i in (0, 1)]
    events += [(u, 4, AT - 2 * DAY + u) for u in range(5)] + [(u, 5, AT - 2 * DAY + 60 + u) for u in range(3)]
    events += [(u, 2, AT - 3 * DAY + u) for u in range(5, 10)]
    user, item, ts = (np.array(c) for c in zip(*events))
    seqs = Sequences.from_events(user, item, np.full(len(user), token("click")), ts, len(ACTIVE))
    users = pd.DataFrame({"user_id": ACTIVE + ["u1", "u2", "u3"],
                          "country": ["DE"] * 5 + [None] * 5 + ["DE", "NL", None],
                          "age_band": [None] * 5 + ["18-24"] * 5 + [None, "18-24", "65+"]})
    exclusions = pd.DataFrame({"user_id": ["a0"], "item_id": ["i2"],
                               "since": [pd.Timestamp(DATE, tz="UTC") - pd.Timedelta(days=1)]})
    return ListInputs(catalog, ACTIVE, seqs, users, exclusions)


def model() -> Recommender:
    text = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    return Recommender(ModelConfig(n_items=8, text_dim=4, dim=8, layers=1, heads=1, max_len=8), TrainConfig(), text)


def cfg(**kw) -> RunConfig:
    return RunConfig(root=".", date=DATE, top_n=3, segment_columns="country,age_band", **kw)


def lists(recs: pd.DataFrame) -> dict[str, list[tuple[str, str]]]:
    return {u: list(zip(g["item_id"], g["source"])) for u, g in recs.sort_values("rank").groupby("user_id")}


def test_cold_users_get_their_segment_first_then_global_popularity():
    recs = make_lists(world(), model(), cfg(), AT, model_until=AT - 7 * DAY)
    got = lists(recs)
    assert got["u1"] == [("i4", "segment"), ("i5", "segment"), ("i2", "popular")]  # DE, then everyone's
    assert got["u2"] == [("i2", "segment"), ("i4", "popular"), ("i5", "popular")]  # no NL activity: age band
    assert got["u3"] == [("i2", "popular"), ("i4", "popular"), ("i5", "popular")]  # ties by older windows, id
    reasons = dict(zip(zip(recs["user_id"], recs["item_id"]), recs["reason"]))
    assert reasons[("u1", "i4")] == "popular with country DE" and reasons[("u3", "i2")] == "popular in B"
    assert set(recs["user_id"]) == set(ACTIVE) | {"u1", "u2", "u3"}
    assert "i7" not in set(recs["item_id"])  # out of stock
    assert "i2" not in set(recs.loc[recs["user_id"] == "a0", "item_id"])  # bought
    assert lists(recs)["a0"] == [("i3", "retrieval"), ("i6", "retrieval")]  # all a0 has not touched
    for _, g in recs.groupby("user_id"):
        assert g["rank"].tolist() == list(range(1, len(g) + 1)) and (np.diff(g["score"].to_numpy()) <= 1e-7).all()
    assert (recs["reason"] != "").all()


def test_lists_as_of_an_earlier_moment_see_only_what_was_known_then():
    """inputs.at(t): a0's purchase of i2 (yesterday) was not known three days ago, and
    the last two days' touches of i4 and i5 had not happened."""
    earlier = AT - 3 * DAY + 100
    recs = make_lists(world().at(earlier), model(), cfg(), earlier, model_until=AT - 7 * DAY)
    got = lists(recs)
    assert got["u1"][0][0] == "i2"  # DE had no activity in the window then: global, where i2 leads
    assert got["u1"][0][1] == "popular"


def test_new_item_quota_explores_items_first_touched_lately_or_never():
    recs = make_lists(world(), model(), cfg(new_item_quota=1, new_item_days=1), AT, model_until=None)
    for user, items in lists(recs).items():
        assert {i for i, s in items if s == "new"} <= {"i3", "i6"} and {i for i, _ in items} & {"i3", "i6"}
        if user in ("u1", "u2", "u3"):  # no history: the slot is the most popular new item's
            assert [s for _, s in items].count("new") == 1, (user, items)


def test_co_neighbours_setting_prunes_the_co_occurrence_the_lists_use():
    def widest(k: int) -> int:  # the most similar items any item keeps
        maker = list_maker(world(), model(), cfg(co_neighbours=k), AT, model_until=None)
        return int(np.diff(maker.hybrid.co.similarity.indptr).max())

    assert widest(0) > 1 and widest(1) == 1  # 0: every co-occurring item


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


def test_retrieve_in_local_processes_stages_the_lists_made_in_process(published_shop, tiny_model, tmp_path,
                                                                        monkeypatch):
    import shutil

    from nightrecs.tasks import layout
    from nightrecs.tasks.retrieve import retrieve
    from tests.conftest import SHOP_DATE
    from nightrecs.tasks.storage import open_root

    shutil.copytree(published_shop, tmp_path / "shop")
    monkeypatch.delenv("NIGHTRECS_SPARK_MASTER", raising=False)
    monkeypatch.setenv("NIGHTRECS_LIST_CHUNK_USERS", "16")  # 120 users: 8 chunks
    run, date = tmp_path / "shop", SHOP_DATE
    root, staged, results = open_root(str(run)), {}, {}
    for workers in (1, 2):
        results[workers] = retrieve(RunConfig(root=str(run), date=date, top_n=10, base_model=tiny_model,
                                              list_workers=workers))
        staged[workers] = root.read_parquet(layout.staging(date))
    assert results[1]["where"] == "in this process" and results[2]["where"] == "in 2 processes"
    assert results[2]["chunks"] >= 8 and staged[1]["user_id"].nunique() == results[2]["users"] > 100
    pd.testing.assert_frame_equal(staged[1], staged[2], check_exact=True)
    assert {k: v for k, v in results[1].items() if k not in ("where", "lists_seconds")} == {
        k: v for k, v in results[2].items() if k not in ("where", "lists_seconds")}
