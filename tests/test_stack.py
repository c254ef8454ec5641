"""The deployment, for real: `docker/stack.sh up` (what `make stack` runs) on free ports, then
the DAG under the scheduler and LocalExecutor on PostgreSQL, Spark standalone and S3.

The tests run in order on one stack and one data root, as one night after another would:
1. the scheduled run that unpausing creates completes, although one of its tasks is killed
   with SIGKILL mid-run (the scheduler retries it), and publishes once; the consumer DAG
   runs on the asset event;
2. the DAG's docs show in the web UI; a manual trigger from it in headless Chromium with
   top_n=10 publishes 10-item lists;
3. a trigger from the UI with every Param at its default, on broken raw data, fails at the
   raw gate without a retry, its log names the check, and LATEST is unchanged.
Screenshots and the task durations go to ``$NIGHTRECS_TEST_ARTIFACTS`` (default
``test-artifacts/stack``). Run with ``make stack-test`` (marker ``stack``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import signal
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO, free_port

pytestmark = pytest.mark.stack

DAG = "nightrecs_daily"
ARTIFACTS = Path(os.environ.get("NIGHTRECS_TEST_ARTIFACTS", REPO / "test-artifacts" / "stack"))
TODAY = dt.datetime.now(dt.UTC).date().isoformat()


class Stack:
    """The running stack: its REST API (as admin), its S3 root, its state folder."""

    def __init__(self, env: dict, state: Path):
        import logging

        import httpx

        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll otherwise

        self.env, self.state = env, state
        self.url = f"http://127.0.0.1:{env['STACK_PORT']}"
        self.password = json.loads((state / "secrets/ui-passwords.json").read_text())["admin"]
        token = httpx.post(f"{self.url}/auth/token", json={"username": "admin", "password": self.password})
        token.raise_for_status()
        self.http = httpx.Client(base_url=f"{self.url}/api/v2", timeout=30,
                                 headers={"Authorization": f"Bearer {token.json()['access_token']}"})

    def get(self, path: str, **params) -> dict:
        r = self.http.get(path, params=params)
        r.raise_for_status()
        return r.json()

    def runs(self, dag: str = DAG) -> list[dict]:
        return self.get(f"/dags/{dag}/dagRuns", order_by="run_after")["dag_runs"]

    def tasks(self, run_id: str) -> dict[str, dict]:
        return {t["task_id"]: t for t in self.get(f"/dags/{DAG}/dagRuns/{run_id}/taskInstances")["task_instances"]}

    def log(self, run_id: str, task: str, attempt: int) -> str:
        r = self.http.get(f"/dags/{DAG}/dagRuns/{run_id}/taskInstances/{task}/logs/{attempt}",
                          params={"full_content": True})
        r.raise_for_status()
        return "\n".join(line if isinstance(line, str) else json.dumps(line) for line in r.json()["content"])

    def wait_run(self, run_id: str, timeout: float = 900, dag: str = DAG) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            run = self.get(f"/dags/{dag}/dagRuns/{run_id}")
            if run["state"] in ("success", "failed"):
                return run
            assert time.monotonic() < deadline, f"{dag} {run_id} still {run['state']} after {timeout} s"
            time.sleep(2)  # polling the scheduler's progress, not timing anything

    def root(self):
        from nightrecs.tasks.storage import open_root

        return open_root(self.env["NIGHTRECS_ROOT"])


@pytest.fixture(scope="module")
def stack(tiny_model):
    """`docker/stack.sh up` with every port free and a small shop; `down` afterwards, checking
    that every recorded process is gone."""
    state = Path(tempfile.mkdtemp(prefix="nightrecs-stack-"))
    state.chmod(0o755)  # PostgreSQL runs as its own user (root may not run it) and must reach its folder
    ports = {name: str(free_port()) for name in ("STACK_PORT", "STACK_PG_PORT", "STACK_SPARK_PORT",
                                                  "STACK_SPARK_UI_PORT", "STACK_SPARK_WORKER_UI_PORT")}
    ports["STACK_S3_PORT"] = str(free_block())
    env = {**os.environ, **ports, "STACK_DIR": str(state), "STACK_BUCKET": "nightrecs-stack",
           "NIGHTRECS_ROOT": "s3://nightrecs-stack/shop", "NIGHTRECS_BASE_MODEL": tiny_model,
           "STACK_DEMO_ARGS": f"--users 300 --items 120 --days 20 --end-date {TODAY}",
           "STACK_RETRY_DELAY_SECONDS": "5", "STACK_SPARK_CORES": "1", "STACK_SPARK_MEMORY": "2g"}
    for var in ("AIRFLOW_HOME", "AIRFLOW__CORE__DAGS_FOLDER", "TQDM_DISABLE"):  # the test's own, not the stack's
        env.pop(var, None)
    pids: dict[str, int] = {}
    patch = pytest.MonkeyPatch()
    started = time.monotonic()
    up = subprocess.run([str(REPO / "docker/stack.sh"), "up"], env=env, capture_output=True, text=True, timeout=900)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "stack-up.log").write_text(up.stdout + up.stderr)
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        print(f"stack up in {time.monotonic() - started:.0f} s")
        pids = {p.stem: int(p.read_text()) for p in (state / "pids").glob("*.pid")}
        assert set(pids) == {"postgres", "s3", "spark-master", "spark-worker", "api-server", "scheduler",
                             "dag-processor", "triggerer"}
        s = Stack(env, state)
        for k, v in {"AWS_ACCESS_KEY_ID": "nightrecs", "AWS_SECRET_ACCESS_KEY": (state / "secrets/STACK_S3_SECRET")
                     .read_text().strip(), "AWS_ENDPOINT_URL": f"http://127.0.0.1:{ports['STACK_S3_PORT']}",
                     "AWS_DEFAULT_REGION": "us-east-1"}.items():
            patch.setenv(k, v)  # this process reads the stack's S3 as the tasks do
        yield s
    finally:
        patch.undo()
        down = subprocess.run([str(REPO / "docker/stack.sh"), "down"], env=env, capture_output=True, text=True,
                              timeout=600)
        (ARTIFACTS / "stack-down.log").write_text(down.stdout + down.stderr)
        for log in (state / "logs").glob("*.log"):
            (ARTIFACTS / f"service-{log.name}").write_text(log.read_text(errors="replace")[-200_000:])
        left = list((state / "pids").glob("*.pid"))
        shutil.rmtree(state, ignore_errors=True)
    assert not left
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # every service stopped by its own pid


def free_block(first: int = 20000, last: int = 30000) -> int:
    """A port p with p..p+5 and p+10000..p+10005 free (SeaweedFS's S3 port and its inner servers)."""
    import socket

    for p in range(first, last, 10):
        try:
            with contextlib.ExitStack() as stack:
                for port in [*range(p, p + 6), *range(p + 10000, p + 10006)]:
                    s = stack.enter_context(socket.socket())
                    s.bind(("127.0.0.1", port))
            return p
        except OSError:
            continue
    raise RuntimeError("no free block of ports for SeaweedFS")


def listening_addresses(pids: set[int]) -> set[str]:
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    return {line.split()[3].rsplit(":", 1)[0] for line in out.splitlines()
            if any(f"pid={p}," in line for p in pids)}


def process_tree(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,pgid="], capture_output=True, text=True, check=True).stdout
    return {int(a) for a, b in (line.split() for line in out.splitlines()) if int(b) == pid}


def test_every_server_listens_on_loopback_only(stack):
    pids = set()
    for p in (stack.state / "pids").glob("*.pid"):
        pids |= process_tree(int(p.read_text()))
    addresses = listening_addresses(pids)
    assert addresses and addresses <= {"127.0.0.1", "[::ffff:127.0.0.1]"}, addresses


def test_scheduled_run_survives_a_killed_task_and_publishes_once(stack):
    deadline = time.monotonic() + 300
    while not (runs := stack.runs()):  # unpausing at creation makes today's scheduled run
        assert time.monotonic() < deadline, "no scheduled run appeared"
        time.sleep(2)
    run = runs[0]
    assert run["run_type"] == "scheduled" and run["logical_date"].startswith(TODAY)
    root = stack.root()

    victim = "build_features"
    deadline = time.monotonic() + 600
    while True:  # kill the step once it holds the root's run lock: mid-run by definition
        try:
            lock = json.loads(root.read_text("locks/run.json"))
        except FileNotFoundError:
            lock = {}
        if lock.get("holder") == f"step {victim} of {TODAY}":
            break
        assert stack.tasks(run["dag_run_id"]).get(victim, {}).get("state") in (None, "scheduled", "queued",
                                                                               "running"), "missed the window"
        assert time.monotonic() < deadline
        time.sleep(0.5)
    os.kill(lock["pid"], signal.SIGKILL)

    finished = stack.wait_run(run["dag_run_id"])
    tasks = stack.tasks(run["dag_run_id"])
    assert finished["state"] == "success", {t: v["state"] for t, v in tasks.items()}
    assert all(t["state"] == "success" for t in tasks.values())
    assert tasks[victim]["try_number"] == 2 and all(t["try_number"] == 1 for n, t in tasks.items() if n != victim)
    first_try = stack.log(run["dag_run_id"], victim, 1)
    retry = stack.log(run["dag_run_id"], victim, 2)
    assert "process gone" in retry  # took the dead try's run lock at once

    published = [k for k in root.list("recs/runs") if k.endswith("/manifest.json")]
    pointer = json.loads(root.read_text("recs/LATEST"))
    assert len(published) == 1 and pointer["manifest"] == published[0][len("recs/"):]
    assert pointer["run_date"] == TODAY

    rows = [f"| {name} | {t['try_number']} | {t['duration']:.1f} |" for name, t in
            sorted(tasks.items(), key=lambda kv: kv[1]["start_date"])]
    total = (dt.datetime.fromisoformat(finished["end_date"]) - dt.datetime.fromisoformat(finished["start_date"]))
    (ARTIFACTS / "scheduled-run.md").write_text(
        f"scheduled run {run['dag_run_id']}: {total.total_seconds():.0f} s\n\n| task | tries | seconds (last try) |\n"
        "| --- | ---: | ---: |\n" + "\n".join(rows) + "\n")
    print((ARTIFACTS / "scheduled-run.md").read_text(), first_try[-2000:])

    deadline = time.monotonic() + 300
    while not (consumers := stack.runs("nightrecs_personalize_export")):  # the Asset event schedules it
        assert time.monotonic() < deadline, "the consumer DAG did not run after the publish"
        time.sleep(2)
    assert consumers[0]["run_type"] == "asset_triggered"
    assert stack.wait_run(consumers[0]["dag_run_id"], dag="nightrecs_personalize_export")["state"] == "success"
    assert root.exists(f"exports/personalize/{pointer['run_id']}.jsonl")


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1100", f"--user-data-dir={ARTIFACTS.parent / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.implicitly_wait(60)  # one api-server worker renders slowly while a night runs on 2 cores
    yield driver
    driver.quit()


def open_trigger_form(browser, stack) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{stack.url}/dags/{DAG}")
    # the UI redirects to its login page from JavaScript, after get() returns: wait for
    # either page rather than reading the URL at once (that raced and skipped the login)
    first = browser.find_element(By.CSS_SELECTOR, "input[name='username'], button[aria-label='Trigger Dag']")
    if first.tag_name == "input":
        browser.find_element(By.NAME, "username").send_keys("admin")
        browser.find_element(By.NAME, "password").send_keys(stack.password)
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        browser.find_element(By.CSS_SELECTOR, "button[aria-label='Trigger Dag']")
        browser.get(f"{stack.url}/dags/{DAG}")
    browser.find_element(By.CSS_SELECTOR, "button[aria-label='Trigger Dag']").click()
    browser.find_element(By.NAME, "element_top_n")  # the Params form is there


def set_param(browser, name: str, value: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    field = browser.find_element(By.NAME, f"element_{name}")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", field)
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(value)


def submit_trigger(browser, stack, shot: str) -> dict:
    """Screenshot the form, press its Trigger button, return the run it made."""
    from selenium.webdriver.common.by import By

    before = {r["dag_run_id"] for r in stack.runs()}
    browser.save_screenshot(str(ARTIFACTS / shot))
    button = [b for b in browser.find_elements(By.CSS_SELECTOR, "[role=dialog] button") if b.text == "Trigger"][-1]
    assert button.is_enabled(), "the trigger form is not submittable"
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
    button.click()
    deadline = time.monotonic() + 60
    while not (new := [r for r in stack.runs() if r["dag_run_id"] not in before]):
        assert time.monotonic() < deadline, "pressing Trigger made no run"
        time.sleep(1)
    return new[0]


def test_dag_docs_show_in_the_ui(stack, browser):
    from selenium.webdriver.common.by import By

    open_trigger_form(browser, stack)  # logs in
    browser.get(f"{stack.url}/dags/{DAG}")
    from selenium.webdriver.support.ui import WebDriverWait

    browser.find_element(By.CSS_SELECTOR, "button[aria-label='Dag Docs']").click()
    # the docs dialog fades in: its text is in the page before it is visible
    WebDriverWait(browser, 60).until(lambda b: any(
        e.is_displayed() for e in b.find_elements(By.XPATH, "//*[contains(text(), 'gate the raw data')]")))
    browser.save_screenshot(str(ARTIFACTS / "dag-docs.png"))


def test_trigger_from_the_web_ui_with_top_n_10(stack, browser):
    from selenium.webdriver.common.by import By

    from nightrecs.tasks.recs import Reader, iter_lines

    open_trigger_form(browser, stack)
    set_param(browser, "top_n", "10")
    set_param(browser, "max_per_category", "4")
    run = submit_trigger(browser, stack, "trigger-form.png")
    assert run["run_type"] == "manual" and run["conf"]["top_n"] == 10 and run["conf"]["max_per_category"] == 4
    finished = stack.wait_run(run["dag_run_id"])
    assert finished["state"] == "success", {t: v["state"] for t, v in stack.tasks(run["dag_run_id"]).items()}

    reader = Reader(stack.root())
    assert reader.run()["top_n"] == 10 and reader.run()["run_date"] == TODAY
    users = [json.loads(line)["user_id"] for line in iter_lines(stack.root())]
    assert len(users) == reader.run()["users"] > 0
    assert all(len(reader.get(u)["items"]) == 10 for u in users[:50])

    browser.get(f"{stack.url}/dags/{DAG}/runs/{run['dag_run_id']}")
    browser.find_element(By.XPATH, "//*[contains(text(), 'publish')]")
    browser.save_screenshot(str(ARTIFACTS / "finished-grid.png"))


def test_failed_gate_from_the_ui_with_default_params(stack, browser):
    """Every Param left at its default (the form must be submittable as it opens)."""
    root = stack.root()
    latest = root.read_text("recs/LATEST")
    newest = max(k for k in root.list("raw/events") if k.endswith(".parquet"))
    day = newest.split("dt=")[1].split("/")[0]
    events = pd.read_parquet(io.BytesIO(root.read_bytes(newest)))
    events["event_type"] = "wishlist"  # not in the contract: every row is quarantined
    buf = io.BytesIO()
    events.to_parquet(buf, index=False)
    root.write_bytes(f"raw/events/dt={day}/part-00099.parquet", buf.getvalue())

    open_trigger_form(browser, stack)
    run = submit_trigger(browser, stack, "trigger-form-defaults.png")
    assert run["conf"]["top_n"] == 20  # the defaults went through the form unchanged
    finished = stack.wait_run(run["dag_run_id"])
    tasks = stack.tasks(run["dag_run_id"])
    assert finished["state"] == "failed"
    assert tasks["validate_raw"]["state"] == "failed" and tasks["validate_raw"]["try_number"] == 1  # no retry
    assert {tasks[t]["state"] for t in tasks if t not in ("resolve_config", "validate_raw")} == {"upstream_failed"}
    log = stack.log(run["dag_run_id"], "validate_raw", 1)
    assert "event_type" in log and "max_bad_fraction" in log
    errors = [line for line in log.splitlines() if '"level": "error"' in line]  # stderr noise would show here
    assert len(log.splitlines()) < 60 and 1 <= len(errors) <= 3 and all("failed" in e for e in errors), errors
    assert root.read_text("recs/LATEST") == latest
    assert f"step validate_raw of run date {TODAY} failed" in root.read_text(f"reports/{TODAY}/failures.log")
    (ARTIFACTS / "failed-gate-validate_raw.log").write_text(log)
