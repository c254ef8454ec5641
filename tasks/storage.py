"""One small interface over a data root that is a local directory or an ``s3://`` URI.

Every pipeline step reads and writes through :class:`Root`, so the same code runs on a
laptop folder and on S3. S3 is reached with boto3; the endpoint, credentials and region
come from the standard AWS variables (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID`` ...),
so a MinIO/SeaweedFS endpoint needs no code change.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import logging
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)


def parquet_bytes(data: pd.DataFrame | pa.Table) -> bytes:
    """One Parquet file's bytes; timestamps in microseconds (what Spark reads)."""
    buf = io.BytesIO()
    table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
    pq.write_table(table, buf, coerce_timestamps="us", allow_truncated_timestamps=True)
    return buf.getvalue()


class Root(ABC):
    """A data root; keys are '/'-separated paths relative to it."""

    uri: str

    @abstractmethod
    def read_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def stat(self, key: str) -> tuple[int, str]:
        """(size in bytes, a version that changes whenever the content may have: mtime or ETag)."""

    @abstractmethod
    def read_range(self, key: str, start: int, length: int) -> bytes:
        """``length`` bytes from offset ``start``: one ranged GET on S3."""

    @abstractmethod
    def read_versioned(self, key: str) -> tuple[bytes, str]:
        """(content, version) read together; the version is what :meth:`put_if` compares."""

    def read_if_changed(self, key: str, version: str | None) -> tuple[bytes, str] | None:
        """(content, version) when the object is no longer at ``version``, else None (on S3 a
        conditional GET: an unchanged object costs a 304, no body)."""
        data, now = self.read_versioned(key)
        return None if now == version else (data, now)

    @abstractmethod
    def put_if(self, key: str, data: bytes, version: str | None) -> str | None:
        """Compare-and-swap: write only if the object is still at ``version`` (None: only if
        it does not exist). Returns the new version, or None when another writer got there
        first: re-read, re-decide."""

    @abstractmethod
    def move(self, key: str, dest: str) -> None:
        """Rename one object (atomic on a local disk; copy + delete on S3)."""

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """All keys under ``prefix`` (recursive), sorted."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> None:
        """Delete the object ``prefix`` or everything under the folder ``prefix``."""

    @abstractmethod
    def download_dir(self, prefix: str, dest: Path) -> Path:
        """Make the files under ``prefix`` available in a local folder and return it."""

    @abstractmethod
    def upload_dir(self, src: Path, prefix: str) -> None:
        """Replace ``prefix`` with the contents of the local folder ``src``."""

    def join(self, *parts: str) -> str:
        return "/".join(p.strip("/") for p in parts if p)

    def full(self, key: str) -> str:
        return f"{self.uri.rstrip('/')}/{key}"

    def read_text(self, key: str) -> str:
        return self.read_bytes(key).decode("utf-8")

    def write_text(self, key: str, text: str) -> None:
        self.write_bytes(key, text.encode("utf-8"))

    def read_arrow(self, key: str, columns: list[str] | None = None) -> pa.Table:
        """One Parquet file, or every ``*.parquet`` under a prefix, as one Arrow table."""
        keys = [key] if key.endswith(".parquet") else [
            k for k in self.list(key) if k.endswith(".parquet")
        ]
        if not keys:
            raise FileNotFoundError(f"no Parquet files under {self.full(key)}")
        tables = [pq.read_table(io.BytesIO(self.read_bytes(k)), columns=columns) for k in keys]
        return pa.concat_tables(tables, promote_options="default")

    def read_parquet(self, key: str, columns: list[str] | None = None) -> pd.DataFrame:
        return self.read_arrow(key, columns).to_pandas()

    def write_parquet(self, key: str, data: pd.DataFrame | pa.Table) -> None:
        """Write one Parquet file; timestamps in microseconds (what Spark reads)."""
        self.write_bytes(key, parquet_bytes(data))


class LocalRoot(Root):
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser().resolve()
        self.uri = str(self.path)

    def local_path(self, key: str) -> Path:
        return self.path / key

    def read_bytes(self, key: str) -> bytes:
        return self.local_path(key).read_bytes()

    def write_bytes(self, key: str, data: bytes) -> None:
        """Write via a temporary file and rename, so a reader never sees a partial file."""
        target = self.local_path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)

    def exists(self, key: str) -> bool:
        return self.local_path(key).exists()

    def stat(self, key: str) -> tuple[int, str]:
        st = self.local_path(key).stat()
        return st.st_size, str(st.st_mtime_ns)

    def read_range(self, key: str, start: int, length: int) -> bytes:
        with open(self.local_path(key), "rb") as f:
            f.seek(start)
            return f.read(length)

    def read_versioned(self, key: str) -> tuple[bytes, str]:
        data = self.read_bytes(key)
        return data, hashlib.sha256(data).hexdigest()

    def put_if(self, key: str, data: bytes, version: str | None) -> str | None:
        """Under an exclusive lock on a sibling lock file, so two processes cannot both
        see the old version and both write; the write itself is an atomic rename."""
        target = self.local_path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target.with_name(f".{target.name}.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                current = self.read_versioned(key)[1]
            except FileNotFoundError:
                current = None
            if current != version:
                return None
            self.write_bytes(key, data)
            return hashlib.sha256(data).hexdigest()

    def move(self, key: str, dest: str) -> None:
        target = self.local_path(dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.local_path(key), target)

    def list(self, prefix: str) -> list[str]:
        base = self.local_path(prefix)
        if base.is_file():
            return [prefix]
        if not base.is_dir():
            return []
        return sorted(
            p.relative_to(self.path).as_posix()
            for p in base.rglob("*")  # hidden: temp files and half-written folders
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(base).parts)
        )

    def delete_prefix(self, prefix: str) -> None:
        target = self.local_path(prefix)
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()

    def download_dir(self, prefix: str, dest: Path) -> Path:
        return self.local_path(prefix)  # already local: no copy

    def upload_dir(self, src: Path, prefix: str) -> None:
        target = self.local_path(prefix)
        if src.resolve() == target.resolve():
            return
        self.delete_prefix(prefix)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, target)


class S3Root(Root):
    def __init__(self, uri: str) -> None:
        self.uri = uri.rstrip("/")
        bucket, _, prefix = uri[len("s3://"):].partition("/")
        if not bucket:
            raise ValueError(f"S3 root needs a bucket: {uri!r}")
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.client = s3_client()

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def s3a(self, key: str) -> str:
        """The same object as Hadoop's S3A connector names it."""
        return f"s3a://{self.bucket}/{self._key(key)}"

    def read_bytes(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self.client.exceptions.NoSuchKey as e:
            raise FileNotFoundError(self.full(key)) from e

    def write_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def read_range(self, key: str, start: int, length: int) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key),
                                          Range=f"bytes={start}-{start + length - 1}")["Body"].read()
        except self.client.exceptions.NoSuchKey as e:
            raise FileNotFoundError(self.full(key)) from e

    def read_versioned(self, key: str) -> tuple[bytes, str]:
        try:
            got = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.NoSuchKey as e:
            raise FileNotFoundError(self.full(key)) from e
        return got["Body"].read(), got["ETag"]

    def read_if_changed(self, key: str, version: str | None) -> tuple[bytes, str] | None:
        if version is None:
            return self.read_versioned(key)
        try:
            got = self.client.get_object(Bucket=self.bucket, Key=self._key(key), IfNoneMatch=version)
        except self.client.exceptions.NoSuchKey as e:
            raise FileNotFoundError(self.full(key)) from e
        except self.client.exceptions.ClientError as e:
            if e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 304:
                return None
            raise
        return got["Body"].read(), got["ETag"]

    def put_if(self, key: str, data: bytes, version: str | None) -> str | None:
        """A conditional PUT: ``If-Match`` the ETag read before, ``If-None-Match: *`` when
        there was none; the server answers 412 when another writer got there first."""
        condition = {"IfMatch": version} if version is not None else {"IfNoneMatch": "*"}
        try:
            return self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **condition)["ETag"]
        except self.client.exceptions.ClientError as e:
            if e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") in (409, 412):
                return None  # 409: a concurrent conditional write is in progress
            raise

    def exists(self, key: str) -> bool:
        """An object or a prefix; only "not found" is absent: a 403 or any other error
        raises (a denied read must not look like "nothing published yet")."""
        if self._list_keys(key, max_keys=1):
            return True
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except self.client.exceptions.ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def stat(self, key: str) -> tuple[int, str]:
        head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        return head["ContentLength"], head["ETag"].strip('"')

    def move(self, key: str, dest: str) -> None:
        self.client.copy_object(Bucket=self.bucket, Key=self._key(dest),
                                CopySource={"Bucket": self.bucket, "Key": self._key(key)})
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def _list_keys(self, prefix: str, max_keys: int | None = None) -> list[str]:
        full = self._key(prefix).rstrip("/") + "/"
        out: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=full
        ):
            out.extend(o["Key"] for o in page.get("Contents", []))
            if max_keys and len(out) >= max_keys:
                break
        strip = len(self.prefix) + 1 if self.prefix else 0
        return sorted(k[strip:] for k in out)

    def list(self, prefix: str) -> list[str]:
        return self._list_keys(prefix)

    def delete_prefix(self, prefix: str) -> None:
        """The object named ``prefix`` (if any) and every object under ``prefix/``."""
        keys = [prefix, *self._list_keys(prefix)]  # deleting an absent key is no error in S3
        for i in range(0, len(keys), 1000):
            self.client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": self._key(k)} for k in keys[i:i + 1000]]},
            )

    def download_dir(self, prefix: str, dest: Path) -> Path:
        base = prefix.rstrip("/") + "/"
        for key in self._list_keys(prefix):
            target = dest / key[len(base):]
            target.parent.mkdir(parents=True, exist_ok=True)
            self.client.download_file(self.bucket, self._key(key), str(target))
        return dest

    def upload_dir(self, src: Path, prefix: str) -> None:
        self.delete_prefix(prefix)
        for path in sorted(p for p in src.rglob("*") if p.is_file()):
            if path.name.startswith(".") or path.name.startswith("_"):
                continue  # Spark's _SUCCESS and .crc files
            key = self._key(self.join(prefix, path.relative_to(src).as_posix()))
            self.client.upload_file(str(path), self.bucket, key)


def s3_client():
    """A boto3 S3 client; path-style addressing whenever a custom endpoint is set."""
    import boto3
    from botocore.config import Config

    custom = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    config = Config(
        s3={"addressing_style": "path" if custom else "auto"},
        retries={"max_attempts": 5, "mode": "standard"},
        max_pool_connections=64,  # one client is shared by a read service's threads
    )
    return boto3.client("s3", config=config)


def open_root(uri: str | Path) -> Root:
    uri = str(uri)
    if uri.startswith("s3://"):
        return S3Root(uri)
    if "://" in uri:
        raise ValueError(f"unsupported data root {uri!r}: use a local path or s3://bucket/prefix")
    return LocalRoot(uri)


@contextmanager
def local_copy(root: Root, prefix: str) -> Iterator[Path]:
    """A local folder holding ``prefix`` (no copy for local roots; a temp dir for S3)."""
    with tempfile.TemporaryDirectory(prefix="nightrecs-") as tmp:
        yield root.download_dir(prefix, Path(tmp))


@contextmanager
def local_output(root: Root, prefix: str) -> Iterator[Path]:
    """A local folder to write into; only on success do its contents replace ``prefix`` in
    the root (a crash while writing leaves the old contents as they were). On a local root
    the folder is a sibling of the target, swapped in by two renames."""
    if isinstance(root, LocalRoot):
        target = root.local_path(prefix)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.new-"))
        try:
            yield tmp
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
        return
    with tempfile.TemporaryDirectory(prefix="nightrecs-") as tmp:
        yield Path(tmp)
        root.upload_dir(Path(tmp), prefix)
