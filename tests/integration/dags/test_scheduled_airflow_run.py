"""The DAG under a real Airflow 3: API server, scheduler and DAG processor (LocalExecutor, SQLite)
started by :mod:`components.airflow_local` (what ``make airflow`` runs) in a temp folder.

Through the authenticated REST API the test unpauses the DAG and triggers a run for a logical
date; every task must succeed and the run folder must equal the local runner's. A second run for
the same logical date (cleared: Airflow keeps one DAG run per logical date) rewrites exactly the
same folders (idempotence), and the run the scheduler starts by itself once the DAG is unpaused
(the latest interval; catchup is off) succeeds into its interval's folder. Then a stage whose
input is broken fails as a task, after the configured retry, with the stage's one-line error in
its task log. The services are stopped at the end, by the process groups that were started.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from components import airflow_local
from run_fixtures import digests
from service_fixtures import free_port

REPO = Path(__file__).resolve().parents[3]
WHEN = "2026-01-12T00:00:00Z"
# The data stages (ingest and the first Spark stage): the scheduler's wiring is what is under test,
# and every later Spark or TensorFlow task would start its own JVM or TensorFlow (< 4 min on 2 cores).
STOP_AFTER = "pairs"


class Api:
    """The Airflow REST API v2 with a JWT from ``/auth/token``."""

    def __init__(self, url: str, user: str, password: str):
        self.url = url
        resp = requests.post(f"{url}/auth/token", json={"username": user, "password": password}, timeout=30)
        assert resp.status_code in (200, 201), resp.text
        self.headers = {"Authorization": f"Bearer {resp.json()['access_token']}"}

    def __call__(self, method: str, path: str, headers: dict | None = None, **kw) -> requests.Response:
        return requests.request(method, f"{self.url}/api/v2/{path}", headers={**self.headers, **(headers or {})}, timeout=30, **kw)


def wait_run(api: Api, run_id: str, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = api("GET", f"dags/pinsage/dagRuns/{run_id}").json()
        if run.get("state") in ("success", "failed"):
            return run
        time.sleep(2)
    pytest.fail(f"DAG run {run_id} not finished within {timeout_s} s: {run}")


def task_states(api: Api, run_id: str) -> dict[str, tuple[str, int]]:
    tis = api("GET", f"dags/pinsage/dagRuns/{run_id}/taskInstances").json()["task_instances"]
    return {t["task_id"]: (t["state"], t["try_number"]) for t in tis}


@pytest.fixture(scope="module")
def airflow(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("airflow")
    cfg = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    cfg["data"] = {"source": "table", "interactions_path": str(tmp / "data" / "interactions.parquet"),
                   "items_path": str(tmp / "data" / "items.parquet")}
    cfg["orchestration"] = {"run_root": str(tmp / "runs"), "stop_after": STOP_AFTER, "retries": 1, "retry_delay_s": 1}
    cfg["tracking"] = {"enabled": False}
    conf = tmp / "tiny.yaml"
    conf.write_text(yaml.safe_dump(cfg))
    t0 = time.perf_counter()
    info = airflow_local.start(tmp / "home", conf, port=free_port())
    print(f"airflow services up in {time.perf_counter() - t0:.1f} s")
    try:
        yield info, conf, tmp
    finally:
        assert set(airflow_local.stop(tmp / "home")) == {"api-server", "scheduler", "dag-processor"}


@pytest.mark.slow
def test_scheduled_runs_equal_the_local_runner_rerun_identically_and_fail_with_the_stage_error(airflow, tmp_path):
    from components.local_runner import run_pipeline
    from pinsage_model.config import load_config

    info, conf, tmp = airflow
    data = tmp / "data"
    gen = subprocess.run([str(Path(sys.executable).parent / "pinsage"), "generate", "--preset", "tiny", "--out", str(data)],
                         capture_output=True, text=True, timeout=120)
    assert gen.returncode == 0, gen.stderr[-2000:]
    api = Api(info["url"], info["user"], info["password"])
    assert requests.get(f"{info['url']}/api/v2/dags/pinsage", timeout=10).status_code == 401  # no token, no answer

    deadline = time.monotonic() + 90
    while api("GET", "dags/pinsage").status_code != 200:  # the DAG processor's first parse
        assert time.monotonic() < deadline, "DAG 'pinsage' never appeared; read the dag-processor log"
        time.sleep(2)
    assert api("PATCH", "dags/pinsage", json={"is_paused": False}).json()["is_paused"] is False

    runs = []
    for attempt in (1, 2):
        t0 = time.perf_counter()
        if attempt == 1:
            resp = api("POST", "dags/pinsage/dagRuns", json={"dag_run_id": "test", "logical_date": WHEN})
        else:  # the same logical date again: one DAG run per logical date, so clear it (every task reruns)
            resp = api("POST", "dags/pinsage/dagRuns/test/clear", json={"dry_run": False})
        assert resp.status_code == 200, resp.text
        run = wait_run(api, "test", timeout_s=150)
        print(f"scheduled run {attempt}: {run['state']} in {time.perf_counter() - t0:.1f} s")
        assert run["state"] == "success", task_states(api, "test")
        assert task_states(api, "test") == {t: ("success", attempt) for t in ("prepare", "raw", "pairs")}
        # one partition for the logical date, rewritten by the rerun
        runs.append(digests(tmp / "runs" / "20260112T000000Z"))
    # unpausing let the scheduler start the latest interval on its own (catchup off): it succeeds too
    scheduled = [r for r in api("GET", "dags/pinsage/dagRuns").json()["dag_runs"] if r["run_type"] == "scheduled"]
    assert len(scheduled) == 1, scheduled
    assert wait_run(api, scheduled[0]["dag_run_id"], timeout_s=120)["state"] == "success"
    start, end = (scheduled[0][k].replace("-", "").replace(":", "")[:15] + "Z" for k in ("data_interval_start", "data_interval_end"))
    key = start if start == end else f"{start}_{end}"  # dags.pinsage_dag.interval_key
    assert (tmp / "runs" / key / "pairs" / "pairs.parquet").exists()
    first, second = runs
    assert {"raw/interactions.parquet", "pairs/pairs.parquet", "config.resolved.yaml"} <= set(first)
    assert first == second

    local = tmp_path / "local"
    run_pipeline(load_config(conf), local, stop=STOP_AFTER, logical_time=WHEN)
    local_files = digests(local)
    assert {k: v for k, v in first.items() if k.startswith(("raw/", "pairs/"))} == {
        k: v for k, v in local_files.items() if k.startswith(("raw/", "pairs/"))
    }

    # a broken input: the raw task fails after its one retry, with the stage's one line in the log
    (data / "interactions.parquet").write_bytes(b"not a parquet file")
    resp = api("POST", "dags/pinsage/dagRuns", json={"dag_run_id": "test-broken", "logical_date": "2026-01-19T00:00:00Z"})
    assert resp.status_code == 200, resp.text
    run = wait_run(api, "test-broken", timeout_s=120)
    states = task_states(api, "test-broken")
    assert run["state"] == "failed" and states["raw"] == ("failed", 2), states
    assert states["pairs"][0] == "upstream_failed"
    resp = api("GET", "dags/pinsage/dagRuns/test-broken/taskInstances/raw/logs/2", params={"full_content": "true"})
    assert resp.status_code == 200, resp.text
    events = [e.get("event", "") if isinstance(e, dict) else str(e) for e in resp.json()["content"]]
    errors = [e for e in events if e.startswith("error: ") and "interactions.parquet" in e]
    assert len(errors) == 1 and "\n" not in errors[0], events[-30:]
    assert not any("Traceback" in e for e in events), events[-30:]
