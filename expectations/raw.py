"""The raw data contract and the GX suites that gate it.

``CONTRACT`` is the single definition of the raw tables (README's data contract): the
schema check and the suites below both derive from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd
import pyarrow as pa

from expectations.core import new_suite

EVENT_TYPES = ["view", "click", "add_to_cart", "purchase", "rating"]
EARLIEST_TS = pd.Timestamp("1990-01-01", tz="UTC")


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

_KIND_CHECKS = {
    "string": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t)
    or pa.types.is_dictionary(t) and pa.types.is_string(t.value_type),
    "timestamp": pa.types.is_timestamp,
    "double": lambda t: pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_decimal(t),
    "bool": pa.types.is_boolean,
}


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


def contract_columns(table: str, schema: pa.Schema) -> list[str]:
    """The contract's columns present in ``schema`` (extra columns are ignored)."""
    return [c.name for c in CONTRACT[table] if c.name in schema.names]


def _warn(**kw) -> dict:
    return {"meta": {"severity": "warn"}, **kw}


def catalog_suite() -> gx.ExpectationSuite:
    suite = new_suite("raw_catalog")
    suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column="item_id"))
    suite.add_expectation(gxe.ExpectColumnValuesToBeUnique(column="item_id"))
    suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column="title"))
    suite.add_expectation(gxe.ExpectColumnValueLengthsToBeBetween(column="title", min_value=1))
    suite.add_expectation(gxe.ExpectTableRowCountToBeBetween(min_value=1))
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(
        column="price", min_value=0, **_warn()))
    return suite


def users_suite() -> gx.ExpectationSuite:
    suite = new_suite("raw_users")
    suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column="user_id"))
    suite.add_expectation(gxe.ExpectColumnValuesToBeUnique(column="user_id"))
    return suite


def events_suite(run_date: str) -> gx.ExpectationSuite:
    """Events used by a run on ``run_date``: all of them strictly before that day
    (one day of slack for clocks on the partition boundary)."""
    latest = pd.Timestamp(run_date, tz="UTC") + pd.Timedelta(days=1)
    suite = new_suite("raw_events")
    for col in ("user_id", "item_id", "event_type", "ts"):
        suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=col))
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column="event_type", value_set=EVENT_TYPES))
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(
        column="ts", min_value=EARLIEST_TS, max_value=latest))
    suite.add_expectation(gxe.ExpectTableRowCountToBeBetween(min_value=1))
    return suite
