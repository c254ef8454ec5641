"""Benchmark: how the published lists score on the demo shop against popularity.

    python benchmarks/demo_quality.py [--holdout-days 7] [--segments country,age_band]
        [--max-per-category 5 --new-item-quota 1]

Generates the demo shop, runs the whole pipeline in process with the run date
``--holdout-days`` before the shop's last day (so every step sees only the events before
it), then scores the staged top-10 lists against what each user touched in the held-out
days, next to the two popularity lists the pipeline itself computes: global (decayed,
``item_popularity``) and per segment (``segment_popularity``), both without the user's
bought or rated items. Warm users (with a history) and cold users apart. Issue 4's demo
targets: nightrecs at least 1.5x popularity's NDCG@10; cold users no worse than trending.
Prints a Markdown table; a benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import logging
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.evaluation import per_user
from models.rules import Rules, pick
from tasks import layout
from tasks.demo_data import ShopSpec, generate
from tasks.layout import RunConfig
from tasks.pipeline import run_pipeline
from tasks.retrieve import Fallback, popularity_ranking, segment_fallbacks
from tasks.storage import open_root

K = 10
END = "2026-03-01"


def lists_of(ranked: dict[str, list[str]], users: list[str], index: dict[str, int]) -> np.ndarray:
    out = np.full((len(users), K), -1, dtype=np.int64)
    for r, u in enumerate(users):
        ids = [index[i] for i in ranked.get(u, [])[:K]]
        out[r, :len(ids)] = ids
    return out


def popular_for(users: list[str], fallbacks: list[Fallback], fallback_of: dict[str, int],
                exclude: dict[str, set[int]]) -> list[list[int]]:
    """Each user's top-K candidates the way retrieve fills a list without retrieval: their
    segment's ranking (when ``fallback_of`` names one), then global popularity
    (``fallbacks[0]``), without their excluded items."""
    no_category = np.full(len(fallbacks[0].items), -1)  # popularity lists have no category cap
    out = []
    for u in users:
        seg = fallbacks[fallback_of[u]].items if u in fallback_of else []
        ranked = itertools.chain(seg, fallbacks[0].items)
        out.append(pick(ranked, [], no_category, exclude.get(u, set()), Rules(top_n=K))[0])
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--holdout-days", type=int, default=7)
    p.add_argument("--segments", default="country,age_band")
    p.add_argument("--train-epochs", type=int, default=RunConfig.train_epochs)
    p.add_argument("--max-per-category", type=int, default=RunConfig.max_per_category)
    p.add_argument("--new-item-quota", type=int, default=RunConfig.new_item_quota)
    p.add_argument("--work", default=None)
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    root = Path(a.work or tempfile.mkdtemp(prefix="nightrecs-demo-quality-")) / "shop"
    generate(open_root(root), ShopSpec(days=30 + a.holdout_days, end_date=END))
    date = (dt.date.fromisoformat(END) - dt.timedelta(days=a.holdout_days)).isoformat()
    cfg = RunConfig(root=str(root), date=date, top_n=K, segment_columns=a.segments, train_epochs=a.train_epochs,
                    max_per_category=a.max_per_category, new_item_quota=a.new_item_quota)
    run_pipeline(cfg)

    r = open_root(root)
    events = pd.read_parquet(root / "raw/events")
    events["ts"] = pd.to_datetime(events["ts"], utc=True)
    held = events[events["ts"] >= pd.Timestamp(date, tz="UTC")]
    catalog = r.read_parquet(layout.validated(date, "catalog"))
    index = {i: k for k, i in enumerate(catalog["item_id"])}
    held = held[held["item_id"].isin(index)]
    users = sorted(held["user_id"].unique())
    row = {u: k for k, u in enumerate(users)}
    truth = sp.csr_matrix((np.ones(len(held)), (held["user_id"].map(row), held["item_id"].map(index))),
                          shape=(len(users), len(index)))
    truth.data[:] = 1.0
    warm_ids = set(r.read_parquet(layout.features(date, "histories"), columns=["user_id"])["user_id"])
    warm = np.array([u in warm_ids for u in users])

    recs = r.read_parquet(layout.staging(date)).sort_values(["user_id", "rank"])
    ours = recs.groupby("user_id")["item_id"].apply(list).to_dict()
    cand = catalog[catalog["in_stock"].fillna(True).astype(bool)].reset_index(drop=True)
    cand_index = {i: k for k, i in enumerate(cand["item_id"])}
    excl = r.read_parquet(layout.features(date, "exclusions"))
    exclude: dict[str, set[int]] = {}
    for u, i in excl.itertuples(index=False):
        if i in cand_index:
            exclude.setdefault(u, set()).add(cand_index[i])
    order, scores = popularity_ranking(r.read_parquet(layout.features(date, "item_popularity")), cand["item_id"])
    segs, of = segment_fallbacks(r.read_parquet(layout.features(date, "segment_popularity")),
                                 r.read_parquet(layout.validated(date, "users")), cfg.segment_columns, cand_index)
    fallbacks = [Fallback(order, scores)] + segs
    ids = cand["item_id"].to_numpy()
    as_ids = lambda lists: {u: ids[lst].tolist() for u, lst in zip(users, lists)}  # noqa: E731
    methods = {"nightrecs (published lists)": ours,
               "popularity (decayed, global)": as_ids(popular_for(users, fallbacks, {}, exclude)),
               "popularity by segment": as_ids(popular_for(users, fallbacks, {u: k + 1 for u, k in of.items()},
                                                           exclude))}
    print(f"\ndemo shop: run date {date}, {a.holdout_days} held-out days, {len(users)} users active in them "
          f"({warm.sum()} warm, {(~warm).sum()} cold)")
    print("| method | users | NDCG@10 | Recall@10 | HR@10 | MRR |\n| --- | --- | ---: | ---: | ---: | ---: |")
    for name, ranked in methods.items():
        scores = per_user(lists_of(ranked, users, index), truth)
        for group, mask in (("warm", warm), ("cold", ~warm)):
            if mask.any():
                m = {k: float(np.nanmean(v[mask])) for k, v in scores.items()}
                print(f"| {name} | {group} | {m['ndcg']:.4f} | {m['recall']:.4f} | {m['hr']:.4f} | {m['mrr']:.4f} |")


if __name__ == "__main__":
    main()
