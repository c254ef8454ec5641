"""docker/docker-compose.yml against the compose spec's JSON schema (no Docker engine here),
and the images running exactly what `make stack` runs: docker/stack.sh subcommands."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

DOCKER = REPO / "docker"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def schema() -> dict:
    path = os.environ.get("NIGHTRECS_TEST_COMPOSE_SCHEMA")
    if not path:
        pytest.skip("NIGHTRECS_TEST_COMPOSE_SCHEMA is not set (make test sets it)")
    return json.loads(Path(path).read_text())


def test_compose_file_matches_the_compose_schema(compose, schema):
    import jsonschema

    jsonschema.Draft7Validator(schema).validate(compose)


def test_schema_rejects_a_broken_compose_file(compose, schema):
    """The schema check can fail: a misspelt service key is refused."""
    import jsonschema

    broken = json.loads(json.dumps(compose))
    broken["services"]["scheduler"]["comand"] = broken["services"]["scheduler"].pop("command")
    with pytest.raises(jsonschema.ValidationError, match="comand"):
        jsonschema.Draft7Validator(schema).validate(broken)


def stack_commands() -> tuple[set[str], set[str]]:
    """(stack.sh's top-level commands, the services of its ``run``)."""
    text = (DOCKER / "stack.sh").read_text()
    run = text[text.index("run_service() {"):text.index("wait_for() {")]
    top = text[text.rindex("case $command in"):]
    pattern = re.compile(r"^\s+([a-z0-9-]+)\)", re.M)
    return set(pattern.findall(top)), set(pattern.findall(run))


def test_every_nightrecs_container_runs_a_stack_sh_command(compose):
    commands, services = stack_commands()
    dockerfile = (DOCKER / "Dockerfile").read_text()
    targets = set(re.findall(r"^FROM \S+ AS (\S+)$", dockerfile, re.M))
    assert 'ENTRYPOINT ["/opt/nightrecs/docker/stack.sh"]' in dockerfile
    ours = {name: s for name, s in compose["services"].items() if s.get("image", "").startswith("nightrecs:")}
    assert set(ours) >= {"s3", "spark-master", "spark-worker", "airflow-init", "api-server", "scheduler",
                         "dag-processor", "triggerer", "worker", "gpu-worker"}
    for name, service in ours.items():
        assert service["build"]["target"] in targets, name
        command = service["command"]
        assert command[0] in commands, (name, command)
        if command[0] == "run":
            assert command[1] in services, (name, command)
    local = {s["command"][1] for s in ours.values() if s["command"][0] == "run"} - {"celery-worker"}
    up = (DOCKER / "stack.sh").read_text()
    assert local == set(re.search(r"^SERVICES=\((.*)\)$", up, re.M).group(1).split()) - {"postgres"}


def test_gpu_worker_takes_the_gpu_queue_on_a_reserved_gpu(compose):
    gpu = compose["services"]["gpu-worker"]
    assert gpu["command"] == ["run", "celery-worker", "gpu"] and gpu["build"]["target"] == "gpu"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices and "gpu" in devices[0]["capabilities"]
    assert compose["x-nightrecs"]["environment"]["NIGHTRECS_GPU_QUEUE"] == "gpu"
    assert compose["x-nightrecs"]["environment"]["STACK_EXECUTOR"] == "CeleryExecutor"


def test_only_the_web_ui_is_published_and_on_loopback(compose):
    published = {name: s["ports"] for name, s in compose["services"].items() if s.get("ports")}
    assert published == {"api-server": ["127.0.0.1:8080:8080"]}
