"""The pipeline's tracking and registration against a real ``mlflow server --app-name basic-auth``
on 127.0.0.1, started with the server arguments and the auth config that ``infra/mlflow/`` deploys
(only the database, the artifact folder, the address and the secrets are local).

The pipeline user's credentials come from the environment (``MLFLOW_TRACKING_USERNAME`` /
``_PASSWORD``), as on the cluster. Checked: the run, its params, metrics, plots and the model
version are on the server; a client without credentials or with a wrong password is refused
(401) and writes nothing; a user with READ permission (the config's default) cannot move the
``champion`` alias (403); no password appears in the run folder or in what the run printed.
"""

from __future__ import annotations

import configparser
import json
import secrets
import time
from pathlib import Path

import pytest
import requests
import yaml
from run_fixtures import make_run
from service_fixtures import VENV_BIN, free_port, service, venv_env

from components.orchestration.execution import execute
from components.stages import StageContext, get_stage
from pinsage_model.config import config_from_dict

REPO = Path(__file__).resolve().parents[3]
NAME = "auth-model"
PIPELINE_USER, READER = "pinsage-pipeline", "reader"


def infra_docs() -> list[dict]:
    return [
        d
        for f in ("mlflow.yaml", "secrets.example.yaml.txt")
        for d in yaml.safe_load_all((REPO / "infra/mlflow" / f).read_text())
        if d
    ]


def deployed_server_args() -> list[str]:
    """The ``mlflow server`` arguments of infra/mlflow/mlflow.yaml's Deployment."""
    dep = next(d for d in infra_docs() if d["kind"] == "Deployment" and d["metadata"]["name"] == "mlflow")
    return dep["spec"]["template"]["spec"]["containers"][0]["args"]


def local_auth_config(path: Path, db: Path, admin_password: str) -> Path:
    """infra's basic_auth.ini (secret ``mlflow-auth``) with a local users database and password."""
    secret = next(d for d in infra_docs() if d["kind"] == "Secret" and d["metadata"]["name"] == "mlflow-auth")
    ini = configparser.ConfigParser()
    ini.read_string(secret["stringData"]["basic_auth.ini"])
    ini["mlflow"]["database_uri"] = f"sqlite:///{db}"
    ini["mlflow"]["admin_password"] = admin_password
    with open(path, "w") as f:
        ini.write(f)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A basic-auth tracking server; yields its URL, the admin login and the tmp folder."""
    tmp = tmp_path_factory.mktemp("mlflow-auth")
    admin_password = secrets.token_urlsafe(16)
    conf = local_auth_config(tmp / "basic_auth.ini", tmp / "auth.db", admin_password)
    ini = configparser.ConfigParser()
    ini.read(conf)
    assert ini["mlflow"]["default_permission"] == "READ"
    admin = (ini["mlflow"]["admin_username"], admin_password)
    port = free_port()
    local = {  # what differs from the cluster: where the stores live, where it listens
        "--host": "127.0.0.1",
        "--port": str(port),
        "--workers": "1",
        "--backend-store-uri": f"sqlite:///{tmp / 'mlflow.db'}",
        "--artifacts-destination": str(tmp / "artifacts"),
    }
    args = [a for a in deployed_server_args() if a.split("=")[0] not in local] + [f"{k}={v}" for k, v in local.items()]
    assert "--app-name=basic-auth" in args and "--serve-artifacts" in args
    env = venv_env(MLFLOW_AUTH_CONFIG_PATH=str(conf), MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(16))
    env.pop("MLFLOW_TRACKING_URI", None)
    url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    with service(
        [str(VENV_BIN / "mlflow"), "server", *args], env, tmp / "server.log", f"{url}/health", timeout_s=120, cwd=tmp
    ):
        print(f"basic-auth server up in {time.perf_counter() - t0:.1f} s")
        yield url, admin, tmp


def api(url: str, method: str, path: str, auth=None, **kw) -> requests.Response:
    return requests.request(method, f"{url}/api/2.0/mlflow/{path}", auth=auth, timeout=30, **kw)


def create_user(url: str, admin, user: str, password: str) -> None:
    resp = api(url, "POST", "users/create", auth=admin, json={"username": user, "password": password})
    assert resp.status_code == 200, resp.text


@pytest.mark.slow
def test_pipeline_tracks_and_registers_through_the_auth_server(server, tmp_path, monkeypatch, capfd):
    url, admin, _ = server
    pipeline_password, reader_password = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    create_user(url, admin, PIPELINE_USER, pipeline_password)
    create_user(url, admin, READER, reader_password)

    # the pipeline: tracking URI and credentials from the environment only
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", PIPELINE_USER)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", pipeline_password)
    cfg = config_from_dict({"name": "auth", "tracking": {"registered_model": NAME, "experiment": "auth-exp"}})
    run = make_run(tmp_path / "run1", seed=4, hr10=0.3, mrr=0.1, num_items=20, dim=8)
    stage = get_stage("registration")
    t0 = time.perf_counter()
    execute(
        stage,
        cfg,
        {n: run / n for n in stage.inputs},
        run / "registration",
        StageContext.create(tmp_path, "run1", "2026-01-12T00:00:00Z"),
    )
    print(f"registration over HTTP: {time.perf_counter() - t0:.1f} s")
    decision = json.loads((run / "registration" / "decision.json").read_text())
    assert decision["tracking_uri"] == url and decision["model_version"] == 1 and decision["champion_after"] == 1

    # what landed on the server, read back as the admin
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", admin[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", admin[1])
    client = MlflowClient(tracking_uri=url)
    logged = client.get_run(decision["mlflow_run_id"])
    assert logged.info.user_id == PIPELINE_USER
    assert logged.data.params["tracking.registered_model"] == NAME
    assert logged.data.metrics["eval.methods.pinsage.validation.mrr"] == 0.1
    assert [
        m.value for m in sorted(client.get_metric_history(logged.info.run_id, "train.loss"), key=lambda m: m.step)
    ] == [0.9, 0.5, 0.25]
    assert {"evaluation/hit_rate.png", "evaluation/report.md"} <= {
        f.path for f in client.list_artifacts(logged.info.run_id, "evaluation")
    }
    champion = client.get_model_version_by_alias(NAME, "champion")
    assert champion.version == "1" and champion.run_id == logged.info.run_id
    assert champion.tags["model_fingerprint"] == decision["weights_digest"]

    # no credentials, or a wrong password: refused, and nothing is written
    for auth in (None, (PIPELINE_USER, "wrong-" + pipeline_password)):
        resp = api(url, "POST", "experiments/create", auth=auth, json={"name": "intruder"})
        assert resp.status_code == 401, (auth is None, resp.status_code, resp.text)
        resp = api(
            url, "POST", "registered-models/alias", auth=auth, json={"name": NAME, "alias": "champion", "version": "1"}
        )
        assert resp.status_code == 401
    assert client.get_experiment_by_name("intruder") is None

    # READ (the default permission) may look but not move the champion
    reader = (READER, reader_password)
    assert api(url, "GET", "registered-models/get", auth=reader, params={"name": NAME}).status_code == 200
    resp = api(
        url, "POST", "registered-models/alias", auth=reader, json={"name": NAME, "alias": "champion", "version": "1"}
    )
    assert resp.status_code == 403, resp.text
    resp = api(url, "DELETE", "registered-models/alias", auth=reader, json={"name": NAME, "alias": "champion"})
    assert resp.status_code == 403, resp.text
    assert client.get_model_version_by_alias(NAME, "champion").version == "1"

    # no password in the run folder, nor in anything the run printed or logged
    out = capfd.readouterr()
    for password in (pipeline_password, reader_password, admin[1]):
        assert password not in out.out + out.err
        for f in tmp_path.rglob("*"):
            if f.is_file():
                assert password.encode() not in f.read_bytes(), f
    assert all(pipeline_password not in str(v) for v in [*logged.data.params.values(), *logged.data.tags.values()])
