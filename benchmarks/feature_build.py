"""Benchmark: generate a shop, then time the raw gate + Spark feature build.

    python benchmarks/feature_build.py --users 1000000 --items 100000 --events 20000000
    python benchmarks/feature_build.py --scale 0.1      # a tenth of that

Prints a table: wall seconds and peak RSS (this process + its children, i.e. the Spark
JVM) for the full build, for the same at half the events, and for a rerun of the newest
day. A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from tasks.demo_data import ShopSpec, generate
from tasks.layout import RunConfig
from tasks.pipeline import run_step
from tasks.storage import open_root

DAYS = 30
END = "2026-03-01"


EVENTS_PER_USER_DAY_AT_RATE_1 = 6.3  # measured on the demo shop's funnel


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants (the Spark JVM included)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except (OSError, StopIteration):
            continue
    return total


class PeakRSS:
    """Samples the process tree's RSS every 0.2 s while a block runs."""

    def __enter__(self):
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, tree_rss_bytes(os.getpid()))

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def timed(root: Path, steps: list[str]) -> tuple[float, float]:
    """(wall seconds, peak GiB) of the steps."""
    cfg = RunConfig(root=str(root), date=END, volume_severity="warn")
    start = time.perf_counter()
    with PeakRSS() as mem:
        for step in steps:
            run_step(step, cfg)
    return time.perf_counter() - start, mem.peak / 1024**3


def one(users: int, items: int, events: int, work: Path) -> dict:
    rate = events / (users * DAYS * EVENTS_PER_USER_DAY_AT_RATE_1)
    root = work / f"shop-{events}"
    t = time.perf_counter()
    made = generate(open_root(root), ShopSpec(users=users, items=items, days=DAYS, end_date=END,
                                              sessions_per_user_day=rate))
    gen_s = time.perf_counter() - t
    full_s, full_gib = timed(root, ["validate_raw", "build_features"])
    newest = root / "raw/events/dt=2026-02-28/part-00000.parquet"
    newest.touch()  # the newest day changed: only it is re-ingested
    rerun_s, rerun_gib = timed(root, ["validate_raw", "build_features"])
    shutil.rmtree(root)
    return {"events": made["events"], "generate_s": gen_s, "build_s": full_s, "rerun_day_s": rerun_s,
            "peak_rss_gib": max(full_gib, rerun_gib)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--events", type=int, default=20_000_000)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--work", default=None, help="scratch folder (default: a temp dir)")
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    users, items, events = (int(x * a.scale) for x in (a.users, a.items, a.events))
    work = Path(a.work or tempfile.mkdtemp(prefix="nightrecs-bench-"))
    rows = [("full", one(users, items, events, work)), ("half events", one(users, items, events // 2, work))]
    print(f"\nshop: {users} users, {items} items, {DAYS} days")
    print(f"{'run':<12} {'events':>11} {'generate s':>11} {'gate+features s':>16} {'rerun 1 day s':>14} {'peak RSS GiB':>13}")
    for name, r in rows:
        print(f"{name:<12} {r['events']:>11,} {r['generate_s']:>11.1f} {r['build_s']:>16.1f} "
              f"{r['rerun_day_s']:>14.1f} {r['peak_rss_gib']:>13.2f}")


if __name__ == "__main__":
    main()
