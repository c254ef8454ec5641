"""What the step benchmarks share: run one pipeline step in its own process, as an Airflow
task does, and measure its wall time and the peak resident memory of its process tree."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path


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


def run_step_process(step: str, root: Path, date: str, **settings) -> tuple[float, float]:
    """Run one step in its own process; (wall seconds, peak GiB of its process tree, sampled
    every 0.2 s). ``settings`` are RunConfig fields."""
    code = ("import logging; logging.basicConfig(level=logging.WARNING)\n"
            "from nightrecs.tasks.layout import RunConfig; from nightrecs.tasks.pipeline import run_step\n"
            f"run_step({step!r}, RunConfig(root={str(root)!r}, date={date!r}, **{settings!r}))")
    start, peak = time.perf_counter(), 0
    proc = subprocess.Popen([sys.executable, "-c", code])
    while proc.poll() is None:
        peak = max(peak, tree_rss_bytes(proc.pid))
        time.sleep(0.2)  # sampling memory, not timing anything
    if proc.returncode:
        raise RuntimeError(f"{step} failed with exit status {proc.returncode}")
    return time.perf_counter() - start, peak / 1024**3


def shop_parser(doc: str | None) -> argparse.ArgumentParser:
    """The flags of a generated shop's size (the issue's target shop by default) and scratch space."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--events", type=int, default=20_000_000)
    p.add_argument("--scale", type=float, default=1.0, help="multiplies users, items and events")
    p.add_argument("--work", default=None, help="scratch folder (default: a temp dir)")
    return p
