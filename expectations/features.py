"""GX suites for the feature tables: finite numbers, sane ranges, catalog integrity."""

from __future__ import annotations

import great_expectations as gx
import great_expectations.expectations as gxe

from nightrecs.expectations.core import new_suite


def numeric_suite(name: str, non_negative: list[str], key: str, unique: bool = True,
                  rates: tuple[str, ...] = ()) -> gx.ExpectationSuite:
    """Numbers are finite (inf is turned into null before validation) and >= 0; rates are
    in [0, 1]; the key is present (and unique when ``unique``)."""
    suite = new_suite(name)
    suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=key))
    if unique:
        suite.add_expectation(gxe.ExpectColumnValuesToBeUnique(column=key))
    for col in non_negative:
        suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=col))
        suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column=col, min_value=0))
    for col in rates:
        suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column=col, min_value=0, max_value=1))
    return suite


def items_in_catalog_suite(name: str) -> gx.ExpectationSuite:
    """On a frame with one ``item_id`` per row and ``in_catalog`` (computed outside GX, so the
    catalog's ids never land in the suite or its Data Docs)."""
    suite = new_suite(name)
    suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column="item_id"))
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column="in_catalog", value_set=[True]))
    return suite
