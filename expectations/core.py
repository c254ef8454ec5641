"""Running Great Expectations suites as pipeline gates.

Every expectation carries a ``severity`` in its ``meta``:

- ``fail`` (default): the run stops; the site keeps yesterday's lists.
- ``warn``: logged and reported, the run goes on.
- ``quarantine``: the offending rows are set aside with a reason; the run goes on unless
  the table's bad fraction exceeds the configured threshold.

Frames handed to a gate may carry ``_file`` and ``_row`` columns; reports then name the
source file and row of each sample. A gate writes GX Data Docs (HTML) when given a folder.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import great_expectations as gx
import pandas as pd
from great_expectations.checkpoint import UpdateDataDocsAction

from nightrecs.expectations.errors import DataQualityError

log = logging.getLogger(__name__)

SEVERITIES = ("fail", "warn", "quarantine")
SOURCE_COLUMNS = ["_file", "_row"]
KEY_COLUMNS = ["user_id", "item_id"]  # shown with each sample row, when present
ROW_ID = "_idx"
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
    row_ids: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.check}({self.column})" if self.column else self.check

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
            src, row = s.pop("_file", None), s.pop("_row", None)
            s.pop(ROW_ID, None)
            values = ", ".join(f"{k}={v!r}" for k, v in s.items())
            lines.append(f"      {src} row {row}: {values}" if src is not None else f"      {values}")
        return "\n".join(lines)


@dataclass
class GateReport:
    table: str
    rows: int
    results: list[CheckResult]  # only the checks that did not pass
    quarantined: int = 0

    def by_severity(self, severity: str) -> list[CheckResult]:
        return [r for r in self.results if r.severity == severity]

    def summary(self) -> dict:
        return {"table": self.table, "rows": self.rows, "quarantined": self.quarantined,
                **{sev: {r.name: r.unexpected_count if r.unexpected_count is not None else r.observed
                         for r in self.by_severity(sev)} for sev in SEVERITIES}}


@lru_cache(maxsize=1)
def _context():
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = gx.data_context.types.base.ProgressBarsConfig(globally=False)
    ctx.data_sources.add_pandas("nightrecs")
    return ctx


def new_suite(name: str) -> gx.ExpectationSuite:
    """An empty suite (GX needs a context to exist before any suite is built)."""
    _context()
    return gx.ExpectationSuite(name=name)


def severity(level: str) -> dict:
    """``meta`` for an expectation: ``gxe.ExpectX(..., **severity("warn"))``."""
    if level not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {level!r}")
    return {"meta": {"severity": level}}


class Gate:
    """One gate run: validates frames, collects reports, optionally writes Data Docs."""

    def __init__(self, name: str, docs_dir: Path | None = None) -> None:
        self.name, self.docs_dir = name, docs_dir
        self.reports: list[GateReport] = []
        self._site = f"{name}-{uuid.uuid4().hex[:8]}"
        if docs_dir is not None:
            _context().add_data_docs_site(site_name=self._site, site_config={
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                                  "base_directory": str(docs_dir)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            })

    def validate(self, df: pd.DataFrame, suite: gx.ExpectationSuite, table: str) -> GateReport:
        """Run ``suite`` on ``df``; row ids of failures refer to ``df``'s positions."""
        ctx = _context()
        df = df.reset_index(drop=True)
        df[ROW_ID] = range(len(df))
        index_cols = [ROW_ID] + [c for c in SOURCE_COLUMNS + KEY_COLUMNS if c in df.columns]
        key = f"{self._site}-{table}-{uuid.uuid4().hex[:6]}"
        asset = ctx.data_sources.get("nightrecs").add_dataframe_asset(key)
        suite.name = key
        suite = ctx.suites.add(suite)
        vd = ctx.validation_definitions.add(gx.ValidationDefinition(
            name=key, data=asset.add_batch_definition_whole_dataframe(key), suite=suite))
        actions = [UpdateDataDocsAction(name="docs", site_names=[self._site])] if self.docs_dir else []
        checkpoint = ctx.checkpoints.add(gx.Checkpoint(
            name=key, validation_definitions=[vd], actions=actions,
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": index_cols,
                           "partial_unexpected_count": SAMPLE_ROWS}))
        try:
            res = checkpoint.run(batch_parameters={"dataframe": df})
        finally:
            ctx.checkpoints.delete(key)
            ctx.validation_definitions.delete(key)
            ctx.suites.delete(key)
            ctx.data_sources.get("nightrecs").delete_asset(key)
        failed = [_check_result(r) for run in res.run_results.values() for r in run.results
                  if not r.success]
        report = GateReport(table=table, rows=len(df), results=failed)
        self.reports.append(report)
        return report

    def merge(self, table: str) -> GateReport:
        """Replace this gate's batch reports of ``table`` by one merged report."""
        batches = [r for r in self.reports if r.table == table]
        merged = merge_reports(batches, table)
        self.reports = [r for r in self.reports if r.table != table] + [merged]
        return merged

    def finish(self) -> None:
        if self.docs_dir is not None:
            _context().build_data_docs(site_names=[self._site])
            _context().delete_data_docs_site(self._site)


def _check_result(r) -> CheckResult:
    cfg, result = r.expectation_config, r.result or {}
    rows = result.get("unexpected_index_list") or []
    samples = rows or [{"value": v} for v in result.get("partial_unexpected_list") or []]
    error = (r.exception_info or {}).get("exception_message")
    return CheckResult(
        check=cfg.type,
        column=cfg.kwargs.get("column") or ",".join(cfg.kwargs.get("column_list", [])) or None,
        severity=(cfg.meta or {}).get("severity", "fail"),
        unexpected_count=result.get("unexpected_count"),
        element_count=result.get("element_count"),
        samples=[{k: (v.item() if hasattr(v, "item") else v) for k, v in s.items()}
                 for s in samples[:SAMPLE_ROWS]],
        observed=error or result.get("observed_value"),
        row_ids=[int(x[ROW_ID]) for x in rows if ROW_ID in x],
    )


def merge_reports(reports: list[GateReport], table: str) -> GateReport:
    """One report for a table validated in batches: counts add up, samples are kept from
    the first batches, row ids are dropped (they refer to each batch)."""
    rows = sum(r.rows for r in reports)
    merged: dict[tuple, CheckResult] = {}
    for rep in reports:
        for r in rep.results:
            key = (r.check, r.column, r.severity)
            m = merged.setdefault(key, CheckResult(r.check, r.column, r.severity, 0, rows, [], r.observed))
            m.unexpected_count += r.unexpected_count or 0
            m.samples = (m.samples + r.samples)[:SAMPLE_ROWS]
    return GateReport(table=table, rows=rows, results=list(merged.values()),
                      quarantined=sum(r.quarantined for r in reports))


def split_quarantine(df: pd.DataFrame, report: GateReport) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows that passed every quarantine check, the others with a ``reason`` column)."""
    reasons: dict[int, list[str]] = {}
    for r in report.by_severity("quarantine"):
        for i in r.row_ids:
            reasons.setdefault(i, []).append(r.name)
    df = df.reset_index(drop=True)
    bad_ids = sorted(reasons)
    bad = df.iloc[bad_ids].copy()
    bad["reason"] = ["; ".join(reasons[i]) for i in bad_ids]
    report.quarantined = len(bad)
    return df.drop(index=bad_ids).reset_index(drop=True), bad


def enforce(reports: list[GateReport], gate: str, max_bad_fraction: float) -> None:
    """Log warnings; raise :class:`DataQualityError` naming every failed check, and every
    table whose quarantined share exceeds ``max_bad_fraction``."""
    problems = []
    for rep in reports:
        for w in rep.by_severity("warn"):
            log.warning("gate %s: %s", gate, w.describe(rep.table))
        for q in rep.by_severity("quarantine"):
            log.warning("gate %s (rows quarantined): %s", gate, q.describe(rep.table))
        problems.extend(f.describe(rep.table) for f in rep.by_severity("fail"))
        if rep.rows and rep.quarantined / rep.rows > max_bad_fraction:
            problems.append(
                f"[fail] {rep.table}: {rep.quarantined} of {rep.rows} rows quarantined "
                f"({rep.quarantined / rep.rows:.1%}), above max_bad_fraction {max_bad_fraction:.1%}")
    if problems:
        raise DataQualityError(
            f"data-quality gate '{gate}' failed; the run stops and published lists stay as "
            f"they were:\n  - " + "\n  - ".join(problems))
    log.info("gate %s passed (%s)", gate, ", ".join(f"{r.table}: {r.rows} rows" for r in reports))
