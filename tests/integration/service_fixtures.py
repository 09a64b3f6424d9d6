"""Starting the real services integration tests talk to (MLflow tracking and scoring servers,
Airflow): a free port, a process group the test owns, a bounded wait until it answers."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests

VENV_BIN = Path(sys.executable).parent
# spark-defaults.conf for services whose tasks each start a JVM for seconds of work on tiny data
# (Airflow's): no whole-stage code generation, the quick-start flags of a short-lived JVM (client
# compiler only, serial GC); about 40 % less time per Spark task on 2 cores, the same results.
SPARK_DEFAULTS = """spark.sql.codegen.wholeStage false
spark.driver.defaultJavaOptions -XX:TieredStopAtLevel=1 -XX:+UseSerialGC
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def venv_env(**extra: str) -> dict[str, str]:
    """The environment with the venv's ``bin/`` first on ``PATH`` (servers exec ``uvicorn``,
    ``gunicorn`` from there, as in an activated venv), MLflow's progress bars off, and ``extra``."""
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    env.update(extra)
    return env


@contextlib.contextmanager
def service(
    cmd: list[str], env: dict[str, str], log: Path, url: str, timeout_s: float, cwd: Path | None = None
) -> Iterator[subprocess.Popen]:
    """Start ``cmd`` in its own process group, wait until ``url`` answers 200, stop the group on exit.

    A server that exits, or does not answer within ``timeout_s``, fails the test with its log: a
    missing service is a failure, never a skip.
    """
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(url, proc, log, timeout_s)
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen, grace_s: float = 20) -> None:
    """SIGTERM the process group this test started (the server and its workers), then SIGKILL."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=grace_s)
    # workers outlive a leader that exited first: the group is still this test's to end
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def wait_for(url: str, proc: subprocess.Popen, log: Path, timeout_s: float) -> None:
    """Poll ``url`` until it answers 200; fail with the server's log when it exits or times out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"{' '.join(map(str, proc.args[:3]))} exited with {proc.returncode} "
                f"before answering {url}:\n{log.read_text()[-4000:]}"
            )
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} did not answer within {timeout_s} s:\n{log.read_text()[-4000:]}")


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (from ``/proc``): what a stop must also end when a child
    left its parent's process group (PySpark's worker daemon calls ``setpgid``)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def stop_tree(proc: subprocess.Popen, grace_s: float = 20) -> None:
    """:func:`stop` the process group, then SIGKILL any descendant that had left the group."""
    below = descendants(proc.pid)
    stop(proc, grace_s)
    for pid in below:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def spark_home() -> Path:
    """The Spark distribution inside the pyspark package (``bin/spark-class``, ``jars/``)."""
    import importlib.util

    spec = importlib.util.find_spec("pyspark")
    assert spec is not None and spec.origin is not None, "pyspark is not installed in the venv"
    return Path(spec.origin).parent


@contextlib.contextmanager
def spark_standalone(
    tmp: Path, workers: int = 2, hide: Path | None = None, hiding: tuple[int, ...] = (), timeout_s: float = 120
) -> Iterator[str]:
    """A Spark standalone master and ``workers`` workers on 127.0.0.1; yields the master URL.

    Each daemon is ``spark-class org.apache.spark.deploy.{master.Master,worker.Worker}`` from the
    pyspark distribution in its own process group, logging to ``tmp``; each worker has one core,
    1 GiB for executors and its own work folder ``tmp/worker<i>``. The workers numbered in
    ``hiding`` run in a private mount namespace with an empty tmpfs over the folder ``hide``, so
    their executors cannot see what the driver writes there (a machine without the shared
    volume); needs ``unshare`` and the right to mount (root, or user namespaces). On exit the
    driver's session on this master is stopped (its executors end with it), then the workers and
    the master, each with every process it started.
    """
    home = spark_home()
    port, ui = free_port(), free_port()
    url = f"spark://127.0.0.1:{port}"
    # REST submission off: it would listen on a fixed port (6066) whatever --port says
    env = venv_env(SPARK_HOME=str(home), SPARK_MASTER_OPTS="-Dspark.master.rest.enabled=false")
    env.pop("SPARK_CONF_DIR", None)
    spark_class = str(home / "bin" / "spark-class")
    started: list[subprocess.Popen] = []
    try:
        with open(tmp / "master.log", "w") as out:
            master_cmd = [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1"]
            master_cmd += ["--port", str(port), "--webui-port", str(ui)]
            master = subprocess.Popen(master_cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        started.append(master)
        wait_for(f"http://127.0.0.1:{ui}/json", master, tmp / "master.log", timeout_s)
        for i in range(workers):
            work = tmp / f"worker{i}"
            work.mkdir()
            cmd = [spark_class, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", "1"]
            cmd += ["--memory", "1g", "--work-dir", str(work), "--webui-port", str(free_port()), url]
            if hide is not None and i in hiding:
                mount = 'mount -t tmpfs pinsage-hidden "$1" && shift && exec "$@"'
                cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", mount, "sh", str(hide), *cmd]
            with open(tmp / f"worker{i}.log", "w") as out:
                started.append(
                    subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
                )
        deadline = time.monotonic() + timeout_s
        while requests.get(f"http://127.0.0.1:{ui}/json", timeout=5).json().get("aliveworkers", 0) < workers:
            for i, proc in enumerate(started[1:]):
                if proc.poll() is not None:
                    pytest.fail(
                        f"spark worker {i} exited with {proc.returncode}:\n{(tmp / f'worker{i}.log').read_text()}"
                    )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{workers} workers did not register within {timeout_s} s:\n{(tmp / 'master.log').read_text()}"
                )
            time.sleep(0.3)
        yield url
    finally:
        from pyspark.sql import SparkSession

        active = SparkSession.getActiveSession()
        if active is not None and active.sparkContext.master == url:
            active.stop()
        for proc in reversed(started):  # workers (and their executors) before the master
            stop_tree(proc)


class Api:
    """The Airflow REST API v2 with a JWT from ``/auth/token``."""

    def __init__(self, url: str, user: str, password: str):
        self.url = url
        resp = requests.post(f"{url}/auth/token", json={"username": user, "password": password}, timeout=30)
        assert resp.status_code in (200, 201), resp.text
        self.headers = {"Authorization": f"Bearer {resp.json()['access_token']}"}

    def __call__(self, method: str, path: str, headers: dict | None = None, **kw) -> requests.Response:
        return requests.request(
            method, f"{self.url}/api/v2/{path}", headers={**self.headers, **(headers or {})}, timeout=30, **kw
        )


def wait_run(api: Api, run_id: str, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = api("GET", f"dags/pinsage/dagRuns/{run_id}").json()
        if run.get("state") in ("success", "failed"):
            return run
        time.sleep(1)
    pytest.fail(f"DAG run {run_id} not finished within {timeout_s} s: {task_states(api, run_id)}")


def task_states(api: Api, run_id: str) -> dict[str, tuple[str, int]]:
    tis = api("GET", f"dags/pinsage/dagRuns/{run_id}/taskInstances").json()["task_instances"]
    return {t["task_id"]: (t["state"], t["try_number"]) for t in tis}


def task_seconds(api: Api, run_id: str) -> str:
    """``task=seconds`` of a run's tasks in the order they started (printed with the timings)."""
    tis = api("GET", f"dags/pinsage/dagRuns/{run_id}/taskInstances").json()["task_instances"]
    return " ".join(
        f"{t['task_id']}={t['duration'] or 0:.0f}" for t in sorted(tis, key=lambda t: t["start_date"] or "")
    )
