"""Benchmark: generate a shop, then time the raw gate + Spark feature build.

    python benchmarks/feature_build.py --users 1000000 --items 100000 --events 20000000
    python benchmarks/feature_build.py --scale 0.1      # a tenth of that

Prints a Markdown table: wall seconds of the raw gate and of the Spark feature build (clean
every day, then roll up the features), the same after the newest raw day changed (one day
re-ingested and re-cleaned), and peak RSS (this process + its children, i.e. the Spark JVM);
for the full shop and again at half the events. A benchmark, not a test: it asserts nothing.
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


def timed(root: Path) -> tuple[float, float, float]:
    """(raw gate seconds, feature build seconds, peak GiB)."""
    cfg = RunConfig(root=str(root), date=END, volume_severity="warn")
    seconds = []
    with PeakRSS() as mem:
        for step in ("validate_raw", "build_features"):
            start = time.perf_counter()
            run_step(step, cfg)
            seconds.append(time.perf_counter() - start)
    return seconds[0], seconds[1], mem.peak / 1024**3


def one(users: int, items: int, events: int, work: Path) -> dict:
    rate = events / (users * DAYS * EVENTS_PER_USER_DAY_AT_RATE_1)
    root = work / f"shop-{events}"
    t = time.perf_counter()
    made = generate(open_root(root), ShopSpec(users=users, items=items, days=DAYS, end_date=END,
                                              sessions_per_user_day=rate))
    gen_s = time.perf_counter() - t
    gate_s, build_s, full_gib = timed(root)
    newest = root / "raw/events/dt=2026-02-28/part-00000.parquet"
    newest.touch()  # the newest day changed: only it is re-ingested and re-cleaned
    rerun_gate_s, rerun_s, rerun_gib = timed(root)
    shutil.rmtree(root)
    return {"events": made["events"], "generate_s": gen_s, "gate_s": gate_s, "build_s": build_s,
            "rerun_gate_s": rerun_gate_s, "rerun_s": rerun_s, "peak_rss_gib": max(full_gib, rerun_gib)}


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
    cols = [("events", "events", ",d"), ("generate s", "generate_s", ".1f"), ("raw gate s", "gate_s", ".1f"),
            ("features s", "build_s", ".1f"), ("rerun gate s", "rerun_gate_s", ".1f"),
            ("rerun features s", "rerun_s", ".1f"), ("peak RSS GiB", "peak_rss_gib", ".2f")]
    print("| run | " + " | ".join(c[0] for c in cols) + " |")
    print("| --- |" + " ---: |" * len(cols))
    for name, r in rows:
        print(f"| {name} | " + " | ".join(format(r[k], f) for _, k, f in cols) + " |")


if __name__ == "__main__":
    main()
