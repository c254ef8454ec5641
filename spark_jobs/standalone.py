"""A Spark standalone cluster on this machine from the pip package (``spark-class``): a
master and one-core workers on 127.0.0.1, each its own process group, stopped by its PID.
For tests and benchmarks; a deployment starts its cluster with ``docker/stack.sh``."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spark_class(*args: str, log: Path) -> subprocess.Popen:
    import pyspark

    home = Path(pyspark.__file__).parent
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable}
    with open(log, "wb") as out:
        return subprocess.Popen([str(home / "bin" / "spark-class"), *args], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def stop_process_group(proc: subprocess.Popen, timeout: float = 40) -> None:
    """SIGTERM a server's own process group (started with ``start_new_session``), then SIGKILL."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextmanager
def standalone_cluster(work: Path, workers: int = 2, memory: str = "1g", timeout: float = 90) -> Iterator[str]:
    """Yields the master URL once ``workers`` one-core workers have registered; logs and
    the workers' work folders (executor logs) under ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    port, ui = free_port(), free_port()
    procs = {"master": _spark_class("org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port",
                                    str(port), "--webui-port", str(ui), log=work / "master.log")}
    try:
        for k in range(workers):
            procs[f"worker{k}"] = _spark_class(
                "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", "1", "--memory", memory,
                "--webui-port", str(free_port()), "--work-dir", str(work / f"work{k}"), f"spark://127.0.0.1:{port}",
                log=work / f"worker{k}.log")
        deadline = time.monotonic() + timeout
        while True:  # poll the master's status page until every worker has registered
            for name, p in procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"Spark {name} exited:\n{(work / f'{name}.log').read_text()[-2000:]}")
            try:
                status = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=2).read())
                if status.get("aliveworkers") == workers:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{workers} Spark worker(s) did not register with the master in {timeout:.0f} s")
            time.sleep(0.5)  # polling a server's start, not timing anything
        yield f"spark://127.0.0.1:{port}"
    finally:
        for p in reversed(list(procs.values())):
            stop_process_group(p)
