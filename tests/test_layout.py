"""The code's shape: one namespace, layers that only point down, no import cycles.

dags -> nightrecs.tasks -> nightrecs.models / nightrecs.spark_jobs / nightrecs.expectations
-> nightrecs.contract, and dags -> nightrecs.airflow_glue (what the DAGs take from Airflow,
importing nothing of ours); nothing upward, no two of the middle layer import each other except
models and expectations importing nothing from spark_jobs or tasks. Read from the source
with ``ast`` (import-linter's graph builder cannot follow a package-dir mapping).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import REPO

PACKAGES = {"nightrecs": "nightrecs", "tasks": "nightrecs.tasks", "models": "nightrecs.models",
            "spark_jobs": "nightrecs.spark_jobs", "expectations": "nightrecs.expectations"}
# layer -> the layers it may import
ALLOWED = {
    "dags": {"nightrecs.tasks", "nightrecs.airflow_glue"},
    "nightrecs.airflow_glue": set(),
    "nightrecs.tasks": {"nightrecs.tasks", "nightrecs.models", "nightrecs.spark_jobs", "nightrecs.expectations",
                        "nightrecs.contract"},
    "nightrecs.models": {"nightrecs.models", "nightrecs.contract"},
    "nightrecs.spark_jobs": {"nightrecs.spark_jobs", "nightrecs.contract"},
    "nightrecs.expectations": {"nightrecs.expectations", "nightrecs.contract"},
    "nightrecs.contract": set(),
}


def modules() -> dict[str, Path]:
    out = {}
    for folder, package in PACKAGES.items():
        for path in sorted((REPO / folder).glob("*.py")):
            out[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    for path in (REPO / "dags").glob("*.py"):
        out[f"dags.{path.stem}"] = path
    return out


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def layer(module: str) -> str:
    if module.startswith("dags."):
        return "dags"
    if module in ("nightrecs", "nightrecs.contract"):
        return "nightrecs.contract"
    return ".".join(module.split(".")[:2])


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: {i for i in imports(p) if i in mods and i != m} for m, p in mods.items()}


def test_no_generic_top_level_imports():
    bad = {m: sorted(i for i in imports(p) if i.split(".")[0] in ("tasks", "models", "spark_jobs", "expectations"))
           for m, p in modules().items()}
    assert not {m: i for m, i in bad.items() if i}


def test_layers_only_point_down():
    wrong = {(m, i) for m, deps in graph().items() for i in deps if layer(i) not in ALLOWED[layer(m)]}
    assert not wrong


def test_no_import_cycles():
    g, state, cycles = graph(), {}, []

    def visit(m: str, path: list[str]) -> None:
        state[m] = "open"
        for d in sorted(g[m]):
            if state.get(d) == "open":
                cycles.append(path[path.index(d):] + [d] if d in path else [m, d])
            elif d not in state:
                visit(d, path + [d])
        state[m] = "done"

    for m in sorted(g):
        if m not in state:
            visit(m, [m])
    assert not cycles


def test_the_wheel_installs_one_top_level_package(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(REPO)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("nightrecs-*.whl"))
    tops = {n.split("/")[0] for n in zipfile.ZipFile(wheel).namelist() if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"nightrecs"}
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"nightrecs/tasks/lists.py", "nightrecs/models/data.py", "nightrecs/contract.py"} <= names
