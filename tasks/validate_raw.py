"""Step 1: gate the raw inputs (schema per file, then GX suites on the contents)."""

from __future__ import annotations

import io
import json
import logging

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from expectations.core import enforce, validate
from expectations.errors import DataQualityError
from expectations.raw import CONTRACT, catalog_suite, contract_columns, events_suite, schema_problems, users_suite
from tasks import layout
from tasks.layout import RunConfig
from tasks.storage import Root, open_root

log = logging.getLogger(__name__)

TABLES = {"catalog": layout.RAW_CATALOG, "users": layout.RAW_USERS, "events": layout.RAW_EVENTS}


def table_files(root: Root, table: str, run_date: str) -> list[str]:
    """The table's Parquet files; for events only partitions before the run date."""
    keys = [k for k in root.list(TABLES[table]) if k.endswith(".parquet")]
    if table == "events":
        keys = [k for k in keys if (d := layout.event_partition_date(k)) and d < run_date]
    return keys


def load_table(root: Root, table: str, keys: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Contract columns of every file plus ``_file``/``_row``; schema problems in words."""
    frames, problems = [], []
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
        df = t.select(contract_columns(table, t.schema)).to_pandas()
        df["_file"] = key
        df["_row"] = np.arange(len(df))
        frames.append(df)
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    for col in CONTRACT[table]:  # optional columns absent from every file: typed nulls
        if col.name not in df.columns:
            df[col.name] = None
    return df, problems


def validate_raw(cfg: RunConfig) -> dict:
    """Fail the run, naming file, column and sample rows, if any raw table breaks the contract."""
    root = open_root(cfg.root)
    frames, problems = {}, []
    for table in TABLES:
        keys = table_files(root, table, cfg.date)
        if not keys:
            where = root.full(TABLES[table]) + ("/dt=*" if table == "events" else "")
            problems.append(f"{table}: no Parquet files under {where}"
                            + (f" before {cfg.date}" if table == "events" else ""))
            continue
        frames[table], bad = load_table(root, table, keys)
        problems.extend(bad)
    if problems:
        raise DataQualityError("raw data does not match the contract; the run stops and "
                               "published lists stay as they were:\n  - " + "\n  - ".join(problems))
    reports = [
        validate(frames["catalog"], catalog_suite(), "catalog"),
        validate(frames["users"], users_suite(), "users"),
        validate(frames["events"], events_suite(cfg.date), "events"),
    ]
    root.write_text(f"reports/{cfg.date}/raw_gate.json",
                    json.dumps([r.summary() for r in reports], indent=2))
    result = enforce(reports, "raw")
    return {**result, "rows": {t: len(f) for t, f in frames.items()}}
