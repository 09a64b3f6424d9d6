"""The whole DAG under a real Airflow 3: API server, scheduler and DAG processor (LocalExecutor,
SQLite) started by :mod:`components.orchestration.airflow_local` (what ``make airflow`` runs) in a temp folder.

Every stage runs, registration and index included, each task in its own process as Airflow runs
it; the config is ``configs/tiny.yaml`` with the shared test Spark settings (a smaller JVM, the
local runner's comparison reuses the test session) and deterministic training, so that runs in
different processes give the same bytes. Tracking is off: a scheduled run tracking to an MLflow
server, a broken input failing after its retry and the served champion following the registry are
tests/integration/services/test_services_loop.py, on the services ``make services`` starts.

* Triggered through the authenticated REST API for a logical date (a DAG without a schedule, so
  nothing else runs meanwhile): every task succeeds at its first try and the run folder equals
  the local runner's; the run is cleared (the same logical date again: Airflow keeps one DAG run
  per logical date) and every task reruns into exactly the same folders, byte for byte.

Each test prints where its time went; the services are stopped by the process groups started.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Iterator

import pytest
import requests
import yaml
from run_fixtures import digests
from service_fixtures import SPARK_DEFAULTS, Api, free_port, task_seconds, task_states, wait_run

from components.orchestration import airflow_local

REPO = Path(__file__).resolve().parents[3]
WHEN = "2026-01-12T00:00:00Z"
WHEN_KEY = "20260112T000000Z"  # dags.pinsage_dag.interval_key of a manual run at WHEN
TASKS = (
    "prepare",
    "raw",
    "pairs",
    "graph",
    "features",
    "neighbourhoods",
    "model",
    "embeddings",
    "evaluation",
    "registration",
    "index",
)
# Not compared byte for byte: the saved TF Transform graph embeds function names generated per
# process (the Kubeflow test skips it too; the feature matrix it produced is compared), and each
# stage's report.json holds its own wall-clock timings and throughput (index: where it published).
# The Keras archive is compared by its members but metadata.json, which holds when it was saved.
PER_PROCESS = ("features/transform/",)
LOCAL_RUN = """
import sys
from components.orchestration.local_runner import run_pipeline
from pinsage_model.config import load_config
run_pipeline(load_config(sys.argv[1]), sys.argv[2], logical_time=sys.argv[3])
"""
KERAS = "model/model.keras"


def comparable(run_dir: Path) -> dict[str, str]:
    """:func:`digests` of a run folder without what differs per process or per second (see above)."""
    files = {
        k: v for k, v in digests(run_dir).items() if not k.startswith(PER_PROCESS) and not k.endswith("report.json")
    }
    if KERAS in files:
        with zipfile.ZipFile(run_dir / KERAS) as z:
            members = {n: hashlib.sha256(z.read(n)).hexdigest() for n in z.namelist() if n != "metadata.json"}
        files[KERAS] = hashlib.sha256(json.dumps(members, sort_keys=True).encode()).hexdigest()
    return files


def index_report(run_dir: Path) -> dict:
    report = json.loads((run_dir / "index" / "report.json").read_text())
    return {k: report[k] for k in ("version", "serving")}


def differing(a: dict[str, str], b: dict[str, str]) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


@contextlib.contextmanager
def airflow_up(tmp: Path) -> Iterator[tuple[Api, Path]]:
    """Tiny data and config in ``tmp``, the three services started, the DAG (no schedule: runs
    only when triggered) parsed and unpaused."""
    cfg = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    cfg["data"] = {
        "source": "table",
        "interactions_path": str(tmp / "data" / "interactions.parquet"),
        "items_path": str(tmp / "data" / "items.parquet"),
    }
    cfg["spark"] = {"master": "local[2]", "driver_memory": "1g", "shuffle_partitions": 2}  # SPARK_TEST's JVM
    cfg["train"]["deterministic"] = True
    cfg["orchestration"] = {
        "run_root": str(tmp / "runs"),
        "schedule": "",
        "retries": 1,
        "retry_delay_s": 1,
    }
    cfg["tracking"] = {"enabled": False}
    conf = tmp / "tiny.yaml"
    conf.write_text(yaml.safe_dump(cfg))
    gen = subprocess.run(
        [str(Path(sys.executable).parent / "pinsage"), "generate", "--preset", "tiny", "--out", str(tmp / "data")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert gen.returncode == 0, gen.stderr[-2000:]
    # Each Spark task starts its own JVM for a few seconds of work on the tiny data: a
    # spark-defaults.conf (Spark's own mechanism, in the services' environment only) turns off
    # whole-stage code generation and gives the driver JVM the quick-start flags of a short-lived
    # JVM (client compiler only, serial GC); about 40 % less time per Spark task on 2 cores, the
    # same results (the local runner's session runs without it).
    spark_conf = tmp / "spark-conf"
    spark_conf.mkdir()
    (spark_conf / "spark-defaults.conf").write_text(SPARK_DEFAULTS)
    t0 = time.perf_counter()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SPARK_CONF_DIR", str(spark_conf))  # read by airflow_local.start, inherited by the tasks
        info = airflow_local.start(tmp / "home", conf, port=free_port())
    try:
        api = Api(info["url"], info["user"], info["password"])
        assert requests.get(f"{info['url']}/api/v2/dags/pinsage", timeout=10).status_code == 401  # no token, no answer
        deadline = time.monotonic() + 90
        while api("GET", "dags/pinsage").status_code != 200:  # the DAG processor's first parse
            assert time.monotonic() < deadline, "DAG 'pinsage' never appeared; read the dag-processor log"
            time.sleep(1)
        print(f"airflow services up and the DAG parsed in {time.perf_counter() - t0:.0f} s")
        assert api("PATCH", "dags/pinsage", json={"is_paused": False}).json()["is_paused"] is False
        yield api, conf
    finally:
        assert set(airflow_local.stop(tmp / "home")) == {"api-server", "scheduler", "dag-processor"}


@pytest.fixture(scope="module")
def triggered(tmp_path_factory):
    """Services with the DAG on no schedule, one whole run triggered for ``WHEN``, and the local
    runner's run of the same config and logical time into ``<tmp>/local``.

    The local runner runs while Airflow does: an Airflow run mostly waits (a process per task,
    the scheduler's polling), so the two together take little more than the Airflow run alone.
    It runs in a fresh process, as each Airflow task does: Keras numbers auto-named layers per
    process, so a model built after other tests' models in this process would save other names.
    """
    tmp = tmp_path_factory.mktemp("airflow")
    with airflow_up(tmp) as (api, conf):
        t0 = time.perf_counter()
        resp = api("POST", "dags/pinsage/dagRuns", json={"dag_run_id": "test", "logical_date": WHEN})
        assert resp.status_code == 200, resp.text
        local = subprocess.Popen(
            [sys.executable, "-c", LOCAL_RUN, str(conf), str(tmp / "local"), WHEN],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            run = wait_run(api, "test", timeout_s=300)
            print(f"triggered run: {run['state']} in {time.perf_counter() - t0:.0f} s ({task_seconds(api, 'test')})")
            _, local_err = local.communicate(timeout=400)
        finally:
            if local.poll() is None:
                local.kill()
        print(f"local runner done after {time.perf_counter() - t0:.0f} s")
        assert local.returncode == 0, local_err[-3000:]
        yield api, conf, tmp, run, task_states(api, "test"), comparable(tmp / "runs" / WHEN_KEY)


@pytest.mark.slow
def test_a_triggered_run_of_the_whole_dag_equals_the_local_runner(triggered):
    api, conf, tmp, run, states, files = triggered
    assert run["state"] == "success" and run["run_type"] == "manual", states
    assert states == {t: ("success", 1) for t in TASKS}
    assert [p.name for p in (tmp / "runs").iterdir() if p.name[0].isdigit()] == [WHEN_KEY]  # its interval's folder only
    for f in (
        "config.resolved.yaml",
        "raw/interactions.parquet",
        "pairs/pairs.parquet",
        "graph/item_ids.parquet",
        "features/features.npy",
        "model/weights.npz",
        KERAS,
        "embeddings/items.npy",
        "evaluation/metrics.json",
        "registration/decision.json",
    ):
        assert f in files, f
    assert index_report(tmp / "runs" / WHEN_KEY)["serving"] is True
    assert differing(files, comparable(tmp / "local")) == []
    assert index_report(tmp / "runs" / WHEN_KEY) == index_report(tmp / "local")  # the same index version


@pytest.mark.slow
def test_a_rerun_of_the_same_logical_date_rewrites_the_same_folders(triggered):
    api, conf, tmp, run, states, files = triggered
    assert run["state"] == "success", states
    folders = sorted(p.name for p in (tmp / "runs").iterdir())
    run_dir = tmp / "runs" / WHEN_KEY
    written = {t: (run_dir / t).stat().st_ino for t in TASKS[1:]}  # each stage's output folder
    t0 = time.perf_counter()
    resp = api("POST", "dags/pinsage/dagRuns/test/clear", json={"dry_run": False})  # every task of the run again
    assert resp.status_code == 200, resp.text
    rerun = wait_run(api, "test", timeout_s=220)
    print(f"cleared run: {rerun['state']} in {time.perf_counter() - t0:.0f} s ({task_seconds(api, 'test')})")
    assert rerun["state"] == "success", task_states(api, "test")
    assert task_states(api, "test") == {t: ("success", 2) for t in TASKS}
    assert sorted(p.name for p in (tmp / "runs").iterdir()) == folders
    # every stage folder was replaced (a new folder renamed into place), with the same bytes
    assert [t for t in TASKS[1:] if (run_dir / t).stat().st_ino == written[t]] == []
    assert differing(files, comparable(tmp / "runs" / WHEN_KEY)) == []
