"""The nightly steps in DAG order; the DAG and ``nightrecs run`` both use this list.

Steps are looked up by name and imported on first use, so parsing the DAG file does not
import torch, Spark or Great Expectations.
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
import os
import time
from typing import Callable

from nightrecs.expectations.errors import DataQualityError
from nightrecs.tasks import layout
from nightrecs.tasks.layout import RunConfig
from nightrecs.tasks.runlock import run_lock
from nightrecs.tasks.storage import open_root

__all__ = ["STEPS", "DataQualityError", "get_step", "quiet_libraries", "record_failure", "run_pipeline", "run_step"]

log = logging.getLogger(__name__)

Step = Callable[[RunConfig], dict]

# step name -> module in tasks/ that defines a function of that name
STEPS: dict[str, str] = {
    "validate_raw": "nightrecs.tasks.validate_raw",
    "build_features": "nightrecs.tasks.features",
    "validate_features": "nightrecs.tasks.validate_features",
    "train_model": "nightrecs.tasks.train",
    "embed_catalog": "nightrecs.tasks.embed",
    "retrieve": "nightrecs.tasks.retrieve",
    "validate_recs": "nightrecs.tasks.validate_recs",
    "evaluate": "nightrecs.tasks.evaluate",
    "publish": "nightrecs.tasks.publish",
}


def get_step(name: str) -> Step:
    return getattr(importlib.import_module(STEPS[name]), name)


def _run(name: str, cfg: RunConfig) -> dict:
    start = time.perf_counter()
    log.info("step %s: start (root=%s, date=%s)", name, cfg.root, cfg.date)
    result = get_step(name)(cfg)
    log.info("step %s: done in %.1f s", name, time.perf_counter() - start)
    return result


def record_failure(cfg: RunConfig, step: str, error: BaseException | str) -> str:
    """One line saying what failed and why, with where the reports are: logged, and
    appended to ``reports/<date>/failures.log`` (where an operator looks first)."""
    why = " ".join(str(error).split())[:800] or type(error).__name__
    root = open_root(cfg.root)
    line = (f"{dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%M:%SZ} step {step} of run date {cfg.date} failed: {why} "
            f"(reports: {root.full(layout.reports(cfg.date))}/)")
    log.error("%s", line)
    key = layout.reports(cfg.date, "failures.log")
    try:
        before = root.read_text(key)
    except FileNotFoundError:
        before = ""
    root.write_text(key, before + line + "\n")
    return line


def quiet_libraries() -> None:
    """Keep a step's log to what matters: GX logs hundreds of registry lines on import, the
    FAISS loader a ModuleNotFoundError for every missing CPU variant, transformers a
    progress bar per model load (on stderr, an error in a task log), and botocore's debug
    lines carry signed request headers (credentials stay out of every log level)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # read when huggingface_hub is imported
    for name in ("great_expectations", "faiss.loader", "py4j"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("botocore", "boto3", "urllib3", "s3transfer"):
        if logging.getLogger(name).getEffectiveLevel() < logging.INFO:
            logging.getLogger(name).setLevel(logging.INFO)


def run_step(name: str, cfg: RunConfig) -> dict:
    """One step (a DAG task), holding the root's run lock while it runs."""
    quiet_libraries()
    with run_lock(open_root(cfg.root), f"step {name} of {cfg.date}"):
        return _run(name, cfg)


def run_pipeline(cfg: RunConfig) -> dict[str, dict]:
    """Run every step in order, in this process, holding the root's run lock throughout;
    stops at the first failure."""
    with run_lock(open_root(cfg.root), f"nightrecs run {cfg.date}"):
        return {name: _run(name, cfg) for name in STEPS}
