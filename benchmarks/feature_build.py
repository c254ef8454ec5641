"""Benchmark: generate a shop, then time the raw gate and the Spark feature build.

    python benchmarks/feature_build.py --users 1000000 --items 100000 --events 20000000
    python benchmarks/feature_build.py --scale 0.1      # a tenth of that

Each step runs in its own process, as an Airflow task does. Prints a Markdown table with
the wall seconds of the raw gate and of the feature build (clean every day, then roll up
the features) and the peak RSS of each step's process tree (Python and the Spark JVM):
for the first build and for three reruns of the same run date (nothing changed; the
newest raw day re-delivered with the same rows; the newest day with 1% late events), for
the full shop and again at half the events. A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from steps import run_step_process, shop_parser

from nightrecs.tasks.demo_data import ShopSpec, generate
from nightrecs.tasks.storage import open_root

DAYS = 30
END = "2026-03-01"
EVENTS_PER_USER_DAY_AT_RATE_1 = 6.3  # measured on the demo shop's funnel
log = logging.getLogger("feature_build")


def timed(root: Path) -> dict[str, float]:
    """Seconds and peak GiB of the raw gate and of the feature build."""
    gate_s, gate_gib = run_step_process("validate_raw", root, END, volume_severity="warn")
    build_s, build_gib = run_step_process("build_features", root, END, volume_severity="warn")
    return {"gate_s": gate_s, "build_s": build_s, "gate_gib": gate_gib, "build_gib": build_gib}


def add_late_events(day_dir: Path, share: float) -> int:
    """A second file in a raw day: ``share`` of its events again, under new event ids (late
    arrivals of the same kind of traffic). Returns how many."""
    events = pd.read_parquet(day_dir / "part-00000.parquet")
    late = events.sample(frac=share, random_state=0)
    late["event_id"] = "late-" + late["event_id"].astype(str)
    pq.write_table(pa.Table.from_pandas(late, preserve_index=False), day_dir / "part-00001.parquet")
    return len(late)


def one(users: int, items: int, events: int, work: Path) -> list[dict]:
    """The first build, then three reruns of the same run date: nothing changed (a cleared
    DAG run), the newest day re-delivered with the same rows (a new file), and the newest
    day with 1% late events (its rows changed)."""
    rate = events / (users * DAYS * EVENTS_PER_USER_DAY_AT_RATE_1)
    root = work / f"shop-{events}"
    t = time.perf_counter()
    made = generate(open_root(root), ShopSpec(users=users, items=items, days=DAYS, end_date=END,
                                              sessions_per_user_day=rate))
    log.info("generated %d events in %.1f s", made["events"], time.perf_counter() - t)
    newest = root / "raw/events/dt=2026-02-28"
    runs = [{"run": "first build", **timed(root)}]
    runs.append({"run": "rerun, nothing changed", **timed(root)})
    (newest / "part-00000.parquet").touch()
    runs.append({"run": "rerun, newest day re-delivered (same rows)", **timed(root)})
    late = add_late_events(newest, 0.01)
    runs.append({"run": f"rerun, newest day + {late:,} late events", **timed(root)})
    shutil.rmtree(root)
    first = runs[0]["gate_s"] + runs[0]["build_s"]
    for r in runs:
        r |= {"events": made["events"], "total_s": r["gate_s"] + r["build_s"]}
        r["share"] = 100 * r["total_s"] / first
    return runs


def main() -> None:
    p = shop_parser(__doc__)
    p.add_argument("--full-only", action="store_true", help="skip the run at half the events")
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    log.setLevel(logging.INFO)
    users, items, events = (int(x * a.scale) for x in (a.users, a.items, a.events))
    work = Path(a.work or tempfile.mkdtemp(prefix="nightrecs-bench-"))
    sizes = [events] + ([] if a.full_only else [events // 2])
    rows = [r for n in sizes for r in one(users, items, n, work)]
    print(f"\nshop: {users} users, {items} items, {DAYS} days")
    cols = [("events", "events", ",d"), ("raw gate s", "gate_s", ".1f"), ("features s", "build_s", ".1f"),
            ("total s", "total_s", ".1f"), ("% of first build", "share", ".1f"),
            ("gate peak GiB", "gate_gib", ".2f"), ("features peak GiB", "build_gib", ".2f")]
    print("| run | " + " | ".join(c[0] for c in cols) + " |")
    print("| --- |" + " ---: |" * len(cols))
    for r in rows:
        print(f"| {r['run']} | " + " | ".join(format(r[k], f) for _, k, f in cols) + " |")

if __name__ == "__main__":
    main()
