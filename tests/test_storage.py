"""The Root interface behaves the same on a local folder and on a real S3 server."""

from __future__ import annotations

import pandas as pd
import pytest

from nightrecs.tasks.storage import LocalRoot, S3Root, local_output, open_root


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    if request.param == "local":
        return open_root(tmp_path / "root")
    env = request.getfixturevalue("s3_env")
    return open_root(f"s3://{env['bucket']}/some/prefix")


def test_bytes_list_exists_delete(root):
    root.write_text("a/b/one.txt", "1")
    root.write_text("a/two.txt", "2")
    root.write_text("ab/three.txt", "3")  # shares a string prefix with "a", not a folder
    assert root.read_text("a/b/one.txt") == "1"
    assert root.list("a") == ["a/b/one.txt", "a/two.txt"]
    assert root.exists("a") and root.exists("a/two.txt") and not root.exists("zzz")
    root.delete_prefix("a")
    assert root.list("a") == [] and root.list("ab") == ["ab/three.txt"]
    with pytest.raises(FileNotFoundError):
        root.read_bytes("a/two.txt")


def test_parquet_roundtrip_keeps_types(root):
    df = pd.DataFrame({"id": ["x", "y"], "v": [1.5, None],
                       "ts": pd.to_datetime(["2026-01-01 10:00", "2026-01-02 00:00"], utc=True)})
    root.write_parquet("t/part-0.parquet", df.iloc[:1])
    root.write_parquet("t/part-1.parquet", df.iloc[1:])
    back = root.read_parquet("t")
    pd.testing.assert_frame_equal(back, df.astype({"ts": "datetime64[us, UTC]"}))


def test_local_output_replaces_prefix(root):
    root.write_text("out/stale.txt", "old")
    with local_output(root, "out") as d:
        (d / "sub").mkdir()
        (d / "sub" / "new.txt").write_text("new")
    assert root.list("out") == ["out/sub/new.txt"]


def test_open_root_kinds(tmp_path):
    assert isinstance(open_root(tmp_path), LocalRoot)
    with pytest.raises(ValueError, match="unsupported data root"):
        open_root("gs://bucket/x")


def test_s3_root_needs_bucket(s3_env):
    assert isinstance(open_root(f"s3://{s3_env['bucket']}"), S3Root)
    with pytest.raises(ValueError, match="bucket"):
        open_root("s3://")


def test_ranged_reads_and_compare_and_swap(root):
    root.write_text("data.txt", "0123456789")
    assert root.read_range("data.txt", 3, 4) == b"3456"
    assert root.put_if("p/LATEST", b"one", None)  # created: it did not exist
    assert not root.put_if("p/LATEST", b"two", None)  # exists now: refused (S3: 412)
    data, version = root.read_versioned("p/LATEST")
    assert data == b"one"
    assert root.read_if_changed("p/LATEST", version) is None  # unchanged (S3: a 304)
    assert root.put_if("p/LATEST", b"three", version)
    assert not root.put_if("p/LATEST", b"four", version)  # stale version: someone else won
    assert root.read_if_changed("p/LATEST", version)[0] == b"three"
    with pytest.raises(FileNotFoundError):
        root.read_versioned("p/absent")
