"""The raw data contract and the GX suites that gate it.

``CONTRACT`` is the single definition of the raw tables (README's data contract): the
per-file schema check and the suites below both derive from it. Row-level problems are
quarantined; only table-level problems (no rows, an empty day) stop the run outright.
"""

from __future__ import annotations

from dataclasses import dataclass

import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd
import pyarrow as pa

from nightrecs.contract import EVENT_TYPES
from nightrecs.expectations.core import new_suite, severity


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # string | timestamp | double | bool
    required: bool = False


CONTRACT: dict[str, list[Column]] = {
    "catalog": [
        Column("item_id", "string", True), Column("title", "string", True),
        Column("description", "string"), Column("category", "string"),
        Column("brand", "string"), Column("price", "double"), Column("in_stock", "bool"),
        Column("updated_at", "timestamp"),
    ],
    "users": [Column("user_id", "string", True), Column("signup_at", "timestamp")],
    "events": [
        Column("user_id", "string", True), Column("item_id", "string", True),
        Column("event_type", "string", True), Column("ts", "timestamp", True),
        Column("value", "double"), Column("session_id", "string"), Column("query", "string"),
        Column("event_id", "string"),
    ],
}

MAX_PRICE = 1e9  # above this (infinity included) a price is a unit or export error: quarantined

_KIND_CHECKS = {
    "string": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t)
    or pa.types.is_dictionary(t) and pa.types.is_string(t.value_type),
    "timestamp": pa.types.is_timestamp,
    "double": lambda t: pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_decimal(t),
    "bool": pa.types.is_boolean,
}


@dataclass(frozen=True)
class RawRules:
    """Thresholds of the raw gate (all configurable per run)."""

    first_event_date: str = "1990-01-01"
    rating_min: float = 0.5
    rating_max: float = 5.0
    volume_low: float = 0.2   # the newest day must have >= low x trailing 7-day median ...
    volume_high: float = 5.0  # ... and <= high x that median
    volume_severity: str = "warn"


ARROW_TYPES = {"string": pa.string(), "timestamp": pa.timestamp("us", tz="UTC"),
               "double": pa.float64(), "bool": pa.bool_()}


def contract_schema(table: str) -> pa.Schema:
    """The exact Arrow schema of a validated table (timestamps in UTC microseconds)."""
    return pa.schema([(c.name, ARROW_TYPES[c.kind]) for c in CONTRACT[table]])


def schema_problems(table: str, schema: pa.Schema) -> list[str]:
    """Missing required columns and contract columns of the wrong type, in words."""
    problems = []
    for col in CONTRACT[table]:
        if col.name not in schema.names:
            if col.required:
                problems.append(f"missing required column '{col.name}' ({col.kind})")
            continue
        typ = schema.field(col.name).type
        if pa.types.is_null(typ):
            continue  # an all-null optional column written without a type
        if not _KIND_CHECKS[col.kind](typ):
            problems.append(f"column '{col.name}' has type {typ}, expected {col.kind}")
    return problems


def extra_columns(table: str, schema: pa.Schema) -> list[str]:
    known = {c.name for c in CONTRACT[table]}
    return [n for n in schema.names if n not in known]


def catalog_suite() -> gx.ExpectationSuite:
    suite = new_suite("raw_catalog")
    q = severity("quarantine")
    suite.add_expectation(gxe.ExpectTableRowCountToBeBetween(min_value=1))
    suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column="item_id", **q))
    suite.add_expectation(gxe.ExpectColumnValuesToBeUnique(column="item_id", **q))
    suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column="title", **q))
    suite.add_expectation(gxe.ExpectColumnValueLengthsToBeBetween(column="title", min_value=1, **q))
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="price", min_value=0, max_value=MAX_PRICE, **q))
    return suite


def users_suite() -> gx.ExpectationSuite:
    suite = new_suite("raw_users")
    q = severity("quarantine")
    suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column="user_id", **q))
    suite.add_expectation(gxe.ExpectColumnValuesToBeUnique(column="user_id", **q))
    return suite


def events_suite(run_date: str, rules: RawRules) -> gx.ExpectationSuite:
    """Events of the partitions being ingested for a run on ``run_date``; the frame carries
    ``user_known`` (user_id is in the users table) and ``ts_in_day`` (ts falls in the
    file's ``dt=`` day), computed outside GX so that millions of
    user ids never land in the suite or its Data Docs."""
    q = severity("quarantine")
    suite = new_suite("raw_events")
    for col in ("user_id", "item_id", "event_type", "ts"):
        suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=col, **q))
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column="event_type", value_set=list(EVENT_TYPES), **q))
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(
        column="ts", min_value=pd.Timestamp(rules.first_event_date, tz="UTC"),
        max_value=pd.Timestamp(run_date, tz="UTC"), strict_max=True, **q))
    rating = {"row_condition": 'event_type=="rating"', "condition_parser": "pandas"}
    suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column="value", **rating, **q))
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(
        column="value", min_value=rules.rating_min, max_value=rules.rating_max, **rating, **q))
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(
        column="user_known", value_set=[True], **severity("warn")))
    # an event whose ts is not in its dt= day is kept (late arrivals are normal) but counted
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(
        column="ts_in_day", value_set=[True], **severity("warn")))
    return suite


def volume_suite(median: float, rules: RawRules, daily: bool = True) -> gx.ExpectationSuite:
    """On one row: ``events`` of the newest day (0 when the partition is missing). An empty
    newest day fails when every one of the days before it had events (a daily shop missed
    a delivery); in a sparse shop, where empty days are normal, it is ``volume_severity``."""
    suite = new_suite("raw_volume")
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(
        column="events", min_value=1, **({} if daily else severity(rules.volume_severity))))
    if median > 0:
        suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(
            column="events", min_value=rules.volume_low * median,
            max_value=rules.volume_high * median, **severity(rules.volume_severity)))
    return suite
