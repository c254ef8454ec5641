"""GX suites for the final per-user lists, run before anything is published."""

from __future__ import annotations

import great_expectations as gx
import great_expectations.expectations as gxe

from nightrecs.expectations.core import new_suite


def lists_suite() -> gx.ExpectationSuite:
    """On the long list frame (user_id, rank, item_id, score, reason) plus ``in_stock_item``:
    the item exists in the catalog and is in stock (computed outside GX)."""
    suite = new_suite("recs_lists")
    for col in ("user_id", "item_id", "rank", "score", "reason"):
        suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=col))
    suite.add_expectation(gxe.ExpectCompoundColumnsToBeUnique(column_list=["user_id", "item_id"]))
    suite.add_expectation(gxe.ExpectCompoundColumnsToBeUnique(column_list=["user_id", "rank"]))
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column="in_stock_item", value_set=[True]))
    return suite


def lengths_suite(top_n: int) -> gx.ExpectationSuite:
    """On one row per user: ``n`` items listed, ``expected`` = min(top_n, what the catalog
    allows that user after exclusions)."""
    suite = new_suite("recs_lengths")
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="n", min_value=1, max_value=top_n))
    suite.add_expectation(gxe.ExpectColumnPairValuesToBeEqual(column_A="n", column_B="expected"))
    suite.add_expectation(gxe.ExpectColumnValuesToBeUnique(column="user_id"))
    return suite
