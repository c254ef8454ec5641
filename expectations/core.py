"""Running Great Expectations suites as pipeline gates.

Each expectation carries a severity in its ``meta``: ``fail`` (default) stops the run,
``warn`` is logged and reported. Frames handed to a gate may carry ``_file`` and ``_row``
columns; failures then name the source file and row of each sample offending value.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import great_expectations as gx
import pandas as pd

from expectations.errors import DataQualityError

log = logging.getLogger(__name__)

INDEX_COLUMNS = ["_file", "_row"]
SAMPLE_ROWS = 5


@dataclass
class CheckResult:
    check: str
    column: str | None
    severity: str
    unexpected_count: int | None
    element_count: int | None
    samples: list[dict[str, Any]] = field(default_factory=list)
    observed: Any = None

    def describe(self, table: str) -> str:
        where = f"{table}.{self.column}" if self.column else table
        head = f"[{self.severity}] {self.check} on {where}"
        if self.unexpected_count is not None:
            head += f": {self.unexpected_count} of {self.element_count} rows unexpected"
        elif self.observed is not None:
            head += f": observed {self.observed}"
        lines = [head]
        for s in self.samples:
            s = dict(s)
            src = s.pop("_file", None)
            row = s.pop("_row", None)
            values = ", ".join(f"{k}={v!r}" for k, v in s.items())
            lines.append(f"      {src} row {row}: {values}" if src is not None else f"      {values}")
        return "\n".join(lines)


@dataclass
class GateReport:
    table: str
    rows: int
    results: list[CheckResult]

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if r.severity == "fail"]

    @property
    def warnings(self) -> list[CheckResult]:
        return [r for r in self.results if r.severity != "fail"]

    def summary(self) -> dict:
        return {"table": self.table, "rows": self.rows,
                "failed": [f"{r.check}:{r.column}" for r in self.failures],
                "warned": [f"{r.check}:{r.column}" for r in self.warnings]}


@lru_cache(maxsize=1)
def _context():
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = gx.data_context.types.base.ProgressBarsConfig(globally=False)
    return ctx


def new_suite(name: str) -> gx.ExpectationSuite:
    """An empty suite (GX needs a context to exist before any suite is built)."""
    _context()
    return gx.ExpectationSuite(name=name)


def _batch_definition(name: str):
    ctx = _context()
    try:
        source = ctx.data_sources.get("nightrecs")
    except (KeyError, ValueError):
        source = ctx.data_sources.add_pandas("nightrecs")
    try:
        asset = source.get_asset(name)
    except LookupError:
        asset = source.add_dataframe_asset(name)
    try:
        return asset.get_batch_definition(name)
    except (KeyError, LookupError):
        return asset.add_batch_definition_whole_dataframe(name)


def validate(df: pd.DataFrame, suite: gx.ExpectationSuite, table: str) -> GateReport:
    """Run ``suite`` on ``df``; returns only the checks that did not pass."""
    index_cols = [c for c in INDEX_COLUMNS if c in df.columns]
    result_format: dict[str, Any] = {"result_format": "COMPLETE" if index_cols else "SUMMARY",
                                     "partial_unexpected_count": SAMPLE_ROWS}
    if index_cols:
        result_format["unexpected_index_column_names"] = index_cols
        df = df.reset_index(drop=True)
    batch = _batch_definition(table).get_batch(batch_parameters={"dataframe": df})
    res = batch.validate(suite, result_format=result_format)
    failed = []
    for r in res.results:
        if r.success:
            continue
        cfg = r.expectation_config
        result = r.result or {}
        samples = result.get("unexpected_index_list") or [
            {"value": v} for v in result.get("partial_unexpected_list") or []
        ]
        error = (r.exception_info or {}).get("exception_message")
        failed.append(CheckResult(
            check=cfg.type,
            column=cfg.kwargs.get("column") or ",".join(cfg.kwargs.get("column_list", [])) or None,
            severity=(cfg.meta or {}).get("severity", "fail"),
            unexpected_count=result.get("unexpected_count"),
            element_count=result.get("element_count"),
            samples=[_plain(s) for s in samples[:SAMPLE_ROWS]],
            observed=error or result.get("observed_value"),
        ))
    return GateReport(table=table, rows=len(df), results=failed)


def _plain(sample: dict) -> dict:
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in sample.items()}


def enforce(reports: list[GateReport], gate: str) -> dict:
    """Log warnings; raise :class:`DataQualityError` naming every failed check."""
    for rep in reports:
        for w in rep.warnings:
            log.warning("gate %s: %s", gate, w.describe(rep.table))
    failures = [f.describe(rep.table) for rep in reports for f in rep.failures]
    if failures:
        raise DataQualityError(
            f"data-quality gate '{gate}' failed; the run stops and published lists stay as "
            f"they were:\n  - " + "\n  - ".join(failures)
        )
    log.info("gate %s passed (%s)", gate, ", ".join(f"{r.table}: {r.rows} rows" for r in reports))
    return {"gate": gate, "tables": [r.summary() for r in reports]}
