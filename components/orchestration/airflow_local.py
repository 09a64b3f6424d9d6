"""A local Airflow 3 for the project's DAG: ``make airflow`` / ``make airflow-stop``.

``python -m components.orchestration.airflow_local start --home runs/airflow-home --config configs/tiny.yaml``
prepares an ``AIRFLOW_HOME`` of its own (SQLite metadata database, LocalExecutor, the simple auth
manager with one ``admin`` user whose generated password is kept in the home's password file),
migrates the database and starts the API server (UI and REST API), the scheduler and the DAG
processor, each in its own process group, their pids in ``<home>/pids.json`` and their output in
``<home>/logs/<name>.out``. It waits until the API server answers, then prints the UI address and
the login. ``stop --home ...`` ends exactly the process groups that ``start`` recorded.

The DAG reads its config from ``PINSAGE_CONFIG`` (the ``--config`` given here); its run folders
are under that config's ``orchestration.run_root`` (a relative path is read from the repo, the
services' working folder). Nothing here imports Airflow: the processes are the venv's ``airflow``
command.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SERVICES = (("api-server", ["api-server"]), ("scheduler", ["scheduler"]), ("dag-processor", ["dag-processor"]))
PIDS_FILE, PASSWORDS_FILE, ENV_FILE = "pids.json", "simple_auth_manager_passwords.json", "env.json"
USER = "admin"


def airflow_env(home: Path, config: Path, port: int, dags_folder: Path = REPO / "dags") -> dict[str, str]:
    """The environment of every Airflow process of this home (also saved as ``<home>/env.json``,
    secrets excluded, so ``airflow`` commands can be run by hand against the same home)."""
    home = home.resolve()
    jwt_file = home / "jwt_secret"
    if not jwt_file.exists():
        # the API server signs task tokens, the scheduler's workers present them: one shared key
        jwt_file.write_text(secrets.token_urlsafe(32))
        jwt_file.chmod(0o600)
    venv_bin = Path(sys.executable).parent
    return {
        **os.environ,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder.resolve()),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",  # two cores: one task at a time per DAG anyway
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / PASSWORDS_FILE),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": jwt_file.read_text(),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "PINSAGE_CONFIG": str(config.resolve()),
    }


def read_env_file(path: Path) -> dict[str, str]:
    """The ``KEY=value`` lines of ``path`` (blank lines and ``#`` comments skipped)."""
    lines = (line.strip() for line in Path(path).read_text().splitlines())
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def password(home: Path) -> str:
    """The admin password of this home (created on first use)."""
    path = home / PASSWORDS_FILE
    if path.exists():
        return json.loads(path.read_text())[USER]
    value = secrets.token_urlsafe(12)
    path.write_text(json.dumps({USER: value}))
    path.chmod(0o600)
    return value


def start(
    home: str | Path,
    config: str | Path,
    port: int = 8080,
    timeout_s: float = 180,
    dags_folder: Path = REPO / "dags",
    env_file: Path | None = None,
) -> dict:
    """Migrate the database and start the three services; returns ``{"url", "user", "password", "pids"}``.

    ``env_file``: ``KEY=value`` lines added to the services' environment, so every task has them
    (``make services``: the MLflow tracking URI and the pipeline user's credentials); they are
    not copied into ``env.json``.

    Raises:
      RuntimeError: services of this home are already running, a command failed, or the API
        server did not answer within ``timeout_s`` (the message names the log to read).
    """
    home = Path(home).resolve()
    (home / "logs").mkdir(parents=True, exist_ok=True)
    if running(home):
        raise RuntimeError(
            f"Airflow of {home} is already running (pids in {home / PIDS_FILE}); run `make airflow-stop` first"
        )
    secret = password(home)
    env = airflow_env(home, Path(config), port, dags_folder)
    safe = {k: v for k, v in env.items() if k.startswith(("AIRFLOW", "PINSAGE")) and "SECRET" not in k}
    (home / ENV_FILE).write_text(json.dumps(safe, indent=2))
    if env_file is not None:
        env.update(read_env_file(env_file))
    airflow = str(Path(sys.executable).parent / "airflow")
    migrate = subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, text=True, timeout=300)
    if migrate.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{migrate.stderr[-3000:]}")
    pids = {}
    for name, args in SERVICES:
        with open(home / "logs" / f"{name}.out", "w") as out:
            proc = subprocess.Popen(
                [airflow, *args], env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        pids[name] = proc.pid
    (home / PIDS_FILE).write_text(json.dumps(pids))
    url = f"http://127.0.0.1:{port}"
    _wait_healthy(home, url, pids, timeout_s)
    return {"url": url, "user": USER, "password": secret, "pids": pids}


def _wait_healthy(home: Path, url: str, pids: dict[str, int], timeout_s: float) -> None:
    """Until the API server answers its health check; stops the services and raises RuntimeError
    naming the log to read when one of them exits or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        dead = [n for n, pid in pids.items() if not alive(pid)]
        if dead:
            stop(home)
            raise RuntimeError(f"Airflow {dead[0]} exited at start; read {home / 'logs' / (dead[0] + '.out')}")
        try:
            with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=3) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            stop(home)
            raise RuntimeError(
                "the Airflow API server did not answer within "
                f"{timeout_s:.0f} s; read {home / 'logs' / 'api-server.out'}"
            )
        time.sleep(1)


def alive(pid: int) -> bool:
    """Whether process ``pid`` is running (a child of ours that exited is reaped, not counted)."""
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # reap our own child if it exited
        if waited == pid:
            return False
    except ChildProcessError:
        pass  # not our child (stop from another process): fall back to a signal probe
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def running(home: Path) -> list[str]:
    """Names of this home's recorded services that are alive."""
    path = Path(home) / PIDS_FILE
    if not path.exists():
        return []
    return [n for n, pid in json.loads(path.read_text()).items() if alive(pid)]


def stop(home: str | Path, grace_s: float = 30) -> list[str]:
    """End the process groups ``start`` recorded for ``home`` (SIGTERM, then SIGKILL after
    ``grace_s``); returns the names of the services that were running."""
    home = Path(home).resolve()
    path = home / PIDS_FILE
    if not path.exists():
        return []
    pids = json.loads(path.read_text())
    was = [n for n, pid in pids.items() if alive(pid)]
    for pid in pids.values():
        try:
            os.killpg(pid, signal.SIGTERM)  # the service and the workers it forked: its own group
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace_s
    while any(alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in pids.values():
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    path.unlink()
    return was


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m components.orchestration.airflow_local",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--home", default="runs/airflow-home", help="AIRFLOW_HOME to use (default: %(default)s)")
    parser.add_argument(
        "--config", default="configs/tiny.yaml", help="pipeline config of the DAG (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=8080, help="API server / UI port on 127.0.0.1 (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    if args.action == "stop":
        was = stop(args.home)
        print(f"stopped Airflow of {args.home}: {', '.join(was)}" if was else f"no Airflow of {args.home} was running")
        return 0
    try:
        info = start(args.home, args.config, args.port)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Airflow is up: open {info['url']} and log in as {info['user']} / {info['password']}")
    print(
        f"DAG 'pinsage' on {args.config} (paused: unpause it in the "
        f"UI or trigger a run); logs in {Path(args.home) / 'logs'}"
    )
    print("stop it with: make airflow-stop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
