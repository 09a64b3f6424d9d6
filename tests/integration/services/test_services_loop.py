"""The whole used-by loop on one machine, as ``make services`` starts it
(:mod:`components.orchestration.services`): an MLflow tracking server with basic auth (infra's
server arguments and auth settings, SQLite stores), the local Airflow 3 with the DAG tracking to
it as the pipeline user, and the scoring server for ``models:/pinsage@champion``.

* The scheduler's own run of the DAG (unpaused, ``@weekly``, catchup off) runs every stage into
  its interval's folder and registers version 1 on the server; the scoring endpoint answers with
  it. On the server: the run with its params, metrics, history and plots, logged by the pipeline
  user; a client without credentials or with a wrong password is refused (401) and writes
  nothing; a user with READ permission (the server's default) may look but not move the
  ``champion`` alias (403); no password appears in the run folders, the task logs or the run's
  params and tags.
* The config changes (more training: better validation metrics) and a second run registers
  version 2, which the gate promotes; the same scoring server, never restarted, answers with
  version 2 within a few polls. ``pinsage rollback`` moves the alias back and the endpoint
  answers with version 1 again, the same answer as before.
* A broken input fails the raw task after its configured retry, with the stage's one-line error
  in the task log and no traceback.

The credentials file is mode 600; on exit every recorded process group is gone.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml
from service_fixtures import SPARK_DEFAULTS, VENV_BIN, Api, free_port, task_seconds, task_states, wait_run

from components.orchestration import airflow_local, services

REPO = Path(__file__).resolve().parents[3]
NAME = "pinsage"  # tracking.registered_model's default: what the scoring server follows
QUERY = {"inputs": [{"item_ids": ["i0000007"]}, {"item_ids": ["i0000003", "i0000011"]}], "params": {"k": 5}}
# Version 1 is trained briefly and version 2 for longer: the config change that makes the second
# run's validation metrics better (hit rate and MRR both, as the gate asks).
WEAK, STRONG = {"epochs": 1, "base_lr": 0.001}, {"epochs": 2, "base_lr": 0.01}
TASKS = ("prepare", "raw", "pairs", "graph", "features", "neighbourhoods", "model", "embeddings")
TASKS += ("evaluation", "registration", "index")


def write_config(path: Path, tmp: Path, train: dict) -> None:
    cfg = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    cfg["data"] = {
        "source": "table",
        "interactions_path": str(tmp / "data" / "interactions.parquet"),
        "items_path": str(tmp / "data" / "items.parquet"),
    }
    cfg["spark"] = {"master": "local[2]", "driver_memory": "1g", "shuffle_partitions": 2}
    cfg["train"].update(deterministic=True, **train)
    cfg["orchestration"] = {"run_root": str(tmp / "runs"), "schedule": "@weekly", "retries": 1, "retry_delay_s": 1}
    cfg["tracking"] = {"experiment": "services-loop"}  # the server: the services' env file
    path.write_text(yaml.safe_dump(cfg))


def recorded_groups(home: Path) -> list[int]:
    groups = list(json.loads((home / services.PIDS_FILE).read_text()).values())
    return groups + list(json.loads((home / "airflow" / airflow_local.PIDS_FILE).read_text()).values())


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    """The services on tiny tabular data, and the scheduler's first run of the whole DAG."""
    tmp = tmp_path_factory.mktemp("services")
    gen = subprocess.run(
        [str(VENV_BIN / "pinsage"), "generate", "--preset", "tiny", "--out", str(tmp / "data")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert gen.returncode == 0, gen.stderr[-2000:]
    conf = tmp / "tiny.yaml"
    write_config(conf, tmp, WEAK)
    (tmp / "spark-conf").mkdir()
    (tmp / "spark-conf" / "spark-defaults.conf").write_text(SPARK_DEFAULTS)
    home = tmp / "home"
    t0 = time.perf_counter()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SPARK_CONF_DIR", str(tmp / "spark-conf"))  # inherited by the Airflow tasks
        for key in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            env.delenv(key, raising=False)
        ports = {"mlflow_port": free_port(), "airflow_port": free_port(), "scoring_port": free_port()}
        info = services.start(home, conf, **ports, poll_s=1)
    groups = recorded_groups(home)
    try:
        print(f"services up in {time.perf_counter() - t0:.0f} s")
        api = Api(info["airflow"], *info["airflow_login"])
        deadline = time.monotonic() + 90
        while api("GET", "dags/pinsage").status_code != 200:  # the DAG processor's first parse
            assert time.monotonic() < deadline, "DAG 'pinsage' never appeared; read the dag-processor log"
            time.sleep(1)
        assert requests.get(f"{info['scoring']}/ping", timeout=10).status_code == 503  # no champion yet
        t0 = time.perf_counter()
        # unpausing lets the scheduler start the latest interval on its own (catchup off)
        assert api("PATCH", "dags/pinsage", json={"is_paused": False}).json()["is_paused"] is False
        deadline = time.monotonic() + 60
        while not (runs := api("GET", "dags/pinsage/dagRuns").json()["dag_runs"]):
            assert time.monotonic() < deadline, "the scheduler started no run"
            time.sleep(1)
        assert [r["run_type"] for r in runs] == ["scheduled"], runs
        run_id = runs[0]["dag_run_id"]
        first = wait_run(api, run_id, timeout_s=400)
        print(f"scheduled run: {first['state']} in {time.perf_counter() - t0:.0f} s ({task_seconds(api, run_id)})")
        yield {"info": info, "api": api, "conf": conf, "tmp": tmp, "first": first, "states": task_states(api, run_id)}
    finally:
        assert set(services.stop(home)) == {"mlflow", "scoring", "api-server", "scheduler", "dag-processor"}
        alive = []
        for pgid in groups:
            try:
                os.killpg(pgid, 0)
                alive.append(pgid)
            except ProcessLookupError:
                pass
        assert alive == []  # every recorded process group ended, its members included
        assert not (home / services.PIDS_FILE).exists()


def run_dir(tmp: Path, run: dict) -> Path:
    start, end = (
        run[k].replace("-", "").replace(":", "")[:15] + "Z" for k in ("data_interval_start", "data_interval_end")
    )
    return tmp / "runs" / (start if start == end else f"{start}_{end}")  # dags.pinsage_dag.interval_key


def decision(tmp: Path, run: dict) -> dict:
    return json.loads((run_dir(tmp, run) / "registration" / "decision.json").read_text())


def score(info: dict) -> tuple[str, list]:
    resp = requests.post(f"{info['scoring']}/invocations", json=QUERY, timeout=60)
    assert resp.status_code == 200, resp.text
    return resp.headers["X-Model-Version"], resp.json()["predictions"]


def wait_serving(info: dict, version: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while requests.get(f"{info['scoring']}/version", timeout=10).json()["version"] != version:
        assert time.monotonic() < deadline, f"the scoring server did not load version {version}"
        time.sleep(0.5)


def mlflow_api(url: str, method: str, path: str, auth=None, **kw) -> requests.Response:
    return requests.request(method, f"{url}/api/2.0/mlflow/{path}", auth=auth, timeout=30, **kw)


@pytest.mark.slow
def test_a_scheduled_run_registers_version_1_on_the_auth_server_and_the_endpoint_serves_it(loop):
    info, tmp, first = loop["info"], loop["tmp"], loop["first"]
    assert first["state"] == "success" and first["run_type"] == "scheduled", loop["states"]
    assert loop["states"] == {t: ("success", 1) for t in TASKS}
    env_file = Path(info["env_file"])
    assert env_file.stat().st_mode & 0o777 == 0o600
    creds = airflow_local.read_env_file(env_file)
    url = info["mlflow"]
    assert (creds["MLFLOW_TRACKING_URI"], creds["MLFLOW_TRACKING_USERNAME"]) == (url, services.PIPELINE_USER)
    d1 = decision(tmp, first)
    assert (d1["tracking_uri"], d1["model_version"], d1["champion_after"]) == (url, 1, 1)
    wait_serving(info, 1)
    version, answer = score(info)
    assert version == "1" and [len(a["item_ids"]) for a in answer] == [5, 5] and answer[0]["error"] == ""

    # what landed on the server, read back as the admin
    from mlflow import MlflowClient

    admin = info["admin"]
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLFLOW_TRACKING_USERNAME", admin[0])
        env.setenv("MLFLOW_TRACKING_PASSWORD", admin[1])
        client = MlflowClient(tracking_uri=url)
        logged = client.get_run(d1["mlflow_run_id"])
        run = run_dir(tmp, first)
        metrics = json.loads((run / "evaluation" / "metrics.json").read_text())["methods"]["pinsage"]["validation"]
        losses = [e["loss"] for e in json.loads((run / "model" / "history.json").read_text())]
        assert logged.info.user_id == services.PIPELINE_USER
        assert logged.data.params["tracking.registered_model"] == NAME
        assert logged.data.metrics["eval.methods.pinsage.validation.mrr"] == pytest.approx(metrics["mrr"])
        history = sorted(client.get_metric_history(logged.info.run_id, "train.loss"), key=lambda m: m.step)
        assert [m.value for m in history] == pytest.approx(losses)
        logged_files = {f.path for f in client.list_artifacts(logged.info.run_id, "evaluation")}
        assert {"evaluation/report.md", "evaluation/hit_rate_curve.png"} <= logged_files
        champion = client.get_model_version_by_alias(NAME, "champion")
        assert champion.version == "1" and champion.run_id == logged.info.run_id
        assert champion.tags["model_fingerprint"] == d1["weights_digest"]

        # no credentials, or a wrong password: refused, and nothing is written
        pipeline = (services.PIPELINE_USER, creds["MLFLOW_TRACKING_PASSWORD"])
        for auth in (None, (pipeline[0], "wrong-" + pipeline[1])):
            resp = mlflow_api(url, "POST", "experiments/create", auth=auth, json={"name": "intruder"})
            assert resp.status_code == 401, (auth is None, resp.status_code, resp.text)
            body = {"name": NAME, "alias": "champion", "version": "1"}
            assert mlflow_api(url, "POST", "registered-models/alias", auth=auth, json=body).status_code == 401
        assert client.get_experiment_by_name("intruder") is None

        # READ (the default permission) may look but not move the champion
        reader = ("reader", secrets.token_urlsafe(16))
        body = {"username": reader[0], "password": reader[1]}
        assert mlflow_api(url, "POST", "users/create", auth=admin, json=body).status_code == 200
        assert mlflow_api(url, "GET", "registered-models/get", auth=reader, params={"name": NAME}).status_code == 200
        body = {"name": NAME, "alias": "champion", "version": "1"}
        resp = mlflow_api(url, "POST", "registered-models/alias", auth=reader, json=body)
        assert resp.status_code == 403, resp.text
        resp = mlflow_api(
            url, "DELETE", "registered-models/alias", auth=reader, json={"name": NAME, "alias": "champion"}
        )
        assert resp.status_code == 403, resp.text
        assert client.get_model_version_by_alias(NAME, "champion").version == "1"

    # no password in the run folders, nor in what the tasks printed, nor in the run's params and tags
    logs = tmp / "home" / "airflow" / "logs"
    for password in (pipeline[1], reader[1], admin[1]):
        for f in [*(tmp / "runs").rglob("*"), *logs.rglob("*")]:
            if f.is_file():
                assert password.encode() not in f.read_bytes(), f
        assert all(password not in str(v) for v in [*logged.data.params.values(), *logged.data.tags.values()])


@pytest.mark.slow
def test_a_better_run_is_promoted_and_served_without_a_restart_and_rollback_brings_version_1_back(loop):
    info, api, conf, tmp = loop["info"], loop["api"], loop["conf"], loop["tmp"]
    wait_serving(info, 1)
    _, answer1 = score(info)
    scoring_pid = json.loads((tmp / "home" / services.PIDS_FILE).read_text())["scoring"]
    write_config(conf, tmp, STRONG)  # each task reads the DAG's config when it starts
    t0 = time.perf_counter()
    body = {"dag_run_id": "better", "logical_date": "2026-03-02T00:00:00Z"}
    assert api("POST", "dags/pinsage/dagRuns", json=body).status_code == 200
    second = wait_run(api, "better", timeout_s=400)
    print(f"second run: {second['state']} in {time.perf_counter() - t0:.0f} s ({task_seconds(api, 'better')})")
    assert second["state"] == "success", task_states(api, "better")
    d1, d2 = decision(tmp, loop["first"]), decision(tmp, second)
    assert (d2["model_version"], d2["champion_before"], d2["champion_after"], d2["promoted"]) == (2, 1, 2, True), d2
    v1, v2 = (
        json.loads((run_dir(tmp, r) / "evaluation" / "metrics.json").read_text()) for r in (loop["first"], second)
    )
    before, after = (v["methods"]["pinsage"]["validation"] for v in (v1, v2))
    assert [after[m] > before[m] for m in ("hit_rate_at_10", "mrr")] == [True, True], (before, after)
    assert d1["weights_digest"] != d2["weights_digest"]
    wait_serving(info, 2)
    version, answer2 = score(info)
    assert version == "2" and answer2 != answer1
    assert json.loads((tmp / "home" / services.PIDS_FILE).read_text())["scoring"] == scoring_pid
    assert airflow_local.alive(scoring_pid)  # the same server process all along

    rollback = subprocess.run(
        [str(VENV_BIN / "pinsage"), "rollback", "--config", str(conf), "--run-area", str(tmp / "runs")],
        env={**os.environ, **airflow_local.read_env_file(Path(info["env_file"]))},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rollback.returncode == 0, rollback.stderr[-2000:]
    assert "rolled back from version 2 to version 1" in rollback.stdout
    wait_serving(info, 1)
    assert score(info) == ("1", answer1)


@pytest.mark.slow
def test_a_broken_input_fails_the_raw_task_after_its_retry_with_one_line(loop):
    api, tmp = loop["api"], loop["tmp"]
    (tmp / "data" / "interactions.parquet").write_bytes(b"not a parquet file")
    t0 = time.perf_counter()
    body = {"dag_run_id": "broken", "logical_date": "2026-03-09T00:00:00Z"}
    assert api("POST", "dags/pinsage/dagRuns", json=body).status_code == 200
    run = wait_run(api, "broken", timeout_s=120)
    print(f"broken run: {run['state']} in {time.perf_counter() - t0:.0f} s")
    states = task_states(api, "broken")
    assert run["state"] == "failed" and states["raw"] == ("failed", 2), states
    assert {s for t, (s, _) in states.items() if t not in ("prepare", "raw")} == {"upstream_failed"}
    resp = api("GET", "dags/pinsage/dagRuns/broken/taskInstances/raw/logs/2", params={"full_content": "true"})
    assert resp.status_code == 200, resp.text
    events = [e.get("event", "") if isinstance(e, dict) else str(e) for e in resp.json()["content"]]
    errors = [e for e in events if e.startswith("error: ") and "interactions.parquet" in e]
    assert len(errors) == 1 and "\n" not in errors[0], events[-30:]
    assert not any("Traceback" in e for e in events), events[-30:]
