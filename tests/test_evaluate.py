"""The evaluation step and the publish gate, on a shop with known structure (every user
walks the catalog in order), where a trained model beats an untrained one."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from tasks import layout
from tasks.demo_data import ShopSpec, make_catalog
from tasks.evaluate import PublishBlocked, evaluate, gate, holdout
from tasks.layout import RunConfig
from tasks.storage import open_root
from tasks.train import model_meta, train_model

DATE, CHAMPION_DATE = "2026-03-10", "2026-03-09"
N_ITEMS, N_USERS = 60, 300


def write_shop(root, date: str) -> None:
    """Catalog, users and the ``histories`` feature table as of ``date``: user u walks the
    items from a random start, item i followed by i + 1, one step every 8 hours."""
    rng = np.random.default_rng(0)
    end = pd.Timestamp("2026-03-10", tz="UTC")
    rows = []
    for u in range(N_USERS):
        start, length = rng.integers(N_ITEMS), rng.integers(6, 20)
        t0 = end - pd.Timedelta(days=20) + pd.Timedelta(hours=int(rng.integers(0, 16 * 24)))
        steps = [(f"i{(start + s) % N_ITEMS:02d}", t0 + pd.Timedelta(hours=8 * s)) for s in range(length)]
        steps = [(i, t) for i, t in steps if t < pd.Timestamp(date, tz="UTC")]
        if steps:
            rows.append((f"u{u:03d}", [i for i, _ in steps], [2.0] * len(steps), [t for _, t in steps]))
    root.write_parquet(layout.features(date, "histories/part-0.parquet"), pa.table({
        "user_id": [r[0] for r in rows], "item_ids": [r[1] for r in rows], "weights": [r[2] for r in rows],
        "ts": pa.array([r[3] for r in rows], pa.list_(pa.timestamp("us", tz="UTC")))}))
    catalog = make_catalog(ShopSpec(items=N_ITEMS), np.random.default_rng(1))  # distinct texts
    root.write_parquet(layout.validated(date, "catalog"), catalog.assign(item_id=[f"i{i:02d}" for i in range(N_ITEMS)]))
    root.write_parquet(layout.validated(date, "users"), pd.DataFrame({"user_id": [f"u{u:03d}" for u in range(N_USERS)]}))
    root.write_parquet(layout.staging(date), pd.DataFrame({
        "user_id": ["u000", "u000"], "rank": [1, 2], "item_id": ["i01", "i02"], "score": [0.9, 0.5],
        "source": ["retrieval", "popular"], "reason": ["similar to Item 0", "popular in Home > Kitchen"]}))


def publish_champion(root) -> str:
    """``recs/LATEST`` pointing at a run made with the model of ``CHAMPION_DATE``."""
    version = model_meta(root, CHAMPION_DATE)["version"]
    root.write_text("recs/runs/r1/manifest.json", json.dumps({"run_id": "r1", "model_version": version}))
    root.write_text(layout.RECS_LATEST, json.dumps({"run_id": "r1", "manifest": "runs/r1/manifest.json"}))
    return version


@pytest.fixture
def shop(tmp_path):
    root = open_root(str(tmp_path / "shop"))
    for date in (CHAMPION_DATE, DATE):
        write_shop(root, date)
    base = dict(root=str(tmp_path / "shop"), top_n=10, batch_size=8, learning_rate=5e-3, train_epochs=25,
                holdout_days=3)  # the real all-MiniLM-L6-v2: texts it tells apart
    train_model(RunConfig(date=CHAMPION_DATE, **base))
    return root, publish_champion(root), base


def test_holdout_splits_warm_and_cold_users():
    from models.seqrec import Sequences

    seqs = Sequences([np.array([0, 1, 2]), np.array([3]), np.array([4])], [np.ones(3, int), np.ones(1, int),
                     np.ones(1, int)], [np.array([10, 20, 30]), np.array([5]), np.array([25])])
    h = holdout(seqs, n_items=5, start=20)
    assert h.warm.tolist() == [0] and h.cold.tolist() == [2]  # user 1 did nothing inside the holdout
    assert h.truth[0].indices.tolist() == [1, 2] and h.truth[2].indices.tolist() == [4]
    assert [a.tolist() for a in h.past.items] == [[0], [3], []]


def test_gate_rule():
    assert gate({"ndcg": 0.10}, None, "ndcg", 0.1)[0]
    assert gate({"ndcg": 0.091}, {"ndcg": 0.10}, "ndcg", 0.1)[0]
    passed, verdict = gate({"ndcg": 0.089}, {"ndcg": 0.10}, "ndcg", 0.1)
    assert not passed and "candidate 0.0890, champion 0.1000" in verdict


def test_worse_run_is_blocked_unless_forced(shop):
    root, champion_version, base = shop
    # deliberately worse: trained from scratch with a learning rate of 0, i.e. untrained. The
    # ranker leans on co-occurrence then, which this shop rewards, so the drop is about 10%:
    # a 2% tolerance blocks it
    bad = RunConfig(date=DATE, **{**base, "learning_rate": 0.0, "train_epochs": 1}, full_retrain=True,
                    gate_tolerance=0.02)
    train_model(bad)
    with pytest.raises(PublishBlocked, match=r"publish blocked: ndcg@K on warm users: candidate 0\.\d+, champion"):
        evaluate(bad)
    report = json.loads(root.read_text("reports/2026-03-10/evaluation.json"))
    warm = report["metrics"]["warm"]
    assert report["champion"]["version"] == champion_version and not report["gate"]["passed"]
    assert warm["champion"]["ndcg"] > 1.05 * warm["nightrecs"]["ndcg"]
    assert {"popularity", "recent_popularity", "co_occurrence"} <= set(warm)
    assert set(report["metrics"]["cold"]) == {"nightrecs", "popularity", "recent_popularity"}
    page = root.read_text("reports/2026-03-10/evaluation.html")
    assert "Publish gate: BLOCKED" in page and page.count("<svg") >= 5
    forced = evaluate(RunConfig(date=DATE, **{**base, "learning_rate": 0.0}, gate_tolerance=0.02, force_publish=True))
    assert forced["gate"] == {**report["gate"], "forced": True}


def test_comparable_run_passes(shop):
    root, _, base = shop
    cfg = RunConfig(date=DATE, **base)  # warm-starts from the champion and trains on one more day
    train_model(cfg)
    result = evaluate(cfg)
    assert result["gate"]["passed"] and result["ndcg_warm"] > 0.5


def test_a_champion_of_an_older_model_format_is_not_compared(shop):
    """An upgrade: the live lists came from a model folder this version cannot load; the
    run is evaluated without a champion instead of failing, and trains from scratch."""
    root, _, base = shop
    (root.local_path(f"models/{CHAMPION_DATE}/item_ids.json")).unlink()
    cfg = RunConfig(date=DATE, **base)
    assert train_model(cfg)["epochs"] > 0
    assert json.loads(root.read_text(f"models/{DATE}/nightrecs_model.json"))["source"] == "scratch"
    result = evaluate(cfg)
    assert result["gate"] == {"passed": True, "forced": False, "verdict": "no champion to compare with"}
