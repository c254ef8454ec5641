"""The evaluation step and the publish gate, on a shop with known structure (every user
walks the catalog in order), where a trained model beats an untrained one."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from nightrecs.tasks import layout
from nightrecs.tasks.demo_data import ShopSpec, make_catalog
from nightrecs.models.data import Sequences, holdout, interactions
from nightrecs.models.evaluation import summarize
from nightrecs.tasks.artifacts import copy_model, load_model, model_meta, trained_until
from nightrecs.tasks.catalog import unix_seconds
from nightrecs.tasks.evaluate import PublishBlocked, evaluate, gate, list_matrix
from nightrecs.tasks.layout import RunConfig
from nightrecs.tasks.lists import load_inputs, make_lists
from nightrecs.tasks.storage import open_root
from nightrecs.tasks.train import train_model

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
            rows.append((f"u{u:03d}", [i for i, _ in steps], [t for _, t in steps]))
    root.write_parquet(layout.features(date, "histories/part-0.parquet"), pa.table({
        "user_id": [r[0] for r in rows], "item_ids": [r[1] for r in rows],
        "event_types": [["click"] * len(r[1]) for r in rows], "ratings": pa.array([[None] * len(r[1]) for r in rows],
                                                                                 pa.list_(pa.float64())),
        "ts": pa.array([r[2] for r in rows], pa.list_(pa.timestamp("us", tz="UTC")))}))
    root.write_parquet(layout.features(date, "exclusions/part-0.parquet"), pa.table({
        "user_id": pa.array([], pa.string()), "item_id": pa.array([], pa.string()),
        "since": pa.array([], pa.timestamp("us", tz="UTC"))}))
    catalog = make_catalog(ShopSpec(items=N_ITEMS), np.random.default_rng(1))  # distinct texts
    root.write_parquet(layout.validated(date, "catalog"), catalog.assign(item_id=[f"i{i:02d}" for i in range(N_ITEMS)]))
    root.write_parquet(layout.validated(date, "users"), pd.DataFrame({"user_id": [f"u{u:03d}" for u in range(N_USERS)]}))
    root.write_parquet(layout.staging_part(date, 0), pd.DataFrame({
        "user_id": ["u000", "u000"], "rank": [1, 2], "item_id": ["i01", "i02"], "score": [0.9, 0.5],
        "source": ["retrieval", "popular"], "reason": ["similar to Item 0", "popular in Home > Kitchen"]}))


def publish_champion(root, date: str = CHAMPION_DATE, keep_model: bool = False) -> str:
    """``recs/LATEST`` pointing at a run made with the model of ``date``; ``keep_model``: the
    run keeps a copy of it, as publish does (else the manifest of runs published before)."""
    version = model_meta(root, layout.model_dir(date))["version"]
    manifest = {"run_id": "r1", "run_date": date, "model_version": version}
    if keep_model:
        copy_model(root, layout.model_dir(date), layout.run_model("r1"))
        manifest["model"] = "runs/r1/model"
    root.write_text("recs/runs/r1/manifest.json", json.dumps(manifest))
    root.write_text(layout.RECS_LATEST, json.dumps({"run_id": "r1", "manifest": "runs/r1/manifest.json"}))
    return version


@pytest.fixture
def shop(tmp_path):
    root = open_root(str(tmp_path / "shop"))
    for date in (CHAMPION_DATE, DATE):
        write_shop(root, date)
    base = dict(root=str(tmp_path / "shop"), top_n=10, batch_size=8, learning_rate=5e-3, train_epochs=25,
                holdout_days=3, valid_days=10)  # the real all-MiniLM-L6-v2: texts it tells apart; the
    # ranker's first window [date - 10, date - 3) is after the model's training: evaluate sees its scores
    train_model(RunConfig(date=CHAMPION_DATE, **base))
    return root, publish_champion(root), base


def test_holdout_splits_warm_and_cold_users():
    seqs = Sequences([np.array([0, 1, 2]), np.array([3]), np.array([4])], [np.ones(3, int), np.ones(1, int),
                     np.ones(1, int)], [np.array([10, 20, 30]), np.array([5]), np.array([25])])
    h = holdout(seqs, n_items=5, start=20)
    assert h.warm.tolist() == [0] and h.cold.tolist() == [2]  # user 1 did nothing inside the holdout
    assert h.truth[0].indices.tolist() == [1, 2] and h.truth[2].indices.tolist() == [4]
    assert [a.tolist() for a in h.past.items] == [[0], [3], []]


def test_gate_rule():
    """Blocked: below the floor and the paired interval below zero; a drop as large on a
    handful of users, or one within the tolerance, passes."""
    rng = np.random.default_rng(0)
    champ = rng.random(2_000) * 0.2  # per-user NDCG, mean about 0.10
    assert gate(champ, None, "ndcg", 0.1)[0]
    assert gate(champ * 0.91, champ, "ndcg", 0.1)[0]  # within the tolerance
    passed, verdict = gate(champ * 0.89, champ, "ndcg", 0.1)
    assert not passed and f"candidate {np.mean(champ) * 0.89:.4f}, champion {np.mean(champ):.4f}" in verdict
    assert "on 2000 users" in verdict
    few = np.array([0.0, 0.0, 0.5, 0.0])  # one hit of four users: noise, not a regression
    passed, verdict = gate(np.zeros(4), few, "ndcg", 0.1)
    assert passed and "candidate 0.0000, champion 0.1250" in verdict and "on 4 users" in verdict
    with_nan = np.array([np.nan, 0.1, 0.2])  # a user without truth counts for neither
    assert "on 2 users" in gate(with_nan, with_nan, "ndcg", 0.1)[1]


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


def test_a_same_day_rerun_is_gated_against_the_run_behind_latest(shop):
    """LATEST points at a run of this very date; a rerun replaced models/<date> with a worse
    model: the champion is still the published run's (its kept copy) and it blocks."""
    root, _, base = shop
    good = RunConfig(date=DATE, **base)
    train_model(good)
    champion_version = publish_champion(root, DATE, keep_model=True)
    bad = RunConfig(date=DATE, **{**base, "learning_rate": 0.0, "train_epochs": 1}, full_retrain=True,
                    gate_tolerance=0.02)
    train_model(bad)
    with pytest.raises(PublishBlocked):
        evaluate(bad)
    report = json.loads(root.read_text("reports/2026-03-10/evaluation.json"))
    assert report["champion"] == {"version": champion_version, "run_id": "r1", "date": DATE}


def test_a_broken_champion_fails_the_task_instead_of_switching_the_gate_off(shop):
    root, _, base = shop
    root.write_bytes(f"models/{CHAMPION_DATE}/model.safetensors", b"not a safetensors file")
    cfg = RunConfig(date=DATE, **{**base, "train_epochs": 1}, full_retrain=True)
    train_model(cfg)
    with pytest.raises(Exception) as e:
        evaluate(cfg)
    assert not isinstance(e.value, PublishBlocked)


def test_evaluate_scores_exactly_the_lists_a_run_at_the_holdout_start_would_publish(shop):
    root, _, base = shop
    cfg = RunConfig(date=DATE, **base)
    train_model(cfg)
    result = evaluate(cfg)
    report = json.loads(root.read_text("reports/2026-03-10/evaluation.json"))
    # what retrieve would stage at the holdout's start, for everyone, scored on the holdout
    inputs = load_inputs(root, cfg)
    start = unix_seconds(DATE) - cfg.holdout_days * 86400
    model, meta = load_model(root, layout.model_dir(DATE), cfg, inputs.catalog)
    staged = make_lists(inputs.at(start), model, cfg, start, trained_until(meta))
    h = holdout(inputs.seqs, len(inputs.catalog), start)
    lists = list_matrix(staged, inputs.user_ids, inputs.catalog["item_id"], cfg.eval_k)
    ours = summarize(lists, h.truth, np.asarray(interactions(h.past, len(inputs.catalog)).sum(0)).ravel(), h.warm)
    for metric in ("ndcg", "recall", "hr", "mrr", "users"):
        assert ours[metric] == pytest.approx(report["metrics"]["warm"]["nightrecs"][metric], abs=1e-12)
    assert result["ndcg_warm"] == pytest.approx(ours["ndcg"], abs=1e-12)
