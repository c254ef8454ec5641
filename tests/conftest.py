"""Shared fixtures: a tiny text model, a small demo shop, a real S3 server (SeaweedFS).

Airflow reads AIRFLOW_HOME at import, so it is pointed at a temp dir before anything
imports airflow.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from nightrecs.spark_jobs.standalone import free_port, stop_process_group  # noqa: F401 (the tests use both)

REPO = Path(__file__).resolve().parents[1]
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="nightrecs-airflow-")
os.environ.update({
    "AIRFLOW_HOME": _AIRFLOW_HOME,
    "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "NIGHTRECS_SHUFFLE_PARTITIONS": "2",
    "TQDM_DISABLE": "1",
})

SHOP_DATE = "2026-03-10"  # first day without events in the test shop


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """A 2-layer, 32-wide BERT with the real MiniLM tokenizer: same code path, seconds to train."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from nightrecs.models.text import default_base_model

    out = tmp_path_factory.mktemp("tiny-model")
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(default_base_model()).save_pretrained(out)
    return str(out)


def make_shop(root_uri: str, **kw) -> dict:
    from nightrecs.tasks.demo_data import ShopSpec, generate
    from nightrecs.tasks.storage import open_root

    spec = ShopSpec(**{"users": 120, "items": 60, "days": 8, "end_date": SHOP_DATE, "seed": 3, **kw})
    return generate(open_root(root_uri), spec)


@pytest.fixture(scope="session")
def shop_template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shop")
    make_shop(str(root))
    return root


@pytest.fixture
def shop(shop_template, tmp_path) -> Path:
    """A fresh copy of the small demo shop that a test may change."""
    dest = tmp_path / "shop"
    shutil.copytree(shop_template, dest)
    return dest


@pytest.fixture(scope="session")
def published_shop(tmp_path_factory, shop_template, tiny_model) -> Path:
    """The small shop after one full successful run (recs/ published)."""
    from nightrecs.tasks.layout import RunConfig
    from nightrecs.tasks.pipeline import run_pipeline

    root = tmp_path_factory.mktemp("published") / "shop"
    shutil.copytree(shop_template, root)
    run_pipeline(RunConfig(root=str(root), date=SHOP_DATE, top_n=10, train_epochs=3,
                           batch_size=8, base_model=tiny_model))
    return root


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """SeaweedFS (`weed mini`) on 127.0.0.1 with credentials; stopped by its pid."""
    weed = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
    data = tmp_path_factory.mktemp("seaweed")
    port = free_port()
    creds = {"AWS_ACCESS_KEY_ID": "nightrecs-test", "AWS_SECRET_ACCESS_KEY": "nightrecs-secret"}
    log = open(data / "weed.log", "wb")
    proc = subprocess.Popen(
        [weed, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
         f"-s3.port={port}", "-s3.port.iceberg=0", "-s3.port.lance=0"],
        env={**os.environ, **creds}, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    env = {**creds, "AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": "us-east-1"}
    try:
        _wait_for_s3(env, proc, data / "weed.log")
        yield env
    finally:
        stop_process_group(proc)
        log.close()


def _wait_for_s3(env: dict, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    import boto3
    from botocore.config import Config

    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"],
                          aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                          region_name="us-east-1",
                          config=Config(s3={"addressing_style": "path"},
                                        retries={"max_attempts": 1}, connect_timeout=1))
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"weed exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            client.list_buckets()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)  # polling for readiness, not timing anything


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """AWS variables pointing boto3 at the test server, and a fresh bucket."""
    import uuid

    for k, v in s3_server.items():
        monkeypatch.setenv(k, v)
    from nightrecs.tasks.storage import s3_client

    bucket = f"t-{uuid.uuid4().hex[:12]}"
    s3_client().create_bucket(Bucket=bucket)
    return {"bucket": bucket, **s3_server}
