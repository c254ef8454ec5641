"""Benchmark: the whole night at a shop's size, and the usual tools for its top-N stage.

    python benchmarks/night.py                  # 1M users, 100k items, 20M events, then half of that
    python benchmarks/night.py --scale 0.05     # a twentieth
    python benchmarks/night.py --full-only      # no half-size row

Every step runs in its own process, as an Airflow task does; the table gives its wall
seconds and the peak RSS of its process tree (Python and the Spark JVM) for the first night
(nothing cached) and a steady-state second night (one new day of events: the raw gate
ingests one day, the feature job cleans one day, training warm-starts, the text vectors come
from the cache). Then, side by side on the same interactions (the gate-passed events before
the first night's date), the top-N stage of the usual tools: `implicit` ALS `recommend` for
every user with seen items filtered, and Spark ML ALS `recommendForAllUsers`, in users per
second, against nightrecs' `retrieve` step (candidates, ranker, rules and reasons for every
user, the whole step's wall time). Training runs under a budget (``--train-minutes``,
default 10); ``--co-neighbours`` sets the run setting of that name. With ``--work``, a run
cut short resumes when started again with the same flags: finished steps are kept in
``night-<users>.json`` there, and a step that was cut short runs again (marked in the
table). A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp
from feature_build import EVENTS_PER_USER_DAY_AT_RATE_1
from steps import run_step_process, shop_parser

from nightrecs.tasks.demo_data import ShopSpec, generate
from nightrecs.tasks.pipeline import STEPS
from nightrecs.tasks.storage import open_root

DAYS = 30
FIRST = "2026-03-01"  # the first night's run date; the second night's is the day after
TOP_N = 20
log = logging.getLogger("night")


def add_day(root: Path, day: str, new_day: str) -> int:
    """The next day's events: ``day``'s again, a day later, under new event ids."""
    events = pd.read_parquet(root / f"raw/events/dt={day}")
    events["ts"] = events["ts"] + pd.Timedelta(days=1)
    events["event_id"] = "next-" + events["event_id"].astype(str)
    out = root / f"raw/events/dt={new_day}"
    out.mkdir(parents=True, exist_ok=True)  # written whole again after a cut
    pq.write_table(pa.Table.from_pandas(events, preserve_index=False), out / "part-00000.parquet")
    return len(events)


def interactions(root: Path, date: str) -> sp.csr_matrix:
    """User x item counts of the gate-passed positive events before ``date``."""
    events = pd.read_parquet(root / "validated/events", columns=["user_id", "item_id", "dt"])
    events = events[events["dt"].astype(str) < date]
    users = events["user_id"].astype("category").cat.codes.to_numpy()
    items = events["item_id"].astype("category").cat.codes.to_numpy()
    m = sp.csr_matrix((np.ones(len(users), np.float32), (users, items)))
    m.sum_duplicates()
    return m


def implicit_als(m: sp.csr_matrix) -> dict:
    from implicit.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(factors=64, iterations=10, random_state=0)
    t = time.perf_counter()
    model.fit(m, show_progress=False)
    fit_s = time.perf_counter() - t
    t = time.perf_counter()
    for s in range(0, m.shape[0], 20_000):
        rows = np.arange(s, min(s + 20_000, m.shape[0]))
        model.recommend(rows, m[rows], N=TOP_N, filter_already_liked_items=True)
    return {"method": "implicit ALS recommend (64 factors, seen filtered)", "fit_s": fit_s,
            "topn_s": time.perf_counter() - t, "users": m.shape[0]}


def spark_als(m: sp.csr_matrix, work: Path) -> dict:
    from pyspark.ml.recommendation import ALS

    from nightrecs.spark_jobs.session import get_spark

    coo = m.tocoo()
    path = work / "als-input.parquet"
    pq.write_table(pa.table({"u": coo.row.astype(np.int32), "i": coo.col.astype(np.int32),
                             "r": coo.data.astype(np.float32)}), path)
    spark = get_spark("bench-als")
    try:
        ratings = spark.read.parquet(str(path))
        als = ALS(rank=64, maxIter=10, implicitPrefs=True, userCol="u", itemCol="i", ratingCol="r", seed=0)
        t = time.perf_counter()
        model = als.fit(ratings)
        fit_s = time.perf_counter() - t
        t = time.perf_counter()
        model.recommendForAllUsers(TOP_N).write.format("noop").mode("overwrite").save()
        topn_s = time.perf_counter() - t
    finally:
        spark.stop()
    return {"method": "Spark ML ALS recommendForAllUsers (rank 64, seen not filtered)", "fit_s": fit_s,
            "topn_s": topn_s, "users": m.shape[0]}


def one(users: int, items: int, events: int, work: Path, settings: dict) -> dict:
    """Both nights and the usual tools on one generated shop; resumes from
    ``work/night-<users>.json`` (what finished) when it exists."""
    root, saved = work / f"shop-{users}", work / f"night-{users}.json"
    done = json.loads(saved.read_text()) if saved.exists() else {}

    def save() -> None:
        saved.write_text(json.dumps(done, indent=1))

    if "events" not in done:
        shutil.rmtree(root, ignore_errors=True)  # a first night means nothing cached
        rate = events / (users * DAYS * EVENTS_PER_USER_DAY_AT_RATE_1)
        t = time.perf_counter()
        made = generate(open_root(root), ShopSpec(users=users, items=items, days=DAYS, end_date=FIRST,
                                                  sessions_per_user_day=rate))
        log.info("generated %d events in %.1f s", made["events"], time.perf_counter() - t)
        done.update(events=made["events"], settings=settings, started=[])
        save()
    elif done["settings"] != settings:
        raise SystemExit(f"{saved} was made with {done['settings']}, not {settings}: use another --work")
    last_day = (dt.date.fromisoformat(FIRST) - dt.timedelta(days=1)).isoformat()
    second_date = (dt.date.fromisoformat(FIRST) + dt.timedelta(days=1)).isoformat()
    for name, date in (("first", FIRST), ("second", second_date)):
        if name == "second" and "added" not in done:
            done["added"] = add_day(root, last_day, FIRST)
            save()
        steps = done.setdefault(name, {})
        for step in (s for s in STEPS if s not in steps):
            again = f"{name} {step}" in done["started"]  # cut short in an earlier sitting
            done["started"].append(f"{name} {step}")
            save()
            seconds, gib = run_step_process(step, root, date, top_n=TOP_N, volume_severity="warn", **settings)
            steps[step] = [seconds, gib, again]
            save()
            log.info("%s %s: %.1f s, %.2f GiB%s", date, step, seconds, gib, " (run again after a cut)" * again)
    tools = done.setdefault("tools", [])
    remaining = [implicit_als, functools.partial(spark_als, work=work)][len(tools):]
    m = interactions(root, FIRST) if remaining else None
    for tool in remaining:  # each kept as it finishes: Spark ALS takes long at this size
        tools.append(tool(m))
        save()
    shutil.rmtree(root, ignore_errors=True)
    return {"users": users, "items": items, **done}


def report(r: dict) -> None:
    print(f"\n### {r['users']:,} users, {r['items']:,} items, {r['events']:,} events over {DAYS} days "
          f"(second night: +{r['added']:,} events)\n")
    print("| step | first night s | first peak GiB | second night s | second peak GiB |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for step in STEPS:
        (a, ag, a_again), (b, bg, b_again) = r["first"][step], r["second"][step]
        print(f"| {step} | {a:.1f}{' *' * a_again} | {ag:.2f} | {b:.1f}{' *' * b_again} | {bg:.2f} |")
    total = [sum(s for s, _, _ in r[n].values()) for n in ("first", "second")]
    peak = [max(g for _, g, _ in r[n].values()) for n in ("first", "second")]
    print(f"| **night** | **{total[0]:.0f}** ({total[0] / 60:.1f} min) | {peak[0]:.2f} | "
          f"**{total[1]:.0f}** ({total[1] / 60:.1f} min) | {peak[1]:.2f} |")
    if any(again for n in ("first", "second") for _, _, again in r[n].values()):
        print("\n\\* run again after the benchmark was cut short during it (caches it had filled may help)")
    ours_s = r["first"]["retrieve"][0]
    ours = r["users"] / ours_s
    print("\n| top-N stage | users | fit s | top-N s | users/s | nightrecs retrieve / this |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    print(f"| nightrecs retrieve step (first night, whole step) | {r['users']:,} | (train_model) | {ours_s:.1f} | "
          f"{ours:,.0f} | 1.00x |")
    for t in r["tools"]:
        rate = t["users"] / t["topn_s"]
        print(f"| {t['method']} | {t['users']:,} | {t['fit_s']:.1f} | {t['topn_s']:.1f} | {rate:,.0f} | "
              f"{ours / rate:.2f}x |")


def main() -> None:
    p = shop_parser(__doc__)
    p.add_argument("--full-only", action="store_true", help="skip the half-size shop")
    p.add_argument("--train-minutes", type=float, default=10.0,
                   help="the training budget (train_max_minutes) a 45-minute night affords")
    p.add_argument("--co-neighbours", type=int, default=0, help="the co_neighbours run setting (0: all)")
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    log.setLevel(logging.INFO)
    users, items, events = (int(x * a.scale) for x in (a.users, a.items, a.events))
    work = Path(a.work or tempfile.mkdtemp(prefix="nightrecs-night-"))
    sizes = [(users, items, events)] + ([] if a.full_only else [(users // 2, items // 2, events // 2)])
    for size in sizes:
        report(one(*size, work, {"train_max_minutes": a.train_minutes, "co_neighbours": a.co_neighbours}))


if __name__ == "__main__":
    main()
