"""Step 1: the raw gate, which is also the ingest.

Catalog and users are checked whole every run; each raw ``dt=`` events partition is checked
once (again only if its files change) into ``validated/events/dt=.../``. Rows that break a
row-level rule go to ``quarantine/<date>/<table>/`` with a reason; table-level problems
(unreadable files, missing columns, no rows, an empty day) stop the run. Nothing is written
to ``validated/`` unless the whole gate passes, and downstream steps read only
``validated/``, so bad rows can never reach the model or the site.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import statistics

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from nightrecs.expectations.core import GateReport, enforce, split_quarantine
from nightrecs.expectations.errors import DataQualityError
from nightrecs.expectations.raw import (CONTRACT, RawRules, catalog_suite, contract_schema, events_suite,
                              extra_columns, schema_problems, users_suite, volume_suite)
from nightrecs.tasks import layout
from nightrecs.tasks.layout import RunConfig
from nightrecs.tasks.reports import gate
from nightrecs.tasks.storage import Root, open_root, parquet_bytes

log = logging.getLogger(__name__)

TABLES = {"catalog": layout.RAW_CATALOG, "users": layout.RAW_USERS, "events": layout.RAW_EVENTS}
VOLUME_DAYS = 7
INGEST_BATCH_BYTES = int(os.environ.get("NIGHTRECS_INGEST_BATCH_BYTES", 128 * 2**20))


def rules_of(cfg: RunConfig) -> RawRules:
    return RawRules(first_event_date=cfg.first_event_date, rating_min=cfg.rating_min,
                    rating_max=cfg.rating_max, volume_low=cfg.volume_low,
                    volume_high=cfg.volume_high, volume_severity=cfg.volume_severity)


def table_files(root: Root, table: str) -> list[str]:
    return [k for k in root.list(TABLES[table]) if k.endswith(".parquet")]


def event_partitions(root: Root, run_date: str) -> dict[str, list[str]]:
    """Raw event files by partition day, for days before the run date. A file outside a
    ``dt=YYYY-MM-DD`` folder with a real date fails the gate, named: its rows would
    otherwise be skipped without a word."""
    days: dict[str, list[str]] = {}
    misplaced = []
    for key in table_files(root, "events"):
        day = layout.event_partition_date(key)
        if day is None:
            misplaced.append(root.full(key))
        elif day < run_date:
            days.setdefault(day, []).append(key)
    if misplaced:
        _fail_contract([f"events: {len(misplaced)} file(s) not in a dt=YYYY-MM-DD partition folder with a real "
                        f"date (move or delete them): {', '.join(misplaced[:5])}"])
    return days


def _fingerprint(stats: dict[str, tuple[int, str]], keys: list[str]) -> dict[str, str]:
    """Size and version of a partition's files: re-ingest when any file changes."""
    return {k: f"{stats[k][0]}-{stats[k][1]}" for k in keys}


def load_table(root: Root, table: str, keys: list[str],
               keep: tuple[str, ...] = ()) -> tuple[pd.DataFrame, list[str], pd.DataFrame]:
    """(contract columns of every file plus ``_file``/``_row``, file-level problems in words,
    rows with invalid UTF-8 text set aside with a reason). ``keep``: extra columns to keep
    as strings (the users' segment columns); null where a file lacks them."""
    frames, problems, bad_text = [], [], []
    for key in keys:
        try:
            t = pq.read_table(io.BytesIO(root.read_bytes(key)))
        except (pa.ArrowException, OSError) as e:
            problems.append(f"{root.full(key)}: not a readable Parquet file ({e})")
            continue
        bad = schema_problems(table, t.schema)
        if bad:
            problems.extend(f"{root.full(key)}: {p}" for p in bad)
            continue
        if extra := [c for c in extra_columns(table, t.schema) if c not in keep]:
            log.info("%s: extra columns ignored: %s", root.full(key), ", ".join(extra))
        if missing := [c for c in keep if c not in t.schema.names]:
            log.warning("%s: segment columns missing (null for its rows): %s", root.full(key), ", ".join(missing))
        t = t.select([c.name for c in CONTRACT[table] if c.name in t.schema.names]
                     + [c for c in keep if c in t.schema.names])
        for c in keep:
            if c in t.schema.names:
                t = t.set_column(t.schema.get_field_index(c), c, pc.cast(t.column(c), pa.string()))
        t, invalid = _split_invalid_utf8(t)
        df = t.to_pandas()
        for col in CONTRACT[table]:  # the contract's timestamps are UTC
            if col.kind == "timestamp" and col.name in df and df[col.name].dt.tz is None:
                df[col.name] = df[col.name].dt.tz_localize("UTC")
        df["_file"], df["_row"] = key, np.arange(len(df))
        if invalid:
            rows = sorted(invalid)
            bad_text.append(df.iloc[rows].astype(str).assign(
                reason=["invalid UTF-8 in " + ", ".join(invalid[r]) for r in rows]))
            df = df.drop(index=df.index[rows])
        frames.append(df)
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    for name in [c.name for c in CONTRACT[table]] + list(keep):  # absent from every file: nulls
        if name not in df.columns:
            df[name] = None
    return df, problems, pd.concat(bad_text, ignore_index=True) if bad_text else pd.DataFrame()


def _split_invalid_utf8(t: pa.Table) -> tuple[pa.Table, dict[int, list[str]]]:
    """Rows whose string values are not valid UTF-8 (pandas cannot even hold them)."""
    invalid: dict[int, list[str]] = {}
    for i, name in enumerate(t.column_names):
        col = t.column(name)
        if not pa.types.is_string(col.type):
            continue
        try:
            col.validate(full=True)
            continue
        except pa.ArrowInvalid:
            pass
        raw = col.cast(pa.binary()).to_pylist()
        clean = []
        for r, v in enumerate(raw):
            try:
                clean.append(None if v is None else v.decode("utf-8"))
            except UnicodeDecodeError:
                invalid.setdefault(r, []).append(name)
                clean.append(v.decode("utf-8", errors="replace"))
        t = t.set_column(i, name, pa.array(clean, pa.string()))
    return t, invalid


def collapse_exact_duplicates(df: pd.DataFrame, table: str) -> tuple[pd.DataFrame, int]:
    """Identical rows (all contract columns equal) are one row; conflicting duplicates stay
    for the uniqueness check to quarantine."""
    cols = [c.name for c in CONTRACT[table]]
    dup = df.astype({c: str for c in cols}).duplicated(subset=cols)
    return df[~dup].reset_index(drop=True), int(dup.sum())


def _quarantine(root: Root, date: str, table: str, part: int, bad: list[pd.DataFrame]) -> None:
    if part == 0:
        root.delete_prefix(layout.quarantine(date, table))  # a rerun replaces that date's rows
    bad = [b for b in bad if len(b)]
    if not bad:
        return
    out = pd.concat(bad, ignore_index=True).drop(columns=["user_known", "ts_in_day"], errors="ignore").astype(str)
    root.write_parquet(layout.quarantine_file(date, table, part), out)
    log.warning("quarantined %d %s rows: %s", len(out), table, root.full(layout.quarantine(date, table)))


def validate_raw(cfg: RunConfig) -> dict:
    """Gate the raw tables; returns row, quarantine and ingest counts."""
    root = open_root(cfg.root)
    rules = rules_of(cfg)
    days = event_partitions(root, cfg.date)
    incoming = layout.incoming(cfg.date)
    root.delete_prefix(incoming)
    try:
        with gate(root, cfg.date, "raw") as g:
            clean, todo, counts = _gate_tables(root, cfg, rules, days, incoming, g)
            enforce(g.reports, "raw", cfg.max_bad_fraction)
        # the gate passed: only now publish what downstream steps read
        for table in ("catalog", "users"):
            extra = cfg.segment_columns if table == "users" else ()
            root.write_parquet(layout.validated(cfg.date, table), _typed(clean[table], table, extra))
        for day in todo:
            root.delete_prefix(layout.validated_events(day))
            for key in root.list(layout.incoming(cfg.date, day)):
                root.move(key, f"{layout.validated_events(day)}/{key.rsplit('/', 1)[1]}")
    finally:
        root.delete_prefix(incoming)
    return {"rows": {"catalog": len(clean["catalog"]), "users": len(clean["users"]),
                     "events": sum(counts[d] for d in todo)},
            "quarantined": {r.table: r.quarantined for r in g.reports if r.table != "volume"},
            "ingested_days": sorted(todo), "newest_day": max(days) if days else None,
            "summary": root.full(layout.reports(cfg.date, "summary.json"))}


def _gate_tables(root: Root, cfg: RunConfig, rules: RawRules, days: dict[str, list[str]],
                 incoming: str, g) -> tuple[dict, dict, dict]:
    """Validate catalog and users whole, then new event partitions in bounded batches;
    good event rows are staged under ``incoming``. Returns (clean catalog/users, the days
    ingested, validated event counts per day)."""
    tables, problems, bad_text = {}, [], {}
    for table in ("catalog", "users"):
        keys = table_files(root, table)
        if not keys:
            problems.append(f"{table}: no Parquet files under {root.full(TABLES[table])}")
            continue
        keep = cfg.segment_columns if table == "users" else ()
        tables[table], found, bad_text[table] = load_table(root, table, keys, keep)
        problems.extend(found)
    if not days:
        problems.append(f"events: no Parquet files under {root.full(TABLES['events'])}/dt=* "
                        f"before {cfg.date}")
    if problems:
        _fail_contract(problems)

    clean, bad = {}, {}
    for table, suite in (("catalog", catalog_suite()), ("users", users_suite())):
        df, n_dup = collapse_exact_duplicates(tables[table], table)
        if n_dup:
            log.warning("%s: %d exact duplicate rows collapsed", table, n_dup)
        rep = g.validate(df, suite, table)
        clean[table], bad[table] = split_quarantine(df, rep)
        rep.quarantined += len(bad_text[table])  # rows with invalid UTF-8 count as quarantined
        rep.rows += len(bad_text[table])
        _quarantine(root, cfg.date, table, 0, [bad[table], bad_text[table]])

    stats = {k: root.stat(k) for keys in days.values() for k in keys}  # one look per file
    todo = {d: keys for d, keys in days.items() if _needs_ingest(root, d, _fingerprint(stats, keys))}
    known_users = set(clean["users"]["user_id"])
    fresh: dict[str, int] = {}
    for n, batch in enumerate(_batches(todo, stats)):
        events, found, bad_rows = load_table(root, "events", [k for d in batch for k in todo[d]])
        if found:
            _fail_contract(found)
        events["user_known"] = events["user_id"].isin(known_users)
        day_of = {f: pd.Timestamp(layout.event_partition_date(f), tz="UTC") for f in events["_file"].unique()}
        events["ts_in_day"] = events["ts"].dt.floor("D") == events["_file"].map(day_of)  # late events: warned
        rep = g.validate(events, events_suite(cfg.date, rules), "events")
        good, bad_events = split_quarantine(events, rep)
        rep.quarantined += len(bad_rows)
        rep.rows += len(bad_rows)
        _quarantine(root, cfg.date, "events", n, [bad_events, bad_rows])
        fresh.update(_stage_events(root, incoming, {d: _fingerprint(stats, todo[d]) for d in batch}, good))
    if todo:
        g.merge("events")
    counts = {day: fresh[day] if day in todo else
              json.loads(root.read_text(layout.ingest_record(day)))["rows"]
              for day in days}
    _volume_check(g, counts, cfg.date, rules)
    return clean, todo, counts


def _fail_contract(problems: list[str]) -> None:
    raise DataQualityError("raw data does not match the contract; the run stops and "
                           "published lists stay as they were:\n  - " + "\n  - ".join(problems))


def _batches(todo: dict[str, list[str]], stats: dict[str, tuple[int, str]]) -> list[list[str]]:
    """Consecutive days grouped so that one batch holds at most ``INGEST_BATCH_BYTES`` of
    Parquet (a day is never split): memory stays bounded however long the history."""
    batches, current, size = [], [], 0
    for day in sorted(todo):
        day_size = sum(stats[k][0] for k in todo[day])
        if current and size + day_size > INGEST_BATCH_BYTES:
            batches.append(current)
            current, size = [], 0
        current.append(day)
        size += day_size
    return batches + ([current] if current else [])


def _needs_ingest(root: Root, day: str, fingerprint: dict[str, str]) -> bool:
    try:
        stored = json.loads(root.read_text(layout.ingest_record(day)))
    except FileNotFoundError:
        return True
    return stored["files"] != fingerprint


def _volume_check(g, counts: dict[str, int], run_date: str, rules: RawRules) -> GateReport:
    """The day before the run date vs the median of the 7 days before it (0 if missing)."""
    newest = (pd.Timestamp(run_date) - pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    trailing = [counts.get((pd.Timestamp(newest) - pd.Timedelta(days=k)).strftime("%Y-%m-%d"), 0)
                for k in range(1, VOLUME_DAYS + 1)]
    median = statistics.median(trailing)
    frame = pd.DataFrame({"day": [newest], "events": [counts.get(newest, 0)], "median_7d": [median]})
    return g.validate(frame, volume_suite(median, rules, daily=min(trailing) > 0), "volume")


def _typed(df: pd.DataFrame, table: str, extra: tuple[str, ...] = ()) -> pa.Table:
    """Contract columns, in the contract's exact types, plus ``extra`` string columns."""
    schema = contract_schema(table)
    for name in extra:
        schema = schema.append(pa.field(name, pa.string()))
    return pa.Table.from_pandas(df, schema=schema, preserve_index=False)


def _stage_events(root: Root, incoming: str, days: dict[str, dict[str, str]],
                  events: pd.DataFrame) -> dict[str, int]:
    """Write each day's good rows under ``incoming``, with an ingest record: the source
    files' fingerprint, the row count and the SHA-256 of the written rows.

    Rows are written in one canonical order (sorted by every column), so the digest
    depends only on which rows a day holds: a day re-delivered with the same rows, in any
    file layout or order, is not cleaned again and its features are kept."""
    day_of = {f: layout.event_partition_date(f) for f in events["_file"].unique()}  # per file, not per row
    by_day = dict(tuple(events.groupby(events["_file"].map(day_of)))) if len(events) else {}
    columns = contract_schema("events").names
    counts = {}
    for day, fingerprint in days.items():
        part = by_day.get(day, events.iloc[:0])
        part = part.sort_values(columns, na_position="first", kind="stable", ignore_index=True)
        data = parquet_bytes(_typed(part, "events"))
        root.write_bytes(f"{incoming}/dt={day}/part-00000.parquet", data)
        root.write_text(f"{incoming}/dt={day}/_source.json", json.dumps(
            {"files": fingerprint, "rows": len(part), "sha256": hashlib.sha256(data).hexdigest()}))
        counts[day] = len(part)
    return counts
