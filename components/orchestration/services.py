"""The whole used-by loop on one machine: ``make services`` / ``make services-stop``.

``python -m components.orchestration.services start --home runs/services --config configs/tiny.yaml``
starts, each in its own process group with its pid recorded:

1. an MLflow tracking server with basic auth (``mlflow server --app-name basic-auth``, the
   arguments and auth settings ``infra/mlflow/`` deploys, with a SQLite backend, a SQLite users
   database and a local artifact root under ``<home>/mlflow``); its ``admin`` password is
   generated once and kept in ``<home>/mlflow/basic_auth.ini`` (mode 600);
2. the local Airflow of :mod:`components.orchestration.airflow_local` (home ``<home>/airflow``)
   with the DAG tracking to that server as the ``pinsage-pipeline`` user: the tracking URI and
   that user's credentials are in ``<home>/services.env`` (mode 600, ``KEY=value`` lines), which
   the Airflow services, and so every task, read into their environment;
3. the scoring server of :mod:`components.registry.scoring` for ``models:/<name>@champion`` (the
   config's ``tracking.registered_model``), which loads a new version when the alias moves.

It prints the three addresses and the logins. ``stop --home ...`` ends exactly the process groups
that ``start`` recorded (``<home>/pids.json`` and Airflow's own ``<home>/airflow/pids.json``).
The MLflow databases and artifacts stay in ``<home>`` for the next start.
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path

from components.orchestration import airflow_local
from components.orchestration.airflow_local import read_env_file

REPO = Path(__file__).resolve().parents[2]
PIDS_FILE, ENV_FILE = "pids.json", "services.env"
PIPELINE_USER = "pinsage-pipeline"
INFRA = REPO / "infra" / "mlflow"


def _infra_docs() -> list[dict]:
    import yaml

    return [
        d for f in ("mlflow.yaml", "secrets.example.yaml.txt") for d in yaml.safe_load_all((INFRA / f).read_text()) if d
    ]


def deployed_server_args() -> list[str]:
    """The ``mlflow server`` arguments of ``infra/mlflow/mlflow.yaml``'s Deployment."""
    dep = next(d for d in _infra_docs() if d["kind"] == "Deployment" and d["metadata"]["name"] == "mlflow")
    return dep["spec"]["template"]["spec"]["containers"][0]["args"]


def local_server_args(folder: Path, port: int) -> list[str]:
    """The deployed server arguments with the stores in ``folder`` (SQLite backend, local artifact
    root) and the address 127.0.0.1:``port``, one worker."""
    local = {
        "--host": "127.0.0.1",
        "--port": str(port),
        "--workers": "1",
        "--backend-store-uri": f"sqlite:///{folder.resolve() / 'mlflow.db'}",
        "--artifacts-destination": str(folder.resolve() / "artifacts"),
    }
    return [a for a in deployed_server_args() if a.split("=")[0] not in local] + [f"{k}={v}" for k, v in local.items()]


def local_auth_config(path: Path, db: Path, admin_password: str) -> configparser.ConfigParser:
    """infra's ``basic_auth.ini`` (secret ``mlflow-auth``) with a SQLite users database ``db`` and
    ``admin_password``, written to ``path`` with mode 600."""
    secret = next(d for d in _infra_docs() if d["kind"] == "Secret" and d["metadata"]["name"] == "mlflow-auth")
    ini = configparser.ConfigParser()
    ini.read_string(secret["stringData"]["basic_auth.ini"])
    ini["mlflow"]["database_uri"] = f"sqlite:///{db.resolve()}"
    ini["mlflow"]["admin_password"] = admin_password
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        ini.write(f)
    return ini


def write_env_file(path: Path, values: dict[str, str]) -> None:
    """``KEY=value`` lines, created with mode 600 (it holds a password)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.writelines(f"{k}={v}\n" for k, v in values.items())
    os.replace(tmp, path)


def _venv_env(**extra: str) -> dict[str, str]:
    venv_bin = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}", **extra}
    env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    return env


def _spawn(cmd: list[str], env: dict[str, str], log: Path) -> int:
    """Start ``cmd`` in a process group of its own, output to ``log``; its pid."""
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return proc.pid


def _wait(url: str, pid: int, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if not airflow_local.alive(pid):
            raise RuntimeError(f"{url} exited at start; read {log}")
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout_s:.0f} s; read {log}")
        time.sleep(0.5)


def _create_user(url: str, admin: tuple[str, str], user: str, password: str) -> None:
    """Create ``user`` on the auth server, or set its password when it exists (a second start)."""
    token = b64encode(f"{admin[0]}:{admin[1]}".encode()).decode()
    for path, method in (("users/create", "POST"), ("users/update-password", "PATCH")):
        req = urllib.request.Request(
            f"{url}/api/2.0/mlflow/{path}",
            data=json.dumps({"username": user, "password": password}).encode(),
            headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
            method=method,
        )
        try:
            with urllib.request.urlopen(req, timeout=30):
                return
        except urllib.error.HTTPError as exc:
            if exc.code not in (400, 409) or path != "users/create":  # 400/409: the user exists
                raise RuntimeError(f"MLflow {path} for {user} failed: HTTP {exc.code} {exc.read()[:300]!r}") from None


def start(
    home: str | Path,
    config: str | Path,
    mlflow_port: int = 5000,
    airflow_port: int = 8080,
    scoring_port: int = 5001,
    poll_s: float = 5.0,
    timeout_s: float = 180,
) -> dict:
    """Start the tracking server, Airflow and the scoring server; returns their addresses and logins.

    Returns ``{"mlflow", "airflow", "scoring": url, "admin", "airflow_login": (user, password),
    "env_file": path, "pids": {...}}``.

    Raises RuntimeError when services of this home run already, or one did not come up (the
    message names its log); what had started is stopped again.
    """
    from pinsage_model.config import load_config

    home = Path(home).resolve()
    (home / "logs").mkdir(parents=True, exist_ok=True)
    if running(home):
        raise RuntimeError(f"services of {home} are already running (pids in {home / PIDS_FILE}); stop them first")
    cfg = load_config(config)
    store = home / "mlflow"
    ini_path, admin = _auth_config(store)
    env_path = home / ENV_FILE
    mlflow_url = f"http://127.0.0.1:{mlflow_port}"
    pids: dict[str, int] = {}
    try:
        mlflow_log = home / "logs" / "mlflow.out"
        pids["mlflow"] = _spawn_mlflow(store, ini_path, mlflow_port, mlflow_log)
        _write_pids(home, pids)
        # The credentials are known before the server answers: the scoring server and Airflow
        # start (its database migration) while it boots; nothing uses them before the pipeline
        # user exists (the scoring server retries, the DAG starts paused).
        tracking = _pipeline_login(env_path, mlflow_url)
        scoring_url = f"http://127.0.0.1:{scoring_port}"
        scoring_log = home / "logs" / "scoring.out"
        cmd = [sys.executable, "-m", "components.registry.scoring", "--model", cfg.tracking.registered_model]
        cmd += ["--port", str(scoring_port), "--poll-s", str(poll_s)]
        pids["scoring"] = _spawn(cmd, _venv_env(**tracking), scoring_log)
        _write_pids(home, pids)
        info = airflow_local.start(home / "airflow", config, airflow_port, timeout_s, env_file=env_path)
        _wait(f"{mlflow_url}/health", pids["mlflow"], mlflow_log, timeout_s)
        _create_user(mlflow_url, admin, PIPELINE_USER, tracking["MLFLOW_TRACKING_PASSWORD"])
        # the scoring server answers /ping with 503 until a champion exists: wait for /version
        _wait(f"{scoring_url}/version", pids["scoring"], scoring_log, timeout_s)
    except BaseException:
        stop(home)
        raise
    return {
        "mlflow": mlflow_url,
        "airflow": info["url"],
        "scoring": scoring_url,
        "admin": admin,
        "airflow_login": (info["user"], info["password"]),
        "env_file": env_path,
        "pids": {**pids, "airflow": info["pids"]},
    }


def _write_pids(home: Path, pids: dict[str, int]) -> None:
    (home / PIDS_FILE).write_text(json.dumps(pids))


def _pipeline_login(env_path: Path, mlflow_url: str) -> dict[str, str]:
    """The pipeline user's tracking variables, written to ``env_path`` (mode 600); its password
    is kept from an earlier start, else new."""
    password = read_env_file(env_path)["MLFLOW_TRACKING_PASSWORD"] if env_path.exists() else secrets.token_urlsafe(16)
    tracking = {
        "MLFLOW_TRACKING_URI": mlflow_url,
        "MLFLOW_TRACKING_USERNAME": PIPELINE_USER,
        "MLFLOW_TRACKING_PASSWORD": password,
    }
    write_env_file(env_path, tracking)
    return tracking


def _auth_config(store: Path) -> tuple[Path, tuple[str, str]]:
    """The server's ``basic_auth.ini`` in ``store`` (written with a new admin password the first
    time) and the admin login it holds."""
    store.mkdir(exist_ok=True)
    ini_path = store / "basic_auth.ini"
    if ini_path.exists():
        ini = configparser.ConfigParser()
        ini.read(ini_path)
    else:
        ini = local_auth_config(ini_path, store / "auth.db", secrets.token_urlsafe(16))
    return ini_path, (ini["mlflow"]["admin_username"], ini["mlflow"]["admin_password"])


def _spawn_mlflow(store: Path, ini_path: Path, port: int, log_path: Path) -> int:
    """Start the basic-auth tracking server on ``store``; returns its pid."""
    secret_key = store / "flask_secret"
    if not secret_key.exists():
        write_env_file(secret_key, {"MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16)})
    # MLFLOW_SERVER_ENABLE_JOB_EXECUTION: no job runner (eight huey processes for the GenAI
    # jobs: prompt optimisation, scorers), which the pipeline never submits
    server_env = _venv_env(
        MLFLOW_AUTH_CONFIG_PATH=str(ini_path),
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        **read_env_file(secret_key),
    )
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        server_env.pop(key, None)
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    return _spawn([mlflow_bin, "server", *local_server_args(store, port)], server_env, log_path)


def running(home: Path) -> list[str]:
    """Names of this home's recorded services that are alive (Airflow's three included)."""
    path = Path(home) / PIDS_FILE
    mine = json.loads(path.read_text()) if path.exists() else {}
    return [n for n, pid in mine.items() if airflow_local.alive(pid)] + airflow_local.running(Path(home) / "airflow")


def stop(home: str | Path, grace_s: float = 30) -> list[str]:
    """End the process groups ``start`` recorded (the scoring server, Airflow, then the tracking
    server: SIGTERM, SIGKILL after ``grace_s``); returns the names of those that were running."""
    home = Path(home).resolve()
    path = home / PIDS_FILE
    pids = json.loads(path.read_text()) if path.exists() else {}
    was = [n for n, pid in pids.items() if airflow_local.alive(pid)]
    if "scoring" in pids:
        _end_group(pids["scoring"], grace_s)
    was += airflow_local.stop(home / "airflow", grace_s)
    if "mlflow" in pids:
        _end_group(pids["mlflow"], grace_s)
    path.unlink(missing_ok=True)
    return was


def _end_group(pid: int, grace_s: float) -> None:
    """SIGTERM the process group ``pid`` leads, SIGKILL it after ``grace_s`` if the leader lives."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while airflow_local.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)  # workers that outlived their leader are still its group's
    except ProcessLookupError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m components.orchestration.services",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--home", default="runs/services", help="folder of the services' state (default: %(default)s)")
    parser.add_argument(
        "--config", default="configs/tiny.yaml", help="pipeline config of the DAG (default: %(default)s)"
    )
    parser.add_argument("--mlflow-port", type=int, default=5000)
    parser.add_argument("--airflow-port", type=int, default=8080)
    parser.add_argument("--scoring-port", type=int, default=5001)
    args = parser.parse_args(argv)
    if args.action == "stop":
        was = stop(args.home)
        print(
            f"stopped the services of {args.home}: {', '.join(was)}"
            if was
            else f"no service of {args.home} was running"
        )
        return 0
    try:
        info = start(args.home, args.config, args.mlflow_port, args.airflow_port, args.scoring_port)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    (admin, admin_pw), (af_user, af_pw) = info["admin"], info["airflow_login"]
    print(f"MLflow tracking server: {info['mlflow']}  (log in as {admin} / {admin_pw})")
    print(f"Airflow:                {info['airflow']}  (log in as {af_user} / {af_pw})")
    print(f"Scoring server:         {info['scoring']}/invocations  (models:/<model>@champion; GET /version)")
    print(f"The DAG tracks to MLflow as {PIPELINE_USER}; its credentials: {info['env_file']} (mode 600)")
    print("stop them with: make services-stop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
