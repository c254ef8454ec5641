"""Benchmark: how the published lists score on the demo shop against popularity.

    python benchmarks/demo_quality.py [--holdout-days 7] [--segments country,age_band]
        [--max-per-category 5 --new-item-quota 1]

Generates the demo shop, runs the whole pipeline in process with the run date
``--holdout-days`` before the shop's last day (so every step sees only the events before
it), then scores the staged top-10 lists against the items each user touched in the
held-out days and had not touched before (the lists never show a touched item), next to
global popularity (distinct users per item, all time) and trending (the last 7 days),
both without the user's touched items. Warm users (with a history) and cold users apart.
Issue 12's demo targets: nightrecs at least 3x popularity's NDCG@10; cold users no worse
than trending. Prints a Markdown table; a benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from nightrecs.models.baselines import Popularity
from nightrecs.models.evaluation import per_user
from nightrecs.tasks import layout
from nightrecs.tasks.demo_data import ShopSpec, generate
from nightrecs.tasks.layout import RunConfig
from nightrecs.tasks.pipeline import run_pipeline
from nightrecs.tasks.storage import open_root

K = 10
END = "2026-03-01"


def matrix(pairs: pd.DataFrame, row: dict[str, int], col: dict[str, int]) -> sp.csr_matrix:
    m = sp.csr_matrix((np.ones(len(pairs)), (pairs["user_id"].map(row), pairs["item_id"].map(col))),
                      shape=(len(row), len(col)))
    m.data[:] = 1.0
    return m


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--holdout-days", type=int, default=7)
    p.add_argument("--segments", default="country,age_band")
    p.add_argument("--train-epochs", type=int, default=RunConfig.train_epochs)
    p.add_argument("--max-per-category", type=int, default=RunConfig.max_per_category)
    p.add_argument("--new-item-quota", type=int, default=RunConfig.new_item_quota)
    p.add_argument("--work", default=None)
    p.add_argument("--reuse", action="store_true", help="score the run already in --work (no new run)")
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    root = Path(a.work or tempfile.mkdtemp(prefix="nightrecs-demo-quality-")) / "shop"
    if not a.reuse:
        generate(open_root(root), ShopSpec(days=30 + a.holdout_days, end_date=END))
    date = (dt.date.fromisoformat(END) - dt.timedelta(days=a.holdout_days)).isoformat()
    cfg = RunConfig(root=str(root), date=date, top_n=K, segment_columns=a.segments, train_epochs=a.train_epochs,
                    max_per_category=a.max_per_category, new_item_quota=a.new_item_quota)
    if not a.reuse:
        run_pipeline(cfg)

    r = open_root(root)
    events = pd.read_parquet(root / "raw/events", columns=["user_id", "item_id", "ts"])
    events["ts"] = pd.to_datetime(events["ts"], utc=True)
    catalog = r.read_parquet(layout.validated(date, "catalog"))
    index = {i: k for k, i in enumerate(catalog["item_id"])}
    events = events[events["item_id"].isin(index)]
    cut = pd.Timestamp(date, tz="UTC")
    past, held = events[events["ts"] < cut], events[events["ts"] >= cut]
    users = sorted(set(events["user_id"]))
    row = {u: k for k, u in enumerate(users)}
    seen = matrix(past, row, index)
    truth = matrix(held, row, index)
    truth = (truth - truth.multiply(seen)).tocsr()
    truth.eliminate_zeros()
    active = np.flatnonzero(np.diff(truth.indptr) > 0)
    warm = np.diff(seen.indptr)[active] > 0
    in_stock = catalog["in_stock"].fillna(True).astype(bool).to_numpy()
    blocked = (seen + sp.csr_matrix(np.tile(~in_stock, (len(users), 1)))).tocsr()

    recs = r.read_parquet(layout.staging(date))
    ours = np.full((len(users), K), -1, np.int64)
    top = recs[(recs["rank"] <= K) & recs["user_id"].isin(row)]  # users without events have no truth
    ours[top["user_id"].map(row).to_numpy(), top["rank"].to_numpy() - 1] = top["item_id"].map(index).to_numpy()
    recent = past[past["ts"] >= cut - pd.Timedelta(days=7)]
    methods = {"nightrecs (published lists)": ours[active],
               "popularity (all time)": Popularity().fit(seen).recommend(active, blocked, K)[0],
               "trending (last 7 days)": Popularity().fit(matrix(recent, row, index)).recommend(active, blocked, K)[0]}
    print(f"\ndemo shop: run date {date}, {a.holdout_days} held-out days, {len(active)} users with new items in "
          f"them ({warm.sum()} warm, {(~warm).sum()} cold)")
    print("| method | users | NDCG@10 | Recall@10 | HR@10 | MRR |\n| --- | --- | ---: | ---: | ---: | ---: |")
    for name, lists in methods.items():
        scores = per_user(lists, truth[active])
        for group, mask in (("warm", warm), ("cold", ~warm)):
            if mask.any():
                m = {k: float(np.nanmean(v[mask])) for k, v in scores.items()}
                print(f"| {name} | {group} | {m['ndcg']:.4f} | {m['recall']:.4f} | {m['hr']:.4f} | {m['mrr']:.4f} |")


if __name__ == "__main__":
    main()
