"""Benchmark: retrieve's per-user work in process and on a local Spark standalone cluster
with 1 and 2 one-core workers, on one generated shop, side by side in one run.

    python benchmarks/retrieve_spark.py --scale 0.01     # 10k users, 1k items, 200k events

The steps before retrieve run once (each in its own process, training under a short
budget); then ``retrieve`` runs in this process three ways on the same inputs. The table
gives the whole step's seconds, the per-user part's (the chunks: candidates, ranker,
rules, reasons; on Spark including the session's start and the shared state's upload and
load), its users/s, and whether the staged lists are identical to the in-process ones. On a
2-core machine the driver, the executors and the JVMs share the same 2 cores, so 2 workers
cannot be 2x; the curve to read for a real cluster is the per-task cost. A benchmark, not
a test: it asserts nothing.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd
from feature_build import EVENTS_PER_USER_DAY_AT_RATE_1
from steps import run_step_process, shop_parser

from nightrecs.spark_jobs.standalone import standalone_cluster
from nightrecs.tasks import layout
from nightrecs.tasks.demo_data import ShopSpec, generate
from nightrecs.tasks.layout import RunConfig
from nightrecs.tasks.lists import chunk_users
from nightrecs.tasks.storage import open_root

DAYS = 30
DATE = "2026-03-01"
TOP_N = 20
BEFORE = ("validate_raw", "build_features", "validate_features", "train_model", "embed_catalog")
log = logging.getLogger("retrieve_spark")


def timed_retrieve(cfg: RunConfig, master: str | None) -> tuple[float, dict, pd.DataFrame]:
    from nightrecs.tasks.retrieve import retrieve

    if master:
        os.environ["NIGHTRECS_SPARK_MASTER"] = master
    else:
        os.environ.pop("NIGHTRECS_SPARK_MASTER", None)
    start = time.perf_counter()
    result = retrieve(cfg)
    seconds = time.perf_counter() - start
    return seconds, result, open_root(cfg.root).read_parquet(layout.staging(cfg.date))


def main() -> None:
    p = shop_parser(__doc__)
    p.add_argument("--train-minutes", type=float, default=2.0)
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    log.setLevel(logging.INFO)
    users, items, events = (int(x * a.scale) for x in (a.users, a.items, a.events))
    work = Path(a.work or tempfile.mkdtemp(prefix="nightrecs-retrieve-spark-"))
    root = work / "shop"
    shutil.rmtree(root, ignore_errors=True)
    made = generate(open_root(root), ShopSpec(users=users, items=items, days=DAYS, end_date=DATE,
                                              sessions_per_user_day=events / (users * DAYS * EVENTS_PER_USER_DAY_AT_RATE_1)))
    log.info("shop: %d users, %d items, %d events", users, items, made["events"])
    for step in BEFORE:
        log.info("%s: %.1f s", step, run_step_process(step, root, DATE, top_n=TOP_N, volume_severity="warn",
                                                      train_max_minutes=a.train_minutes)[0])
    cfg = RunConfig(root=str(root), date=DATE, top_n=TOP_N, volume_severity="warn")
    rows = []
    seconds, result, reference = timed_retrieve(cfg, None)
    rows.append(("in process", seconds, result, True))
    for workers in (1, 2):
        with standalone_cluster(work / f"cluster-{workers}", workers=workers, memory="2g") as master:
            seconds, result, staged = timed_retrieve(cfg, master)
        same = staged.equals(reference)
        rows.append((f"Spark standalone, {workers} worker(s) x 1 core", seconds, result, same))
    print(f"\n### retrieve, {made['events']:,} events, {users:,} users, {items:,} items, "
          f"{rows[0][2]['chunks']} chunks of up to {chunk_users():,} users\n")
    print("| where the per-user work runs | step s | per-user part s | users/s (per-user part) | "
          "vs in process | lists identical |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    base = rows[0][2]["lists_seconds"]
    for name, seconds, r, same in rows:
        print(f"| {name} | {seconds:.1f} | {r['lists_seconds']:.1f} | {r['users'] / r['lists_seconds']:,.0f} | "
              f"{base / r['lists_seconds']:.2f}x | {'yes' if same else 'NO'} |")
    shutil.rmtree(root)


if __name__ == "__main__":
    main()
